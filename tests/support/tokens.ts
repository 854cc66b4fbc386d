/**
 * Test-only helpers: asymmetric signing keys, JWKS documents, hostile tokens
 * and a loopback JWKS server that counts its fetches. Never imported by src/.
 *
 * @module
 */

import {
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  SignJWT,
  UnsecuredJWT,
} from "jose";

/** An asymmetric algorithm the verifier accepts with JWKS keys. */
export type AsymmetricAlg = "ES256" | "RS256" | "EdDSA";

/** A generated signing key with its public JWK. */
export interface SigningKey {
  alg: AsymmetricAlg;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** Public JWK with `kid`, `alg` and `use: "sig"`. */
  publicJwk: JWK;
}

/** Generates a key pair for `alg` and its public JWK. */
export async function generateSigningKey(alg: AsymmetricAlg, kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  // With @types/node in the program (socket.io-client), jose's CryptoKey is
  // node's webcrypto type, whose KeyUsage list differs from Deno's: same key.
  return {
    alg,
    kid,
    privateKey: privateKey as CryptoKey,
    publicKey: publicKey as CryptoKey,
    publicJwk,
  };
}

/** The JWKS document publishing the keys' public halves. */
export function jwksOf(...keys: SigningKey[]): JSONWebKeySet {
  return { keys: keys.map((key) => key.publicJwk) };
}

/** Options of {@linkcode signToken}. */
export interface SignOptions {
  /** Default `"authenticated"`; `null` omits the claim. */
  audience?: string | null;
  issuer?: string;
  /** Seconds from now; default 3600; `null` omits `exp`. */
  expiresInSec?: number | null;
  /** `nbf` in seconds from now. */
  notBeforeInSec?: number;
  /** Overrides the header's `kid` (`null` omits it). */
  kid?: string | null;
  /** Now, ms since the epoch; default `Date.now()`. */
  now?: number;
}

/** A Supabase-shaped JWT (role, iat, aud, iss, exp, nbf as the options say) around `claims`. */
function buildJwt(claims: JWTPayload, options: SignOptions): SignJWT {
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const jwt = new SignJWT({ role: "authenticated", ...claims }).setIssuedAt(iat);
  if (options.audience !== null) jwt.setAudience(options.audience ?? "authenticated");
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);
  if (options.expiresInSec !== null) jwt.setExpirationTime(iat + (options.expiresInSec ?? 3600));
  if (options.notBeforeInSec !== undefined) jwt.setNotBefore(iat + options.notBeforeInSec);
  return jwt;
}

/** Signs claims with an asymmetric key (header `alg` and `kid` from the key). */
export async function signToken(
  key: SigningKey,
  claims: JWTPayload,
  options: SignOptions = {},
): Promise<string> {
  const header: { alg: string; typ: string; kid?: string } = { alg: key.alg, typ: "JWT" };
  const kid = options.kid === undefined ? key.kid : options.kid;
  if (kid !== null) header.kid = kid;
  return await buildJwt(claims, options).setProtectedHeader(header).sign(key.privateKey);
}

/** Signs claims with HS256 and raw secret bytes (a string is UTF-8 encoded). */
export async function signHs256(
  secret: string | Uint8Array,
  claims: JWTPayload,
  options: SignOptions = {},
): Promise<string> {
  const bytes = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  const header: { alg: string; typ: string; kid?: string } = { alg: "HS256", typ: "JWT" };
  if (typeof options.kid === "string") header.kid = options.kid;
  return await buildJwt(claims, options).setProtectedHeader(header).sign(bytes);
}

/** An `alg: "none"` token (no signature). */
export function unsecuredToken(claims: JWTPayload, options: SignOptions = {}): string {
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const jwt = new UnsecuredJWT({ role: "authenticated", ...claims })
    .setIssuedAt(iat)
    .setAudience(options.audience ?? "authenticated")
    .setExpirationTime(iat + (options.expiresInSec ?? 3600));
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);
  return jwt.encode();
}

/** The public key as PEM (SPKI) bytes: the classic HS256 confusion attack's "secret". */
export async function publicKeyPemBytes(key: SigningKey): Promise<Uint8Array> {
  return new TextEncoder().encode(await exportSPKI(key.publicKey));
}

/** Flips one character of the signature part of a compact JWT. */
export function tamperSignature(token: string): string {
  const [header, payload, signature] = token.split(".");
  const first = signature[0] === "A" ? "B" : "A";
  return `${header}.${payload}.${first}${signature.slice(1)}`;
}

/** Base64url (no padding) of a Latin-1 `text`, as in a JWT's header or payload part. */
export function b64url(text: string): string {
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A JWKS served on loopback that counts requests; the served keys can be swapped. */
export interface JwksServer {
  url: string;
  /** Requests served so far. */
  readonly fetches: number;
  /** Replaces the served document. */
  setJwks(jwks: JSONWebKeySet): void;
  close(): Promise<void>;
}

/** Serves `jwks` on `127.0.0.1`, port chosen by the OS. */
export function serveJwks(jwks: JSONWebKeySet): JwksServer {
  let current = jwks;
  let fetches = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => {
      fetches++;
      return Response.json(current);
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}/auth/v1/.well-known/jwks.json`;
  return {
    url,
    get fetches() {
      return fetches;
    },
    setJwks(next: JSONWebKeySet) {
      current = next;
    },
    async close() {
      await server.shutdown();
    },
  };
}
