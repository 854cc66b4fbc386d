/**
 * `POST /dev/login`, development only: mints a token for a demo person and
 * sets it as the HttpOnly `access_token` cookie (the demo console's cookie
 * login). It mints only with the built-in development secrets (never with a
 * configured `SUPABASE_JWT_SECRET` or `JWT_ACCESS_SECRET`: those are real
 * projects' secrets), accepts only `Content-Type: application/json` (a
 * cross-site form or `text/plain` post cannot reach it), and refuses a
 * foreign `Origin`.
 *
 * @module
 */

import type { Person, PersonRef } from "../store/mod.ts";

/** Options of {@linkcode devLoginHandler}. */
export interface DevLoginOptions {
  /** Looks the person up (an inactive one is refused). */
  getPerson: (ref: PersonRef) => Promise<Person | null>;
  /** Mints an agent's token, or null when agents' tokens use a real secret. */
  mintAgent: ((authId: string) => Promise<string>) | null;
  /** Mints a customer's token, or null when customers' tokens use a real secret. */
  mintCustomer: ((customer: { clientId: number; clientNumber: string }) => Promise<string>) | null;
  /** The cookie set (the first of `AUTH_COOKIE_NAMES`). */
  cookieName: string;
  /** Origins allowed besides the server's own (`SOCKET_CORS_ORIGINS`). */
  allowedOrigins: readonly string[];
}

function json(body: unknown, status: number, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

/** The handler of `POST /dev/login { kind: "agent" | "client", id }`. */
export function devLoginHandler(options: DevLoginOptions): (req: Request) => Promise<Response> {
  const allowed = new Set(options.allowedOrigins.map((o) => o.toLowerCase().replace(/\/+$/, "")));
  return async (req) => {
    const type = req.headers.get("content-type") ?? "";
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      await req.body?.cancel();
      return json(
        { code: "INVALID_DATA", message: "Expected Content-Type: application/json" },
        415,
      );
    }
    const origin = req.headers.get("origin");
    if (origin !== null) {
      const own = new URL(req.url).origin.toLowerCase();
      const normalized = origin.toLowerCase().replace(/\/+$/, "");
      if (normalized !== own && !allowed.has(normalized)) {
        await req.body?.cancel();
        return json({ code: "ACCESS_DENIED", message: "Origin not allowed" }, 403);
      }
    }
    let body: { kind?: unknown; id?: unknown };
    try {
      body = await req.json();
    } catch {
      return json({ code: "INVALID_DATA", message: "Expected a JSON body" }, 400);
    }
    if (
      (body?.kind !== "agent" && body?.kind !== "client") || typeof body.id !== "number" ||
      !Number.isSafeInteger(body.id)
    ) {
      return json({
        code: "INVALID_DATA",
        message: 'Expected { "kind": "agent" | "client", "id": number }',
      }, 400);
    }
    const mint = body.kind === "agent" ? options.mintAgent : options.mintCustomer;
    if (mint === null) {
      return json({
        code: "ACCESS_DENIED",
        message: `No ${body.kind} tokens here: a real secret is configured`,
      }, 403);
    }
    const person = await options.getPerson({ kind: body.kind, id: body.id });
    if (person === null || !person.active || (person.kind === "agent" && !person.authId)) {
      return json({ code: "USER_NOT_FOUND", message: "No such demo user" }, 404);
    }
    const token = person.kind === "agent"
      ? await options.mintAgent!(person.authId!)
      : await options.mintCustomer!({ clientId: person.id, clientNumber: person.number });
    const cookie = `${options.cookieName}=${token}; HttpOnly; Path=/; SameSite=Lax; Max-Age=3600`;
    return json({ token, person }, 200, { "Set-Cookie": cookie });
  };
}
