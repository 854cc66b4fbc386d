/**
 * Access-token verification with `npm:jose` (Web Crypto), locally, without
 * calling Supabase per connection.
 *
 * - HS256 only with the shared secret (`SUPABASE_JWT_SECRET`, Supabase's
 *   legacy secret); ES256, RS256 and EdDSA only with keys of the project's
 *   JWKS. The allowlist is chosen from the token header's `alg` before any key
 *   is selected, so an HS256 token is never checked against a public key and
 *   `none` is never accepted.
 * - Signature, `exp` and `nbf` (with a small clock tolerance), `iss` (when
 *   configured), `aud` (default `authenticated`), a non-empty `sub`, and an
 *   `exp` (a socket must not outlive its token).
 * - The JWKS is fetched lazily, cached, refetched when a `kid` is unknown or
 *   the cache is old, at most once per cooldown, with a timeout.
 *
 * Every refusal is a `ServanaError("AUTH_REQUIRED")` whose `details.reason` is
 * one of {@linkcode VerifyFailureReason}.
 *
 * @module
 */

import type { Config } from "../config.ts";
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  jwtVerify,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from "jose";
import { ServanaError } from "../errors.ts";
import { DEV_CUSTOMER_SECRET, DEV_JWT_SECRET } from "./dev.ts";

/** Stable reasons a token is refused (`details.reason` of the error). */
export type VerifyFailureReason =
  | "missing_token"
  | "malformed"
  | "alg_not_allowed"
  | "bad_signature"
  | "expired"
  | "not_yet_valid"
  | "wrong_issuer"
  | "wrong_audience"
  | "no_key"
  | "jwks_unavailable"
  | "missing_sub"
  | "missing_exp"
  | "missing_client_id"
  | "wrong_token_type";

/** The claims of a verified token the service uses. */
export interface VerifiedClaims {
  /** The Supabase auth user id. */
  sub: string;
  /** Expiry, seconds since the epoch. */
  exp?: number;
  /** Issue time, seconds since the epoch. */
  iat?: number;
  /** Supabase's Postgres role claim (e.g. `authenticated`), not Servana's role. */
  role?: string;
  email?: string;
  /** The whole verified payload. */
  raw: JWTPayload;
}

/** Options of {@linkcode TokenVerifier}. */
export interface TokenVerifierOptions {
  /** HS256 shared secret (UTF-8 bytes of the string, as Supabase uses it). */
  secret?: string;
  /** URL of the JWKS with the public keys for ES256/RS256/EdDSA. */
  jwksUrl?: string;
  /** Required `iss`, when set. */
  issuer?: string;
  /** Required `aud`. Default `"authenticated"`. */
  audience?: string;
  /** Tolerance for `exp`/`nbf`, seconds. Default 10. */
  clockToleranceSec?: number;
  /** Least time between two JWKS fetches, ms. Default 30 000. */
  jwksCooldownMs?: number;
  /** Age after which the cached JWKS is refetched on next use, ms. Default 600 000. */
  jwksMaxAgeMs?: number;
  /** Timeout of one JWKS fetch, ms. Default 5 000. */
  jwksTimeoutMs?: number;
  /** Refuse tokens without `exp`. Default true. */
  requireExp?: boolean;
  /** The fetch used for the JWKS (tests count calls). Default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Clock in ms since the epoch (tests). Default `Date.now`. */
  now?: () => number;
}

/** Algorithms verified with the shared secret. */
export const SECRET_ALGORITHMS: readonly string[] = ["HS256"];
/** Algorithms verified with JWKS public keys. */
export const JWKS_ALGORITHMS: readonly string[] = ["ES256", "RS256", "EdDSA"];

const DEFAULT_AUDIENCE = "authenticated";
const DEFAULT_CLOCK_TOLERANCE_SEC = 10;
const DEFAULT_JWKS_COOLDOWN_MS = 30_000;
const DEFAULT_JWKS_MAX_AGE_MS = 600_000;
const DEFAULT_JWKS_TIMEOUT_MS = 5_000;
const MAX_TOKEN_LENGTH = 16 * 1024;
const MAX_JWKS_BYTES = 512 * 1024;

const MESSAGES: Readonly<Record<VerifyFailureReason, string>> = {
  missing_token: "Authentication required: no token",
  malformed: "Authentication required: malformed token",
  alg_not_allowed: "Authentication required: token algorithm not allowed",
  bad_signature: "Authentication required: invalid token signature",
  expired: "Authentication required: token expired",
  not_yet_valid: "Authentication required: token not yet valid",
  wrong_issuer: "Authentication required: wrong token issuer",
  wrong_audience: "Authentication required: wrong token audience",
  no_key: "Authentication required: no key for this token",
  jwks_unavailable: "Authentication required: signing keys unavailable",
  missing_sub: "Authentication required: token has no subject",
  missing_exp: "Authentication required: token has no expiry",
  missing_client_id: "Authentication required: customer token has no client_id",
  wrong_token_type: "Authentication required: not a customer access token",
};

/** Builds the `AUTH_REQUIRED` error for a refusal reason. */
export function authError(reason: VerifyFailureReason, cause?: unknown): ServanaError {
  return new ServanaError("AUTH_REQUIRED", MESSAGES[reason], { details: { reason }, cause });
}

/** The Supabase JWKS URL of a project: `${supabaseUrl}/auth/v1/.well-known/jwks.json`. */
export function jwksUrlFor(supabaseUrl: string): string {
  return `${trimSlash(supabaseUrl)}/auth/v1/.well-known/jwks.json`;
}

/** The Supabase issuer of a project: `${supabaseUrl}/auth/v1`. */
export function issuerFor(supabaseUrl: string): string {
  return `${trimSlash(supabaseUrl)}/auth/v1`;
}

/** Result of {@linkcode verifierOptionsFor}. */
export interface VerifierSettings {
  /** Options of the Supabase (agents') verifier. */
  options: TokenVerifierOptions;
  /** The customers' token secret (`JWT_ACCESS_SECRET`), or null: customer tokens are refused. */
  customerSecret: string | null;
  /** True when the insecure {@linkcode DEV_JWT_SECRET} verifies agents' tokens (warn at start). */
  usingDevSecret: boolean;
  /** True when the insecure {@linkcode DEV_CUSTOMER_SECRET} verifies customers' tokens. */
  usingDevCustomerSecret: boolean;
}

/**
 * Verifier settings from the service's configuration (`src/config.ts` has
 * already read `SUPABASE_JWT_SECRET`, `JWT_ACCESS_SECRET`, the JWKS URL,
 * issuer and audience). In development, a missing key source is replaced by
 * the insecure development secret of that kind; in production that throws.
 */
export function verifierOptionsFor(
  config: Pick<Config, "appEnv" | "auth">,
): VerifierSettings {
  const { jwtSecret, jwksUrl, issuer, audience, customerSecret } = config.auth;
  const common = { issuer: issuer ?? undefined, audience };
  const development = config.appEnv === "development";
  if (jwtSecret === null && jwksUrl === null && !development) {
    throw new Error(
      "APP_ENV=production needs SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL (or SUPABASE_URL) to verify tokens",
    );
  }
  const usingDevSecret = jwtSecret === null && jwksUrl === null;
  const usingDevCustomerSecret = customerSecret === null && development;
  return {
    options: usingDevSecret
      ? { secret: DEV_JWT_SECRET, ...common }
      : { secret: jwtSecret ?? undefined, jwksUrl: jwksUrl ?? undefined, ...common },
    customerSecret: usingDevCustomerSecret ? DEV_CUSTOMER_SECRET : customerSecret,
    usingDevSecret,
    usingDevCustomerSecret,
  };
}

/**
 * Verifies access tokens. One instance per process: it caches the JWKS.
 *
 * @example
 * ```ts
 * const verifier = new TokenVerifier({ jwksUrl: jwksUrlFor(url), issuer: issuerFor(url) });
 * const claims = await verifier.verify(token); // throws ServanaError AUTH_REQUIRED
 * ```
 */
export class TokenVerifier {
  readonly #secretKey: Uint8Array | null;
  readonly #jwksUrl: string | null;
  readonly #issuer: string | undefined;
  readonly #audience: string;
  readonly #tolerance: number;
  readonly #cooldownMs: number;
  readonly #maxAgeMs: number;
  readonly #timeoutMs: number;
  readonly #requireExp: boolean;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;

  #jwks: JWTVerifyGetKey | null = null;
  #jwksFetchedAt = -Infinity;
  #lastAttemptAt = -Infinity;
  #inFlight: Promise<void> | null = null;

  constructor(options: TokenVerifierOptions) {
    if (options.secret === undefined && options.jwksUrl === undefined) {
      throw new TypeError("TokenVerifier needs a secret or a jwksUrl");
    }
    if (options.secret !== undefined && options.secret.length === 0) {
      throw new TypeError("TokenVerifier: secret must not be empty");
    }
    this.#secretKey = options.secret !== undefined
      ? new TextEncoder().encode(options.secret)
      : null;
    this.#jwksUrl = options.jwksUrl !== undefined ? new URL(options.jwksUrl).href : null;
    this.#issuer = options.issuer;
    this.#audience = options.audience ?? DEFAULT_AUDIENCE;
    this.#tolerance = options.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC;
    this.#cooldownMs = options.jwksCooldownMs ?? DEFAULT_JWKS_COOLDOWN_MS;
    this.#maxAgeMs = options.jwksMaxAgeMs ?? DEFAULT_JWKS_MAX_AGE_MS;
    this.#timeoutMs = options.jwksTimeoutMs ?? DEFAULT_JWKS_TIMEOUT_MS;
    this.#requireExp = options.requireExp ?? true;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#now = options.now ?? Date.now;
  }

  /** Whether a JWKS source is configured. */
  get hasJwks(): boolean {
    return this.#jwksUrl !== null;
  }

  /**
   * Verifies a compact JWT and returns its claims, or throws
   * `ServanaError("AUTH_REQUIRED", …, { details: { reason } })`.
   */
  async verify(token: string): Promise<VerifiedClaims> {
    if (typeof token !== "string" || token.length === 0) throw authError("missing_token");
    if (token.length > MAX_TOKEN_LENGTH || token.split(".").length !== 3) {
      throw authError("malformed");
    }
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (cause) {
      throw authError("malformed", cause);
    }
    if (typeof alg !== "string") throw authError("malformed");

    const nowMs = this.#now();
    const verifyOptions: JWTVerifyOptions = {
      algorithms: [alg],
      audience: this.#audience,
      clockTolerance: this.#tolerance,
      currentDate: new Date(nowMs),
      requiredClaims: this.#requireExp ? ["sub", "exp"] : ["sub"],
    };
    if (this.#issuer !== undefined) verifyOptions.issuer = this.#issuer;

    let payload: JWTPayload;
    if (SECRET_ALGORITHMS.includes(alg)) {
      if (this.#secretKey === null) throw authError("alg_not_allowed");
      payload = await verifyWith(token, this.#secretKey, verifyOptions);
    } else if (JWKS_ALGORITHMS.includes(alg)) {
      if (this.#jwksUrl === null) throw authError("alg_not_allowed");
      payload = await this.#verifyWithJwks(token, verifyOptions, nowMs);
    } else {
      throw authError("alg_not_allowed");
    }

    if (typeof payload.sub !== "string" || payload.sub.length === 0) {
      throw authError("missing_sub");
    }
    const claims: VerifiedClaims = { sub: payload.sub, raw: payload };
    if (typeof payload.exp === "number") claims.exp = payload.exp;
    if (typeof payload.iat === "number") claims.iat = payload.iat;
    if (typeof payload.role === "string") claims.role = payload.role;
    if (typeof payload.email === "string") claims.email = payload.email;
    return claims;
  }

  async #verifyWithJwks(
    token: string,
    verifyOptions: JWTVerifyOptions,
    nowMs: number,
  ): Promise<JWTPayload> {
    if (this.#jwks === null || nowMs - this.#jwksFetchedAt >= this.#maxAgeMs) {
      await this.#refreshJwks(nowMs);
    }
    let keys = this.#jwks;
    if (keys === null) throw authError("jwks_unavailable");
    try {
      return await verifyWithKeySet(token, keys, verifyOptions);
    } catch (error) {
      if (!isNoKey(error)) throw error;
    }
    // Unknown kid: maybe the keys rotated. Refetch, at most once per cooldown.
    await this.#refreshJwks(nowMs);
    if (this.#jwks === keys) throw authError("no_key");
    keys = this.#jwks as JWTVerifyGetKey;
    try {
      return await verifyWithKeySet(token, keys, verifyOptions);
    } catch (error) {
      if (isNoKey(error)) throw authError("no_key");
      throw error;
    }
  }

  /** Fetches the JWKS unless one was attempted within the cooldown; shares a fetch in flight. */
  async #refreshJwks(nowMs: number): Promise<void> {
    if (this.#inFlight !== null) return await this.#inFlight;
    if (nowMs - this.#lastAttemptAt < this.#cooldownMs) return;
    this.#lastAttemptAt = nowMs;
    this.#inFlight = this.#fetchJwks(nowMs);
    try {
      await this.#inFlight;
    } finally {
      this.#inFlight = null;
    }
  }

  async #fetchJwks(nowMs: number): Promise<void> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#timeoutMs);
    try {
      const response = await this.#fetch(this.#jwksUrl as string, {
        signal: controller.signal,
        headers: { accept: "application/json" },
      });
      if (!response.ok) {
        await response.body?.cancel();
        return;
      }
      const text = await response.text();
      if (text.length > MAX_JWKS_BYTES) return;
      const set = createLocalJWKSet(JSON.parse(text) as JSONWebKeySet);
      this.#jwks = set;
      this.#jwksFetchedAt = nowMs;
    } catch {
      // Network error, timeout, bad JSON or invalid JWKS: keep the previous keys.
    } finally {
      clearTimeout(timer);
    }
  }
}

async function verifyWith(
  token: string,
  key: Uint8Array | CryptoKey,
  options: JWTVerifyOptions,
): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, key, options)).payload;
  } catch (error) {
    throw mapJoseError(error);
  }
}

/** Verifies against a JWKS; when several keys match (no `kid`), tries each. */
async function verifyWithKeySet(
  token: string,
  keys: JWTVerifyGetKey,
  options: JWTVerifyOptions,
): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, keys, options)).payload;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw mapJoseError(error);
    for await (const key of error as unknown as AsyncIterable<CryptoKey>) {
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (inner) {
        if (inner instanceof errors.JWSSignatureVerificationFailed) continue;
        throw mapJoseError(inner);
      }
    }
    throw authError("bad_signature");
  }
}

function isNoKey(error: unknown): boolean {
  return error instanceof ServanaError &&
    (error.details as { reason?: string } | undefined)?.reason === "no_key";
}

function mapJoseError(error: unknown): ServanaError {
  if (error instanceof ServanaError) return error;
  if (error instanceof errors.JWSSignatureVerificationFailed) return authError("bad_signature");
  if (error instanceof errors.JWTExpired) return authError("expired");
  if (error instanceof errors.JOSEAlgNotAllowed) return authError("alg_not_allowed");
  if (error instanceof errors.JWKSNoMatchingKey) return authError("no_key");
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === "missing" && error.claim === "sub") return authError("missing_sub");
    if (error.reason === "missing" && error.claim === "exp") return authError("missing_exp");
    if (error.claim === "nbf") return authError("not_yet_valid");
    if (error.claim === "iss") return authError("wrong_issuer");
    if (error.claim === "aud") return authError("wrong_audience");
    return authError("malformed", error);
  }
  // JWSInvalid, JWTInvalid, JOSENotSupported, key import errors, TypeError…
  return authError("malformed", error);
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, "");
}
