/**
 * The identity layer: who a handshake is. {@linkcode Authenticator} finds
 * every token the handshake presents ({@link ./token_source.ts}), checks the
 * origin of cookie handshakes, verifies each token in turn until one holds,
 * and resolves it to a Servana person:
 *
 * - a customer token (HS256 with `JWT_ACCESS_SECRET`, {@link ./customer_token.ts})
 *   names `client.client_id`: the row must exist and be active;
 * - otherwise a Supabase access token ({@link ./verify.ts}) names an agent:
 *   exactly one active `sys_user` whose `supabase_user_id` is the token's `sub`.
 *
 * Socket.IO glue (`io.use(...)`) calls {@linkcode Authenticator.authenticate}
 * and turns a thrown `ServanaError` into `connect_error`.
 *
 * Every result is written to the security log (`auth_success`,
 * `auth_failure`, `token_refresh`, `token_refresh_failure`) with reason,
 * address, user agent and source; tokens are never logged.
 *
 * @module
 */

import { ServanaError } from "../errors.ts";
import { security } from "../log.ts";
import { type Agent, type Person, type PersonRef, samePerson } from "../store/mod.ts";
import type { CustomerTokenVerifier } from "./customer_token.ts";
import type { FailLimiter } from "./fail_limiter.ts";
import {
  type ExtractedToken,
  extractTokens,
  isAmbientCredential,
  type TokenSource,
} from "./token_source.ts";
import type { TokenVerifier } from "./verify.ts";

export {
  type CustomerClaims,
  CustomerTokenVerifier,
  type CustomerTokenVerifierOptions,
  mintCustomerToken,
  type MintCustomerTokenOptions,
} from "./customer_token.ts";
export { DEV_CUSTOMER_SECRET, DEV_JWT_SECRET, mintToken, type MintTokenOptions } from "./dev.ts";
export { FailLimiter, type FailLimiterOptions } from "./fail_limiter.ts";
export {
  DEFAULT_COOKIE_NAMES,
  type ExtractedToken,
  extractToken,
  extractTokens,
  hasHeaderCredential,
  isAmbientCredential,
  parseCookieHeader,
  requireHeaderCredential,
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

/** Which kind of token named the person. */
export type TokenKind = "supabase" | "customer";

/** Who a connection is, attached to the socket after the handshake. */
export interface Identity {
  person: Person;
  /** Which kind of token it was. */
  tokenKind: TokenKind;
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
  /** The client's address (for the fail limiter and the log). */
  address: string;
}

/** What the authenticator reads of the store. */
export interface PersonLookup {
  /** Every `sys_user` row whose `supabase_user_id` is `authId`, active or not. */
  findAgentsByAuthId(authId: string): Promise<Agent[]>;
  /** A person by kind and id (inactive too), or null. */
  getPerson(ref: PersonRef): Promise<Person | null>;
}

/** Options of {@linkcode Authenticator}. */
export interface AuthenticatorOptions {
  /** Verifies agents' Supabase access tokens. */
  verifier: TokenVerifier;
  /** Verifies customers' tokens; null when `JWT_ACCESS_SECRET` is not configured. */
  customerVerifier: CustomerTokenVerifier | null;
  /** Where people are looked up. */
  people: PersonLookup;
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

/**
 * Refusal reasons that say nothing about the client: the server could not
 * decide (store or JWKS down), or the token was genuine but stale, or the
 * account was refused. They never count against the client's address.
 */
const NOT_THE_CLIENTS_FAULT: ReadonlySet<string> = new Set([
  "jwks_unavailable",
  "store_error",
  "internal_error",
  "expired",
  "not_yet_valid",
  "origin_not_allowed",
  "user_not_found",
  "account_inactive",
  "ambiguous_account",
]);

/** Turns handshakes into {@linkcode Identity}s; see the module docs. */
export class Authenticator {
  readonly #verifier: TokenVerifier;
  readonly #customerVerifier: CustomerTokenVerifier | null;
  readonly #people: PersonLookup;
  readonly #cookieNames: string[];
  readonly #allowedOrigins: Set<string>;
  readonly #failLimiter: FailLimiter | undefined;
  readonly #now: () => number;

  constructor(options: AuthenticatorOptions) {
    this.#verifier = options.verifier;
    this.#customerVerifier = options.customerVerifier;
    this.#people = options.people;
    this.#cookieNames = [...options.cookieNames];
    this.#allowedOrigins = new Set(
      options.allowedOrigins.map(normalizeOrigin).filter((o) => o !== "" && o !== "*"),
    );
    this.#failLimiter = options.failLimiter;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Authenticates a handshake. Every token it presents is tried in source
   * order (`auth.token`, Bearer, cookies) and the first that verifies wins;
   * a cookie token needs an allowed `Origin` (`ACCESS_DENIED`,
   * `origin_not_allowed`). With no token: `AUTH_REQUIRED` (`missing_token`).
   * When every token fails, the first token's refusal is thrown. An address
   * blocked by the fail limiter is refused (`too_many_failures`) unless one of
   * its tokens verifies; only the client's own faults (forged, malformed or
   * missing tokens) count against it, never a store or JWKS outage.
   */
  async authenticate(handshake: AuthHandshake): Promise<Identity> {
    const address = handshake.address;
    const userAgent = truncate(safeHeader(handshake.headers, "user-agent"));
    const now = this.#now();
    const limiter = this.#failLimiter;
    const blocked = limiter !== undefined && limiter.isBlocked(address, now);
    const candidates = extractTokens(handshake, { cookieNames: this.#cookieNames });
    let firstRefusal: ServanaError | null = null;
    let firstSource: TokenSource | undefined;
    for (const candidate of candidates) {
      try {
        if (isAmbientCredential(candidate.source)) this.#checkOrigin(handshake.headers);
        const identity = await this.#identify(candidate);
        limiter?.recordSuccess(address, now);
        security("auth_success", {
          address,
          userAgent,
          source: candidate.source,
          kind: identity.person.kind,
          userId: identity.person.id,
        });
        return identity;
      } catch (error) {
        if (firstRefusal === null) {
          firstRefusal = asServanaError(error);
          firstSource = candidate.source;
        }
      }
    }
    const refused = blocked
      ? new ServanaError("AUTH_REQUIRED", "Too many failed authentication attempts", {
        details: { reason: "too_many_failures" },
      })
      : firstRefusal ??
        new ServanaError("AUTH_REQUIRED", "Authentication required: no token", {
          details: { reason: "missing_token" },
        });
    const reason = reasonOf(refused);
    if (!blocked && limiter !== undefined && !NOT_THE_CLIENTS_FAULT.has(reason)) {
      if (limiter.recordFailure(address, now)) {
        security("auth_blocked", { address, userAgent, limit: limiter.limit });
      }
    }
    security("auth_failure", {
      reason,
      code: refused.code,
      address,
      userAgent,
      source: firstSource,
    });
    throw refused;
  }

  /**
   * Handles `refreshToken { token }`: verifies the new token, requires the
   * same person (else `ACCESS_DENIED`, reason `person_mismatch`), looks the
   * person up again (role or departments may have changed) and returns the
   * new identity. The source stays the original handshake's.
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
      kind: identity.person.kind,
      userId: identity.person.id,
    };
    try {
      const next = await this.#identify({ token, source: identity.source });
      if (!samePerson(next.person, identity.person)) {
        throw new ServanaError("ACCESS_DENIED", "Refreshed token belongs to another person", {
          details: { reason: "person_mismatch" },
        });
      }
      security("token_refresh", fields);
      return next;
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

  /** Verifies one token (customer first, then Supabase) and finds its person. */
  async #identify(candidate: Pick<ExtractedToken, "token" | "source">): Promise<Identity> {
    const customer = this.#customerVerifier === null
      ? null
      : await this.#customerVerifier.verify(candidate.token);
    if (customer !== null) {
      const person = await this.#lookUp(() =>
        this.#people.getPerson({ kind: "client", id: customer.clientId })
      );
      if (person === null) throw userNotFound();
      if (!person.active) throw accountInactive();
      return {
        person,
        tokenKind: "customer",
        source: candidate.source,
        expiresAt: customer.exp * 1000,
      };
    }
    const claims = await this.#verifier.verify(candidate.token);
    const rows = await this.#lookUp(() => this.#people.findAgentsByAuthId(claims.sub));
    const active = rows.filter((row) => row.active);
    if (active.length > 1) {
      throw new ServanaError("ACCESS_DENIED", "More than one active account has this login", {
        details: { reason: "ambiguous_account" },
      });
    }
    if (active.length === 0) throw rows.length > 0 ? accountInactive() : userNotFound();
    return {
      person: active[0],
      tokenKind: "supabase",
      source: candidate.source,
      expiresAt: claims.exp !== undefined ? claims.exp * 1000 : null,
    };
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

  async #lookUp<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (cause) {
      throw new ServanaError("SERVER_ERROR", undefined, {
        details: { reason: "store_error" },
        cause,
      });
    }
  }
}

function userNotFound(): ServanaError {
  return new ServanaError("USER_NOT_FOUND", undefined, { details: { reason: "user_not_found" } });
}

function accountInactive(): ServanaError {
  return new ServanaError("ACCESS_DENIED", "This account is not active", {
    details: { reason: "account_inactive" },
  });
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
