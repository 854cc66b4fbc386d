/**
 * Development-only token minting: the fixed development secrets and
 * {@linkcode mintToken} (agents' Supabase-shaped tokens; customers' tokens are
 * minted by `mintCustomerToken` of `customer_token.ts`), used by
 * `POST /dev/login`, `deno task dev` and tests.
 *
 * NOTHING HERE IS SECURE. The secret below is public (it is in this source
 * file); a server that accepts it accepts tokens anyone can mint. The server
 * uses it only when `APP_ENV` is not `production` and no real key source
 * (`SUPABASE_JWT_SECRET`, `SUPABASE_JWKS_URL`, `SUPABASE_URL`) is configured.
 *
 * @module
 */

import { SignJWT } from "jose";

/**
 * INSECURE, DEVELOPMENT ONLY: the fixed HS256 secret used when no real key
 * source is configured outside production. Public by design; never use it in
 * production.
 */
export const DEV_JWT_SECRET = "servana-dev-only-INSECURE-jwt-secret-never-use-in-production";

/**
 * INSECURE, DEVELOPMENT ONLY: the fixed HS256 secret of customers' tokens
 * (the backend's `JWT_ACCESS_SECRET`) used when `JWT_ACCESS_SECRET` is unset
 * outside production. Public by design; different from {@linkcode DEV_JWT_SECRET}.
 */
export const DEV_CUSTOMER_SECRET = "servana-dev-only-INSECURE-customer-secret-never-in-production";

/** Options of {@linkcode mintToken}. */
export interface MintTokenOptions {
  /** HS256 secret (e.g. {@linkcode DEV_JWT_SECRET}). */
  secret: string;
  /** `iss` claim; omitted when unset. */
  issuer?: string;
  /** `aud` claim. Default `"authenticated"` (Supabase's). */
  audience?: string;
  /** Lifetime in seconds. Default 3600. */
  expiresInSec?: number;
  /** `email` claim; omitted when unset. */
  email?: string;
  /** Issue time in milliseconds since the epoch. Default `Date.now()`. */
  now?: number;
}

/**
 * Mints an HS256 access token shaped like Supabase's for a user: `sub` is
 * the user's `authId`, `role: "authenticated"`, `aud`, `iat`, `exp` and
 * optionally `iss` and `email`.
 *
 * @example
 * ```ts
 * const token = await mintToken({ authId: "agent-123" }, { secret: DEV_JWT_SECRET });
 * ```
 */
export async function mintToken(
  user: { authId: string },
  options: MintTokenOptions,
): Promise<string> {
  if (user.authId.length === 0) throw new TypeError("mintToken: authId must not be empty");
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const expiresInSec = options.expiresInSec ?? 3600;
  const claims: Record<string, unknown> = { role: "authenticated" };
  if (options.email !== undefined) claims.email = options.email;
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(user.authId)
    .setAudience(options.audience ?? "authenticated")
    .setIssuedAt(iat)
    .setExpirationTime(iat + expiresInSec);
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);
  return await jwt.sign(new TextEncoder().encode(options.secret));
}
