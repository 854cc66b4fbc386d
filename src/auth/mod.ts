/**
 * The identity layer: who a handshake is. {@linkcode Authenticator} finds the
 * token ({@link ./token_source.ts}), checks the origin of cookie handshakes,
 * verifies the token ({@link ./verify.ts}), and resolves its `sub` to a
 * Servana {@linkcode User}. Socket.IO glue (`io.use(...)`) calls
 * {@linkcode Authenticator.authenticate} and turns a thrown `ServanaError`
 * into `connect_error`.
 *
 * Every result is written to the security log (`auth_success`,
 * `auth_failure`, `token_refresh`, `token_refresh_failure`) with reason,
 * address, user agent and source; tokens are never logged.
 *
 * @module
 */

import { ServanaError } from "../errors.ts";
import { security } from "../log.ts";
import type { User } from "../store/mod.ts";
import type { FailLimiter } from "./fail_limiter.ts";
import { extractToken, isAmbientCredential, type TokenSource } from "./token_source.ts";
import type { TokenVerifier, VerifiedClaims } from "./verify.ts";

export { DEV_JWT_SECRET, mintToken, type MintTokenOptions } from "./dev.ts";
export { FailLimiter, type FailLimiterOptions } from "./fail_limiter.ts";
export {
  DEFAULT_COOKIE_NAMES,
  type ExtractedToken,
  extractToken,
  isAmbientCredential,
  parseCookieHeader,
  tokenFromSupabaseCookieValue,
  type TokenSource,
} from "./token_source.ts";
export {
  authError,
  issuerFor,
  jwksUrlFor,
  TokenVerifier,
  type TokenVerifierOptions,
  type VerifiedClaims,
  verifierOptionsFor,
  type VerifierSettings,
  type VerifyFailureReason,
} from "./verify.ts";

/** Who a connection is, attached to the socket after the handshake. */
export interface Identity {
  user: User;
  claims: VerifiedClaims;
  /** Where the token came from. */
  source: TokenSource;
  /** When the token expires, ms since the epoch; `null` if it has no `exp`. */
  expiresAt: number | null;
}

/** The parts of a Socket.IO handshake the authenticator reads. */
export interface AuthHandshake {
  headers: Headers;
  /** The handshake `auth` object as sent by the client (untrusted). */
  auth?: unknown;
  /** The remote address (for the fail limiter and the log). */
  address: string;
}

/** Options of {@linkcode Authenticator}. */
export interface AuthenticatorOptions {
  verifier: TokenVerifier;
  /** Looks a user up by the token's `sub` (the Supabase auth id). */
  findUser: (authId: string) => Promise<User | null>;
  /** Plain cookies holding an access token (`AUTH_COOKIE_NAMES`). */
  cookieNames: string[];
  /**
   * Origins allowed for cookie handshakes (`SOCKET_CORS_ORIGINS`), e.g.
   * `http://localhost:5173`. `*` is ignored here: a cookie handshake always
   * needs an explicitly listed origin.
   */
  allowedOrigins: string[];
  /** Refuses addresses with too many failed handshakes; none when unset. */
  failLimiter?: FailLimiter;
  /** Clock, ms since the epoch (tests). Default `Date.now`. */
  now?: () => number;
}

/** Options of {@linkcode Authenticator.refresh}, for the log only. */
export interface RefreshOptions {
  address?: string;
  userAgent?: string | null;
}

const MAX_LOGGED_USER_AGENT = 256;

/** Turns handshakes into {@linkcode Identity}s; see the module docs. */
export class Authenticator {
  readonly #verifier: TokenVerifier;
  readonly #findUser: (authId: string) => Promise<User | null>;
  readonly #cookieNames: string[];
  readonly #allowedOrigins: Set<string>;
  readonly #failLimiter: FailLimiter | undefined;
  readonly #now: () => number;

  constructor(options: AuthenticatorOptions) {
    this.#verifier = options.verifier;
    this.#findUser = options.findUser;
    this.#cookieNames = [...options.cookieNames];
    this.#allowedOrigins = new Set(
      options.allowedOrigins.map(normalizeOrigin).filter((o) => o !== "" && o !== "*"),
    );
    this.#failLimiter = options.failLimiter;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Authenticates a handshake, in this order: fail limiter (blocked →
   * `AUTH_REQUIRED`, reason `too_many_failures`, nothing verified); token
   * (none → `AUTH_REQUIRED`, `missing_token`); for cookie tokens the `Origin`
   * (not allowed → `ACCESS_DENIED`, `origin_not_allowed`); verification
   * (`AUTH_REQUIRED` with the verifier's reason); the user (unknown →
   * `USER_NOT_FOUND`). Failures count against the address; a store failure
   * becomes `SERVER_ERROR` and does not.
   */
  async authenticate(handshake: AuthHandshake): Promise<Identity> {
    const address = handshake.address;
    const userAgent = truncate(safeHeader(handshake.headers, "user-agent"));
    const now = this.#now();
    const limiter = this.#failLimiter;

    if (limiter !== undefined && limiter.isBlocked(address, now)) {
      security("auth_failure", { reason: "too_many_failures", address, userAgent });
      throw new ServanaError("AUTH_REQUIRED", "Too many failed authentication attempts", {
        details: { reason: "too_many_failures" },
      });
    }

    let source: TokenSource | undefined;
    try {
      const found = extractToken(handshake, { cookieNames: this.#cookieNames });
      if (found === null) {
        throw new ServanaError("AUTH_REQUIRED", "Authentication required: no token", {
          details: { reason: "missing_token" },
        });
      }
      source = found.source;
      if (isAmbientCredential(found.source)) this.#checkOrigin(handshake.headers);
      const claims = await this.#verifier.verify(found.token);
      const user = await this.#lookUp(claims.sub);
      limiter?.recordSuccess(address, now);
      security("auth_success", { address, userAgent, source, userId: user.id });
      return { user, claims, source: found.source, expiresAt: expiresAtOf(claims) };
    } catch (error) {
      const refused = asServanaError(error);
      const reason = reasonOf(refused);
      if (refused.code !== "SERVER_ERROR") {
        const blockedNow = limiter?.recordFailure(address, now) ?? false;
        if (blockedNow) security("auth_blocked", { address, userAgent, limit: limiter?.limit });
      }
      security("auth_failure", { reason, code: refused.code, address, userAgent, source });
      throw refused;
    }
  }

  /**
   * Handles `refreshToken { token }`: verifies the new token, requires the
   * same `sub` (else `ACCESS_DENIED`, reason `sub_mismatch`), looks the user
   * up again (role or departments may have changed) and returns the new
   * identity. The source stays the original handshake's.
   */
  async refresh(
    identity: Identity,
    token: string,
    options: RefreshOptions = {},
  ): Promise<Identity> {
    const fields = {
      address: options.address,
      userAgent: truncate(options.userAgent ?? null),
      source: identity.source,
      userId: identity.user.id,
    };
    try {
      const claims = await this.#verifier.verify(token);
      if (claims.sub !== identity.user.authId) {
        throw new ServanaError("ACCESS_DENIED", "Refreshed token belongs to another user", {
          details: { reason: "sub_mismatch" },
        });
      }
      const user = await this.#lookUp(claims.sub);
      security("token_refresh", fields);
      return { user, claims, source: identity.source, expiresAt: expiresAtOf(claims) };
    } catch (error) {
      const refused = asServanaError(error);
      security("token_refresh_failure", {
        ...fields,
        reason: reasonOf(refused),
        code: refused.code,
      });
      throw refused;
    }
  }

  #checkOrigin(headers: Headers): void {
    const origin = safeHeader(headers, "origin");
    if (origin !== null) {
      if (this.#allowedOrigins.has(normalizeOrigin(origin))) return;
    } else if (safeHeader(headers, "sec-fetch-site") === "same-origin") {
      // Same-origin GETs (long-polling from a page this server serves) carry
      // no Origin; browsers mark them with Sec-Fetch-Site.
      return;
    }
    throw new ServanaError("ACCESS_DENIED", "Origin not allowed for cookie authentication", {
      details: { reason: "origin_not_allowed" },
    });
  }

  async #lookUp(authId: string): Promise<User> {
    let user: User | null;
    try {
      user = await this.#findUser(authId);
    } catch (cause) {
      throw new ServanaError("SERVER_ERROR", undefined, {
        details: { reason: "store_error" },
        cause,
      });
    }
    if (user === null) {
      throw new ServanaError("USER_NOT_FOUND", undefined, {
        details: { reason: "user_not_found" },
      });
    }
    return user;
  }
}

function expiresAtOf(claims: VerifiedClaims): number | null {
  return claims.exp !== undefined ? claims.exp * 1000 : null;
}

function asServanaError(error: unknown): ServanaError {
  if (error instanceof ServanaError) return error;
  return new ServanaError("SERVER_ERROR", undefined, {
    details: { reason: "internal_error" },
    cause: error,
  });
}

function reasonOf(error: ServanaError): string {
  const details = error.details;
  if (typeof details === "object" && details !== null) {
    const reason = (details as Record<string, unknown>).reason;
    if (typeof reason === "string") return reason;
  }
  return error.code.toLowerCase();
}

/** Lower-cases and drops a trailing slash: `HTTP://Example.com/` → `http://example.com`. */
function normalizeOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, "");
}

function safeHeader(headers: Headers, name: string): string | null {
  try {
    return headers.get(name);
  } catch {
    return null;
  }
}

function truncate(value: string | null): string | null {
  if (value === null) return null;
  return value.length > MAX_LOGGED_USER_AGENT ? value.slice(0, MAX_LOGGED_USER_AGENT) : value;
}
