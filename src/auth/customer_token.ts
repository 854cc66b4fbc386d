/**
 * Customers' tokens: the Servana backend's own access token, HS256 with its
 * `JWT_ACCESS_SECRET`, issued by the mobile app's OTP login. Payload
 * `{ client_id, client_number, type?: "client" }` with `exp` (7 days for the
 * long-lived token, 15 minutes for the short one), no `iss`, no `aud`.
 *
 * {@linkcode CustomerTokenVerifier.verify} answers three ways: the token is
 * not signed with the customer secret (null: the caller may try it as a
 * Supabase token), it is and it is valid (the claims), or it is and it is not
 * (a `ServanaError("AUTH_REQUIRED")`, never tried as anything else). So a
 * customer token is never checked against the Supabase secret or JWKS, and a
 * Supabase token never becomes a customer.
 *
 * @module
 */

import { decodeProtectedHeader, errors, type JWTPayload, jwtVerify, SignJWT } from "jose";
import { authError } from "./verify.ts";

/** The claims of a verified customer token. */
export interface CustomerClaims {
  /** `client.client_id`. */
  clientId: number;
  /** `client_number` as the token carries it, or null. */
  clientNumber: string | null;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** The whole verified payload. */
  raw: JWTPayload;
}

/** Options of {@linkcode CustomerTokenVerifier}. */
export interface CustomerTokenVerifierOptions {
  /** `JWT_ACCESS_SECRET` (UTF-8 bytes of the string, as the backend's jsonwebtoken uses it). */
  secret: string;
  /** Tolerance for `exp`/`nbf`, seconds. Default 10. */
  clockToleranceSec?: number;
  /** Clock in ms since the epoch (tests). Default `Date.now`. */
  now?: () => number;
}

const MAX_TOKEN_LENGTH = 16 * 1024;

/** Verifies customers' tokens; see the module docs. */
export class CustomerTokenVerifier {
  readonly #key: Uint8Array;
  readonly #tolerance: number;
  readonly #now: () => number;

  constructor(options: CustomerTokenVerifierOptions) {
    if (options.secret.length === 0) {
      throw new TypeError("CustomerTokenVerifier: secret must not be empty");
    }
    this.#key = new TextEncoder().encode(options.secret);
    this.#tolerance = options.clockToleranceSec ?? 10;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The claims when `token` is a valid customer token; null when it is not
   * signed with the customer secret (or is not an HS256 JWS at all); throws
   * `AUTH_REQUIRED` when it is signed with it but expired, not yet valid,
   * without `exp`, without a usable `client_id`, or of another `type`.
   */
  async verify(token: string): Promise<CustomerClaims | null> {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return null;
    if (token.split(".").length !== 3) return null;
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      return null;
    }
    if (alg !== "HS256") return null;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#key, {
        algorithms: ["HS256"],
        clockTolerance: this.#tolerance,
        currentDate: new Date(this.#now()),
        requiredClaims: ["exp"],
      }));
    } catch (error) {
      if (error instanceof errors.JWSSignatureVerificationFailed) return null;
      if (error instanceof errors.JWTExpired) throw authError("expired", error);
      if (error instanceof errors.JWTClaimValidationFailed) {
        if (error.claim === "exp") throw authError("missing_exp", error);
        if (error.claim === "nbf") throw authError("not_yet_valid", error);
      }
      // not a JWS jose can check with an HMAC key: not ours
      return null;
    }
    const clientId = payload.client_id;
    if (typeof clientId !== "number" || !Number.isSafeInteger(clientId) || clientId <= 0) {
      throw authError("missing_client_id");
    }
    if (payload.type !== undefined && payload.type !== "client") {
      throw authError("wrong_token_type");
    }
    const clientNumber = payload.client_number;
    return {
      clientId,
      clientNumber: typeof clientNumber === "string" ? clientNumber : null,
      exp: payload.exp as number,
      raw: payload,
    };
  }
}

/** Options of {@linkcode mintCustomerToken}. */
export interface MintCustomerTokenOptions {
  /** The HS256 secret (`JWT_ACCESS_SECRET`, or the development one). */
  secret: string;
  /** Lifetime in seconds. Default 7 days, as the backend's long-lived token. */
  expiresInSec?: number;
  /** Issue time in ms since the epoch. Default `Date.now()`. */
  now?: number;
}

/**
 * Mints a customer token shaped like the backend's long-lived one:
 * `{ client_id, client_number, type: "client", iat, exp }`, HS256, no `iss`/`aud`.
 */
export async function mintCustomerToken(
  customer: { clientId: number; clientNumber: string },
  options: MintCustomerTokenOptions,
): Promise<string> {
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  return await new SignJWT({
    client_id: customer.clientId,
    client_number: customer.clientNumber,
    type: "client",
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt(iat)
    .setExpirationTime(iat + (options.expiresInSec ?? 7 * 86_400))
    .sign(new TextEncoder().encode(options.secret));
}
