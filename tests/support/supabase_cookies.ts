/**
 * Test helper: the session cookies `@supabase/ssr` itself writes (the real
 * package, not a hand-made imitation): a server client signs in with
 * `auth.setSession({ access_token, refresh_token })` and the cookies it sets
 * are collected into a `Cookie` header. The only call it makes, `GET
 * /auth/v1/user`, is answered by an in-process fetch with the token's user.
 *
 * @module
 */

import { createServerClient } from "@supabase/ssr";
import { decodeJwt } from "jose";

/** Options of {@linkcode supabaseSessionCookies}. */
export interface SessionCookieOptions {
  /** The project URL; the cookie is `sb-<first label of the host>-auth-token`. */
  supabaseUrl: string;
  accessToken: string;
  refreshToken?: string;
  /** Bytes of user metadata to add, to make the cookie big enough to be chunked. */
  metadataBytes?: number;
}

/** The cookies `@supabase/ssr` sets for a session: the `Cookie` header and the names. */
export async function supabaseSessionCookies(
  options: SessionCookieOptions,
): Promise<{ header: string; names: string[] }> {
  const claims = decodeJwt(options.accessToken);
  const user = {
    id: claims.sub,
    aud: "authenticated",
    role: "authenticated",
    email: "agent@example.com",
    app_metadata: { provider: "email" },
    user_metadata: options.metadataBytes ? { notes: "x".repeat(options.metadataBytes) } : {},
    created_at: new Date(0).toISOString(),
  };
  const jar = new Map<string, string>();
  const client = createServerClient(options.supabaseUrl, "anon-key-for-tests", {
    cookies: {
      getAll: () => [...jar].map(([name, value]) => ({ name, value })),
      setAll: (cookies) => {
        for (const cookie of cookies) {
          if (cookie.value === "") jar.delete(cookie.name);
          else jar.set(cookie.name, cookie.value);
        }
      },
    },
    global: {
      fetch: (input: RequestInfo | URL) => {
        const url = new URL(input instanceof Request ? input.url : String(input));
        if (url.pathname.endsWith("/auth/v1/user")) return Promise.resolve(Response.json(user));
        return Promise.resolve(new Response("not found", { status: 404 }));
      },
    },
  });
  const { error } = await client.auth.setSession({
    access_token: options.accessToken,
    refresh_token: options.refreshToken ?? "refresh-token-for-tests",
  });
  if (error) throw error;
  // cookies are written when the auth state change is handled
  for (let i = 0; i < 50 && jar.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
  if (jar.size === 0) throw new Error("@supabase/ssr set no cookie");
  const header = [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
  return { header, names: [...jar.keys()] };
}
