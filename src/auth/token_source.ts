/**
 * Where a handshake's access token comes from, in this order:
 *
 * 1. the Socket.IO handshake `auth.token` (what browsers can send),
 * 2. `Authorization: Bearer …` (mobile clients, as in the seed),
 * 3. cookies (web clients): the configured names (default `access_token`),
 *    then the cookie `@supabase/ssr` writes, `sb-<project-ref>-auth-token`, in
 *    its raw JSON form, its `base64-` prefixed form and its chunked form
 *    (`sb-<ref>-auth-token.0`, `.1`, …).
 *
 * Nothing here verifies a token; it only finds one. Garbage in any source is
 * treated as absent: these functions never throw.
 *
 * @module
 */

/** Where a token was found. */
export type TokenSource = "auth" | "bearer" | "cookie";

/** A token found in a handshake. */
export interface ExtractedToken {
  /** The raw access token (a compact JWT, not yet verified). */
  token: string;
  /** Where it was found. */
  source: TokenSource;
  /** For `source: "cookie"`: the cookie's name (chunked cookies: the base name). */
  cookieName?: string;
}

/** The parts of a handshake the extractor reads. */
export interface HandshakeCredentials {
  headers: Headers;
  /** The Socket.IO handshake `auth` object, as sent by the client (untrusted). */
  auth?: unknown;
}

/** Options of {@linkcode extractToken}. */
export interface ExtractTokenOptions {
  /** Plain cookies holding an access token, tried in order. Default `["access_token"]`. */
  cookieNames?: string[];
}

/** Default cookie names holding a bare access token (`AUTH_COOKIE_NAMES`). */
export const DEFAULT_COOKIE_NAMES: readonly string[] = ["access_token"];

/** Longest token accepted from any source; longer values are treated as garbage. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/** Longest (combined) `@supabase/ssr` cookie value decoded. */
const MAX_SUPABASE_COOKIE_LENGTH = 64 * 1024;

/** Most chunks of one `@supabase/ssr` cookie read. */
const MAX_CHUNKS = 32;

const SUPABASE_COOKIE = /^sb-([^.;=\s]+)-auth-token(?:\.(\d{1,2}))?$/;
const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

/**
 * Every access token a handshake presents, in the order above, each token
 * once. The caller tries them in order and takes the first that verifies, so
 * that a stale cookie does not hide a valid Bearer token, nor a stale token
 * a valid cookie.
 *
 * @example
 * ```ts
 * const found = extractTokens({ headers: req.headers, auth: { token } }, { cookieNames: ["access_token"] });
 * ```
 */
export function extractTokens(
  handshake: HandshakeCredentials,
  options: ExtractTokenOptions = {},
): ExtractedToken[] {
  const found: ExtractedToken[] = [];
  const add = (token: string | null, source: TokenSource, cookieName?: string) => {
    if (token === null || found.some((f) => f.token === token)) return;
    found.push(cookieName === undefined ? { token, source } : { token, source, cookieName });
  };
  add(tokenFromAuth(handshake.auth), "auth");
  const headers = handshake.headers;
  add(tokenFromAuthorization(safeHeader(headers, "authorization")), "bearer");
  const cookieHeader = safeHeader(headers, "cookie");
  if (cookieHeader === null) return found;
  const cookies = parseRawCookies(cookieHeader);
  for (const name of options.cookieNames ?? DEFAULT_COOKIE_NAMES) {
    const raw = cookies.get(name);
    if (raw !== undefined) add(cleanToken(decodeCookieValue(raw)), "cookie", name);
  }
  for (const supabase of tokensFromSupabaseCookies(cookies)) {
    add(supabase.token, "cookie", supabase.name);
  }
  return found;
}

/** The first token {@linkcode extractTokens} finds, or null. */
export function extractToken(
  handshake: HandshakeCredentials,
  options: ExtractTokenOptions = {},
): ExtractedToken | null {
  return extractTokens(handshake, options)[0] ?? null;
}

/** Whether the handshake's headers (not its CONNECT `auth`) carry a credential. */
export function hasHeaderCredential(
  headers: Headers,
  options: ExtractTokenOptions = {},
): boolean {
  return extractTokens({ headers }, options).length > 0;
}

/**
 * An Engine.IO `allowRequest` (`SOCKET_REQUIRE_HEADER_TOKEN`): a handshake
 * whose headers carry no credential (see {@linkcode hasHeaderCredential}) is
 * refused with 403 before a session exists. Only for deployments whose
 * clients all send a Bearer header or cookie: the contract lets a client send
 * its token in `auth.token` alone, which arrives after the handshake.
 */
export function requireHeaderCredential(
  options: ExtractTokenOptions = {},
): (req: unknown, raw: Request) => true | { message: string } {
  return (_req, raw) =>
    hasHeaderCredential(raw.headers, options) ||
    { message: "AUTH_REQUIRED: send the token in an Authorization header or cookie" };
}

/**
 * Whether a token source is an ambient credential, one the browser attaches
 * by itself (a cookie). Only those handshakes are subject to the origin check
 * (cross-site WebSocket hijacking); `auth` and `bearer` tokens must be put
 * there by the page's own script.
 */
export function isAmbientCredential(source: TokenSource): boolean {
  return source === "cookie";
}

/**
 * Parses a `Cookie` request header into name → URL-decoded value. The first
 * occurrence of a name wins; pairs without `=` are skipped; values whose
 * percent-encoding is broken are kept as sent.
 */
export function parseCookieHeader(header: string): Map<string, string> {
  const decoded = new Map<string, string>();
  for (const [name, raw] of parseRawCookies(header)) decoded.set(name, decodeCookieValue(raw));
  return decoded;
}

/**
 * Reads the access token out of an `@supabase/ssr` session cookie value
 * (already URL-decoded and, for chunked cookies, concatenated): `base64-`
 * followed by base64url(JSON), or the JSON itself; the JSON is a session
 * object with `access_token` or the array form `[access_token, refresh_token, …]`
 * of older versions. Returns `null` for anything else.
 */
export function tokenFromSupabaseCookieValue(value: string): string | null {
  if (value.length === 0 || value.length > MAX_SUPABASE_COOKIE_LENGTH) return null;
  let json: string | null = value;
  if (value.startsWith("base64-")) json = decodeBase64UrlText(value.slice("base64-".length));
  if (json === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return null;
  }
  if (Array.isArray(parsed)) {
    return typeof parsed[0] === "string" ? cleanToken(parsed[0]) : null;
  }
  if (typeof parsed === "object" && parsed !== null) {
    const accessToken = (parsed as Record<string, unknown>).access_token;
    return typeof accessToken === "string" ? cleanToken(accessToken) : null;
  }
  return null;
}

function tokenFromAuth(auth: unknown): string | null {
  if (typeof auth !== "object" || auth === null) return null;
  let value: unknown;
  try {
    value = (auth as Record<string, unknown>).token;
  } catch {
    return null;
  }
  if (typeof value !== "string") return null;
  const bearer = BEARER.exec(value.trim());
  return cleanToken(bearer !== null ? bearer[1] : value);
}

function tokenFromAuthorization(header: string | null): string | null {
  if (header === null) return null;
  const match = BEARER.exec(header.trim());
  return match === null ? null : cleanToken(match[1]);
}

function tokensFromSupabaseCookies(
  cookies: Map<string, string>,
): { token: string; name: string }[] {
  const baseNames: string[] = [];
  for (const name of cookies.keys()) {
    const match = SUPABASE_COOKIE.exec(name);
    if (match === null) continue;
    const base = `sb-${match[1]}-auth-token`;
    if (!baseNames.includes(base)) baseNames.push(base);
  }
  const found: { token: string; name: string }[] = [];
  for (const base of baseNames) {
    const raw = combineChunks(cookies, base);
    if (raw === null) continue;
    const token = tokenFromSupabaseCookieValue(decodeCookieValue(raw));
    if (token !== null) found.push({ token, name: base });
  }
  return found;
}

/** As `@supabase/ssr` does: the unchunked cookie if present, else `.0`, `.1`, … until one is missing. */
function combineChunks(cookies: Map<string, string>, base: string): string | null {
  const whole = cookies.get(base);
  if (whole !== undefined) return whole;
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; i < MAX_CHUNKS; i++) {
    const part = cookies.get(`${base}.${i}`);
    if (part === undefined) break;
    length += part.length;
    if (length > MAX_SUPABASE_COOKIE_LENGTH) return null;
    parts.push(part);
  }
  return parts.length === 0 ? null : parts.join("");
}

function parseRawCookies(header: string): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const pair of header.split(";")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    if (name.length === 0 || cookies.has(name)) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1);
    }
    cookies.set(name, value);
  }
  return cookies;
}

function decodeCookieValue(raw: string): string {
  if (!raw.includes("%")) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function safeHeader(headers: Headers, name: string): string | null {
  try {
    return headers.get(name);
  } catch {
    return null;
  }
}

/** A usable token: non-empty, bounded, no whitespace or control characters. */
function cleanToken(value: string): string | null {
  const token = value.trim();
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return null;
  // deno-lint-ignore no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(token)) return null;
  return token;
}

function decodeBase64UrlText(input: string): string | null {
  const normalized = input.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  if (!/^[A-Za-z0-9+/]*$/.test(normalized) || normalized.length % 4 === 1) return null;
  const padded = normalized + "=".repeat((4 - (normalized.length % 4)) % 4);
  try {
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}
