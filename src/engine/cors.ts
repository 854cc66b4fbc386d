/**
 * CORS for the long-polling transport, on web-standard `Request`/`Headers`.
 *
 * Behaves like the `cors` middleware that the reference Engine.IO server
 * uses: an allowed origin is echoed back with `Vary: Origin`, credentials are
 * announced when enabled, and a preflight `OPTIONS` is answered with 204.
 *
 * @module
 */

/** Which origins may call: all, one, a pattern, a list, or a decision function. */
export type CorsOrigin =
  | boolean
  | string
  | RegExp
  | readonly (string | RegExp)[]
  | ((origin: string | null, req: Request) => boolean | Promise<boolean>);

/** CORS settings of the engine. */
export interface CorsOptions {
  /** Allowed origins; `true` reflects any origin, `"*"` answers `*`. */
  origin?: CorsOrigin;
  /** Send `Access-Control-Allow-Credentials: true` (cookies). */
  credentials?: boolean;
  /** Methods announced on preflight (default GET, POST). */
  methods?: readonly string[];
  /** Headers announced on preflight; default: reflect the requested ones. */
  allowedHeaders?: readonly string[];
  /** `Access-Control-Expose-Headers`. */
  exposedHeaders?: readonly string[];
  /** `Access-Control-Max-Age`, seconds. */
  maxAge?: number;
}

function matchOrigin(origin: string, allowed: string | RegExp): boolean {
  return typeof allowed === "string" ? allowed === origin : allowed.test(origin);
}

/**
 * Decides the `Access-Control-Allow-Origin` value for a request, or null when
 * the origin is not allowed (no CORS headers are then sent).
 */
export async function allowedOrigin(req: Request, options: CorsOptions): Promise<string | null> {
  const origin = req.headers.get("origin");
  const rule = options.origin ?? "*";
  if (rule === "*") return "*";
  if (rule === false) return null;
  if (origin === null) return null;
  if (rule === true) return origin;
  if (typeof rule === "function") {
    try {
      return (await rule(origin, req)) ? origin : null;
    } catch {
      return null;
    }
  }
  if (typeof rule === "string" || rule instanceof RegExp) {
    return matchOrigin(origin, rule) ? origin : null;
  }
  return rule.some((allowed) => matchOrigin(origin, allowed)) ? origin : null;
}

/** Adds the CORS response headers for a non-preflight request. */
export async function applyCors(
  req: Request,
  headers: Headers,
  options: CorsOptions,
): Promise<void> {
  const origin = await allowedOrigin(req, options);
  if (options.origin !== undefined && options.origin !== "*") headers.append("Vary", "Origin");
  if (origin === null) return;
  headers.set("Access-Control-Allow-Origin", origin);
  if (options.credentials) headers.set("Access-Control-Allow-Credentials", "true");
  if (options.exposedHeaders?.length) {
    headers.set("Access-Control-Expose-Headers", options.exposedHeaders.join(","));
  }
}

/** Answers a CORS preflight (`OPTIONS`) with 204 and the allowed methods and headers. */
export async function preflight(req: Request, options: CorsOptions): Promise<Response> {
  const headers = new Headers();
  await applyCors(req, headers, options);
  headers.set("Access-Control-Allow-Methods", (options.methods ?? ["GET", "POST"]).join(","));
  const requested = req.headers.get("access-control-request-headers");
  if (options.allowedHeaders) {
    headers.set("Access-Control-Allow-Headers", options.allowedHeaders.join(","));
  } else if (requested) {
    headers.set("Access-Control-Allow-Headers", requested);
    headers.append("Vary", "Access-Control-Request-Headers");
  }
  if (options.maxAge !== undefined) headers.set("Access-Control-Max-Age", String(options.maxAge));
  headers.set("Content-Length", "0");
  return new Response(null, { status: 204, headers });
}
