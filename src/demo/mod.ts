/**
 * The demo console: a small page served at `/` in development (or with
 * `SERVE_DEMO=true`) to try the service in a browser: pick a demo user, log
 * in with cookie auth through `POST /dev/login`, see presence, chat, typing
 * indicators, errors and rate-limit warnings.
 *
 * The official socket.io browser bundle is served by this server
 * (`/socket.io.min.js`), never from a CDN. It is read once, at start-up,
 * from the installed `socket.io-client` package (`dist/socket.io.min.js`,
 * which the package's `exports` do not list, so it cannot be imported); if
 * that file cannot be read (e.g. a compiled binary that did not embed it),
 * the package's exported `dist/socket.io.js`, embedded through a text
 * import, is served instead.
 *
 * @module
 */

import fallbackBundle from "socket.io-client/dist/socket.io.js" with { type: "text" };
import fixtureJson from "../../demo/fixture.json" with { type: "json" };
import type { Config } from "../config.ts";
import { parseFixture } from "../store/fixture.ts";
import { agentRole } from "../store/mod.ts";
import { DEMO_CSS, DEMO_JS, demoHtml, type DemoPageData } from "./page.ts";

/** Answers a demo route, or null when the request is not one of them. */
export type DemoHandler = (req: Request) => Response | null;

/** Options of {@linkcode demoRoutes}. */
export interface DemoRoutesOptions {
  /** Whether `POST /dev/login` is available (the page says so when it is not). */
  devLogin: boolean;
  /** The socket.io browser bundle to serve; default {@linkcode loadClientBundle}. */
  clientBundle?: ClientBundle;
}

/** The socket.io browser bundle and where it came from. */
export interface ClientBundle {
  /** The script. */
  text: string;
  /** `min` (dist/socket.io.min.js) or `full` (the embedded dist/socket.io.js). */
  kind: "min" | "full";
}

/** The paths the console answers (GET and HEAD). */
export const DEMO_PATHS: readonly string[] = ["/", "/demo.js", "/demo.css", "/socket.io.min.js"];

/**
 * Reads `dist/socket.io.min.js` of the installed `socket.io-client`; falls
 * back to the embedded, unminified `dist/socket.io.js` when it is unreadable.
 */
export function loadClientBundle(): ClientBundle {
  try {
    const packageJson = import.meta.resolve("socket.io-client/package.json");
    const text = Deno.readTextFileSync(new URL("dist/socket.io.min.js", packageJson));
    if (text.includes("Socket.IO")) return { text, kind: "min" };
  } catch {
    // not installed as files (or not readable): use the embedded bundle
  }
  return { text: fallbackBundle, kind: "full" };
}

/** The demo people and conversations offered by the page (from demo/fixture.json). */
export function demoPageData(devLogin: boolean): DemoPageData {
  const fixture = parseFixture(fixtureJson);
  const profiles = new Map((fixture.profile ?? []).map((p) => [p.prof_id, p]));
  const roles = new Map((fixture.role ?? []).map((r) => [r.role_id, r.role_name]));
  const names = (profId: number | null | undefined) => {
    const profile = profId == null ? undefined : profiles.get(profId);
    return { firstName: profile?.prof_firstname ?? "", lastName: profile?.prof_lastname ?? "" };
  };
  const agents = (fixture.sys_user ?? []).map((u) => ({
    kind: "agent" as const,
    id: u.sys_user_id,
    role: agentRole(u.role_id == null ? null : roles.get(u.role_id) ?? null),
    departments: (fixture.sys_user_department ?? [])
      .filter((d) => d.sys_user_id === u.sys_user_id).map((d) => d.dept_id),
    ...names(u.prof_id),
  }));
  const customers = (fixture.client ?? []).map((c) => ({
    kind: "client" as const,
    id: c.client_id,
    role: "client" as const,
    departments: [],
    ...names(c.prof_id),
  }));
  return {
    users: [...agents, ...customers],
    groups: (fixture.chat_group ?? []).map((g) => ({
      id: g.chat_group_id,
      clientId: g.client_id,
      agentId: g.sys_user_id ?? null,
      departmentId: g.dept_id ?? null,
      status: g.status ?? null,
    })),
    devLogin,
  };
}

/** A `Host` header value that is safe to put into a CSP source. */
const HOST_PATTERN = /^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * The page's Content-Security-Policy: scripts and styles from this origin
 * only (no inline code), connections to this origin over HTTP(S) and
 * WebSocket, nothing else.
 */
export function demoCsp(req: Request): string {
  const host = req.headers.get("host");
  const connect = ["'self'"];
  if (host && HOST_PATTERN.test(host)) connect.push(`ws://${host}`, `wss://${host}`);
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src ${connect.join(" ")}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

const COMMON_HEADERS: Readonly<Record<string, string>> = {
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
};

/**
 * The demo console's routes, or null when the console is disabled
 * (`config.serveDemo` false). The handler answers GET and HEAD of
 * {@linkcode DEMO_PATHS} and returns null for anything else.
 */
export function demoRoutes(
  config: Pick<Config, "serveDemo">,
  options: DemoRoutesOptions,
): DemoHandler | null {
  if (!config.serveDemo) return null;
  const bundle = options.clientBundle ?? loadClientBundle();
  const html = demoHtml(demoPageData(options.devLogin));

  return function demoHandler(req: Request): Response | null {
    if (req.method !== "GET" && req.method !== "HEAD") return null;
    const { pathname } = new URL(req.url);
    switch (pathname) {
      case "/":
        return new Response(html, {
          headers: {
            ...COMMON_HEADERS,
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "Content-Security-Policy": demoCsp(req),
            "X-Frame-Options": "DENY",
          },
        });
      case "/demo.js":
        return asset(DEMO_JS, "text/javascript; charset=utf-8", "no-cache");
      case "/demo.css":
        return asset(DEMO_CSS, "text/css; charset=utf-8", "no-cache");
      case "/socket.io.min.js":
        return asset(bundle.text, "text/javascript; charset=utf-8", "public, max-age=3600");
      default:
        return null;
    }
  };
}

function asset(body: string, contentType: string, cacheControl: string): Response {
  return new Response(body, {
    headers: { ...COMMON_HEADERS, "Content-Type": contentType, "Cache-Control": cacheControl },
  });
}
