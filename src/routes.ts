/**
 * The service's HTTP routes besides Socket.IO, on web-standard
 * `Request`/`Response`: `/healthz`, `/readyz`, `/metrics`, the demo console
 * and `POST /dev/login`.
 *
 * @module
 */

import { log } from "./log.ts";
import type { Metrics } from "./metrics.ts";

/** Options of {@linkcode routes}. */
export interface RoutesOptions {
  /** Readiness: resolves when the store answers and has what it needs. */
  ready: () => Promise<void>;
  /** Whether the service is shutting down (`/readyz` then answers 503). */
  closing: () => boolean;
  /** The store's kind, shown by `/readyz`. */
  storeKind: string;
  metrics: Metrics;
  /** `METRICS_TOKEN`, or null. */
  metricsToken: string | null;
  /** Whether `/metrics` answers without a token. */
  metricsPublic: boolean;
  /** The demo console's pages, or null. */
  demo: ((req: Request) => Response | null) | null;
  /** `POST /dev/login`, or null outside development. */
  devLogin: ((req: Request) => Promise<Response>) | null;
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

/** Compares two strings in time independent of where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}

/** The request handler of the routes; `null` for a request none of them answers. */
export function routes(options: RoutesOptions): (req: Request) => Response | Promise<Response> {
  async function readyz(): Promise<Response> {
    if (options.closing()) return json({ status: "shutting_down" }, 503);
    try {
      await options.ready();
      return json({ status: "ready", store: options.storeKind }, 200);
    } catch (error) {
      log("warn", "readiness check failed", { store: options.storeKind, error: String(error) });
      return json({ status: "not_ready", reason: "store unavailable" }, 503);
    }
  }

  function metricsRoute(req: Request): Response {
    if (options.metricsToken !== null) {
      const auth = req.headers.get("authorization") ?? "";
      if (!sameSecret(auth, `Bearer ${options.metricsToken}`)) {
        return json({ error: "unauthorized" }, 401);
      }
    } else if (!options.metricsPublic) {
      return json({ error: "not_found" }, 404);
    }
    return new Response(options.metrics.render(), {
      headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }

  return (req) => {
    const { pathname } = new URL(req.url);
    if (req.method === "GET" || req.method === "HEAD") {
      if (pathname === "/healthz") return json({ status: "ok" }, 200);
      if (pathname === "/readyz") return readyz();
      if (pathname === "/metrics") return metricsRoute(req);
      const page = options.demo?.(req);
      if (page) return page;
    }
    if (req.method === "POST" && pathname === "/dev/login" && options.devLogin) {
      return options.devLogin(req);
    }
    return json({ error: "not_found" }, 404);
  };
}
