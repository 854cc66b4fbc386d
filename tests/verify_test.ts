import assert from "node:assert/strict";
import { CompactSign, exportJWK, SignJWT } from "jose";
import { ServanaError } from "../src/errors.ts";
import {
  issuerFor,
  jwksUrlFor,
  TokenVerifier,
  type TokenVerifierOptions,
  verifierOptionsFor,
} from "../src/auth/verify.ts";
import { loadConfig } from "../src/config.ts";
import { DEV_CUSTOMER_SECRET, DEV_JWT_SECRET, mintToken } from "../src/auth/dev.ts";
import {
  b64url,
  generateSigningKey,
  jwksOf,
  publicKeyPemBytes,
  serveJwks,
  signHs256,
  signToken,
  tamperSignature,
  unsecuredToken,
} from "./support/tokens.ts";

const SECRET = "test-hs256-secret-with-at-least-32-characters!";
const ISS = "https://project.supabase.example/auth/v1";
const SUB = "6f1c2b9e-0000-4000-8000-000000000001";

/** Asserts that `promise` rejects with AUTH_REQUIRED and the given reason. */
async function assertRefused(promise: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ServanaError, `not a ServanaError: ${error}`);
    assert.equal(error.code, "AUTH_REQUIRED");
    assert.deepEqual(error.details, { reason });
    return true;
  });
}

Deno.test("TokenVerifier: hostile and valid tokens", async (t) => {
  const rsa = await generateSigningKey("RS256", "rsa-1");
  const ec = await generateSigningKey("ES256", "ec-1");
  const ed = await generateSigningKey("EdDSA", "ed-1");
  const rsa2 = await generateSigningKey("RS256", "rsa-2");
  const rogueRsa = await generateSigningKey("RS256", "rsa-1"); // same kid, not published
  const server = serveJwks(jwksOf(rsa, rsa2, ec, ed));
  try {
    const base: TokenVerifierOptions = { issuer: ISS };
    const both = new TokenVerifier({ ...base, secret: SECRET, jwksUrl: server.url });
    const jwksOnly = new TokenVerifier({ ...base, jwksUrl: server.url });
    const secretOnly = new TokenVerifier({ ...base, secret: SECRET });
    const good = { sub: SUB };
    const opts = { issuer: ISS };
    const pem = await publicKeyPemBytes(rsa);
    const jwkBytes = new TextEncoder().encode(JSON.stringify(await exportJWK(rsa.publicKey)));
    const notJsonPayload = await new CompactSign(new TextEncoder().encode("not json"))
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(SECRET));
    const now = Math.floor(Date.now() / 1000);

    const hostile: Array<{
      name: string;
      token: () => Promise<string> | string;
      verifier: TokenVerifier;
      reason: string;
    }> = [
      { name: "empty token", token: () => "", verifier: both, reason: "missing_token" },
      { name: "one part", token: () => "abc", verifier: both, reason: "malformed" },
      { name: "not base64 JSON", token: () => "a.b.c", verifier: both, reason: "malformed" },
      {
        name: "header without alg",
        token: () => `${b64url('{"typ":"JWT"}')}.${b64url('{"sub":"x"}')}.c2ln`,
        verifier: both,
        reason: "malformed",
      },
      {
        name: "five parts (JWE shape)",
        token: () => "a.b.c.d.e",
        verifier: both,
        reason: "malformed",
      },
      {
        name: "payload is not JSON",
        token: () => notJsonPayload,
        verifier: both,
        reason: "malformed",
      },
      {
        name: "oversized",
        token: () => `${"a".repeat(20_000)}.b.c`,
        verifier: both,
        reason: "malformed",
      },
      {
        name: "alg none (secret and JWKS configured)",
        token: () => unsecuredToken(good, opts),
        verifier: both,
        reason: "alg_not_allowed",
      },
      {
        name: "alg none with a signature part",
        token: () => unsecuredToken(good, opts) + "c2ln",
        verifier: both,
        reason: "alg_not_allowed",
      },
      {
        name: "HS256 signed with the JWKS public key PEM (no secret configured)",
        token: () => signHs256(pem, good, { ...opts, kid: "rsa-1" }),
        verifier: jwksOnly,
        reason: "alg_not_allowed",
      },
      {
        name: "HS256 signed with the JWKS public key JWK bytes (no secret configured)",
        token: () => signHs256(jwkBytes, good, { ...opts, kid: "rsa-1" }),
        verifier: jwksOnly,
        reason: "alg_not_allowed",
      },
      {
        name: "HS256 signed with the JWKS public key PEM (secret configured)",
        token: () => signHs256(pem, good, { ...opts, kid: "rsa-1" }),
        verifier: both,
        reason: "bad_signature",
      },
      {
        name: "RS256 when only a secret is configured",
        token: () => signToken(rsa, good, opts),
        verifier: secretOnly,
        reason: "alg_not_allowed",
      },
      {
        name: "HS512 with the right secret",
        token: async () => {
          return await new SignJWT(good).setProtectedHeader({ alg: "HS512" }).setIssuer(ISS)
            .setAudience("authenticated").setExpirationTime("1h")
            .sign(new TextEncoder().encode(SECRET));
        },
        verifier: both,
        reason: "alg_not_allowed",
      },
      {
        name: "HS256 wrong secret",
        token: () => signHs256("another-secret-another-secret-another!!", good, opts),
        verifier: both,
        reason: "bad_signature",
      },
      {
        name: "HS256 tampered signature",
        token: async () => tamperSignature(await signHs256(SECRET, good, opts)),
        verifier: both,
        reason: "bad_signature",
      },
      {
        name: "RS256 tampered signature",
        token: async () => tamperSignature(await signToken(rsa, good, opts)),
        verifier: both,
        reason: "bad_signature",
      },
      {
        name: "RS256 signed by an unpublished key with a published kid",
        token: () => signToken(rogueRsa, good, opts),
        verifier: both,
        reason: "bad_signature",
      },
      {
        name: "ES256 tampered payload",
        token: async () => {
          const [h, , s] = (await signToken(ec, good, opts)).split(".");
          return `${h}.${b64url(JSON.stringify({ ...good, sub: "admin", iss: ISS }))}.${s}`;
        },
        verifier: both,
        reason: "bad_signature",
      },
      {
        name: "expired (beyond the tolerance)",
        token: () => signHs256(SECRET, good, { ...opts, now: Date.now() - 3_700_000 }),
        verifier: both,
        reason: "expired",
      },
      {
        name: "expired RS256",
        token: () => signToken(rsa, good, { ...opts, expiresInSec: -60 }),
        verifier: both,
        reason: "expired",
      },
      {
        name: "nbf in the future",
        token: () => signToken(ec, good, { ...opts, notBeforeInSec: 120 }),
        verifier: both,
        reason: "not_yet_valid",
      },
      {
        name: "wrong issuer",
        token: () => signHs256(SECRET, good, { issuer: "https://evil.example/auth/v1" }),
        verifier: both,
        reason: "wrong_issuer",
      },
      {
        name: "no issuer",
        token: () => signHs256(SECRET, good, {}),
        verifier: both,
        reason: "wrong_issuer",
      },
      {
        name: "wrong audience",
        token: () => signToken(rsa, good, { ...opts, audience: "anon" }),
        verifier: both,
        reason: "wrong_audience",
      },
      {
        name: "no audience",
        token: () => signHs256(SECRET, good, { ...opts, audience: null }),
        verifier: both,
        reason: "wrong_audience",
      },
      {
        name: "missing sub",
        token: () => signHs256(SECRET, {}, opts),
        verifier: both,
        reason: "missing_sub",
      },
      {
        name: "empty sub",
        token: () => signToken(ec, { sub: "" }, opts),
        verifier: both,
        reason: "missing_sub",
      },
      {
        name: "missing exp",
        token: () => signHs256(SECRET, good, { ...opts, expiresInSec: null }),
        verifier: both,
        reason: "missing_exp",
      },
      {
        name: "unknown kid",
        token: () => signToken(rsa, good, { ...opts, kid: "nobody" }),
        verifier: both,
        reason: "no_key",
      },
      {
        name: "ES256 header with the kid of an RSA key",
        token: () => signToken(ec, good, { ...opts, kid: "rsa-1" }),
        verifier: both,
        reason: "no_key",
      },
    ];

    for (const row of hostile) {
      await t.step(`refused: ${row.name} -> ${row.reason}`, async () => {
        await assertRefused(row.verifier.verify(await row.token()), row.reason);
      });
    }

    await t.step("accepted: HS256 with the secret", async () => {
      const token = await signHs256(SECRET, { sub: SUB, email: "a@example.com" }, opts);
      const claims = await both.verify(token);
      assert.equal(claims.sub, SUB);
      assert.equal(claims.email, "a@example.com");
      assert.equal(claims.role, "authenticated");
      assert.equal(typeof claims.exp, "number");
      assert.equal(typeof claims.iat, "number");
      assert.equal(claims.raw.iss, ISS);
    });

    for (const key of [ec, rsa, ed]) {
      await t.step(`accepted: ${key.alg} with a JWKS key`, async () => {
        const claims = await jwksOnly.verify(await signToken(key, good, opts));
        assert.equal(claims.sub, SUB);
      });
    }

    await t.step("accepted: RS256 without kid (each matching key tried)", async () => {
      for (const key of [rsa, rsa2]) {
        const withoutKid = await signToken(key, good, { ...opts, kid: null });
        assert.equal((await both.verify(withoutKid)).sub, SUB);
      }
    });

    await t.step("refused: RS256 without kid, no published key matches", async () => {
      const rogue = await signToken(rogueRsa, good, { ...opts, kid: null });
      await assertRefused(both.verify(rogue), "bad_signature");
      const expired = await signToken(rsa2, good, { ...opts, kid: null, expiresInSec: -60 });
      await assertRefused(both.verify(expired), "expired");
    });

    await t.step("accepted: expired 3 s ago, within the 10 s tolerance", async () => {
      const token = await signHs256(SECRET, good, {
        ...opts,
        now: (now - 3603) * 1000,
        expiresInSec: 3600,
      });
      assert.equal((await both.verify(token)).sub, SUB);
    });

    await t.step("accepted: audience configured otherwise", async () => {
      const custom = new TokenVerifier({ secret: SECRET, audience: "servana" });
      const token = await signHs256(SECRET, good, { audience: "servana" });
      assert.equal((await custom.verify(token)).sub, SUB);
      await assertRefused(custom.verify(await signHs256(SECRET, good, {})), "wrong_audience");
    });

    await t.step("accepted: a dev token minted by mintToken", async () => {
      const dev = new TokenVerifier({ secret: DEV_JWT_SECRET });
      const token = await mintToken({ authId: "agent-123" }, {
        secret: DEV_JWT_SECRET,
        email: "agent@example.com",
      });
      const claims = await dev.verify(token);
      assert.equal(claims.sub, "agent-123");
      assert.equal(claims.email, "agent@example.com");
      assert.equal(claims.exp! - claims.iat!, 3600);
    });

    await t.step("refused: a dev token against a real secret", async () => {
      const token = await mintToken({ authId: "agent-123" }, { secret: DEV_JWT_SECRET });
      await assertRefused(secretOnly.verify(token), "bad_signature");
    });
  } finally {
    await server.close();
  }
});

Deno.test("TokenVerifier: JWKS fetching, rotation and cooldown", async (t) => {
  const k1 = await generateSigningKey("ES256", "k1");
  const k2 = await generateSigningKey("RS256", "k2");
  const server = serveJwks(jwksOf(k1));
  let clock = Date.now();
  const verifier = new TokenVerifier({
    jwksUrl: server.url,
    secret: SECRET,
    jwksCooldownMs: 30_000,
    now: () => clock,
  });
  try {
    await t.step("nothing is fetched before an asymmetric token arrives", async () => {
      assert.equal(server.fetches, 0);
      await verifier.verify(await signHs256(SECRET, { sub: SUB }));
      assert.equal(server.fetches, 0);
    });

    await t.step("fetched once, then cached", async () => {
      for (let i = 0; i < 3; i++) await verifier.verify(await signToken(k1, { sub: SUB }));
      assert.equal(server.fetches, 1);
    });

    await t.step("a rotated-in kid triggers exactly one refetch", async () => {
      server.setJwks(jwksOf(k1, k2));
      clock += 31_000;
      const token = await signToken(k2, { sub: SUB });
      assert.equal((await verifier.verify(token)).sub, SUB);
      assert.equal(server.fetches, 2);
      await verifier.verify(token);
      await verifier.verify(await signToken(k1, { sub: SUB }));
      assert.equal(server.fetches, 2);
    });

    await t.step("unknown kids within the cooldown cause no refetch storm", async () => {
      clock += 1_000;
      const tokens = await Promise.all(
        Array.from({ length: 25 }, (_, i) => signToken(k1, { sub: SUB }, { kid: `ghost-${i}` })),
      );
      for (const token of tokens.slice(0, 5)) await assertRefused(verifier.verify(token), "no_key");
      await Promise.all(
        tokens.slice(5).map((token) => assertRefused(verifier.verify(token), "no_key")),
      );
      assert.equal(server.fetches, 2);
    });

    await t.step("after the cooldown an unknown kid may refetch once more", async () => {
      clock += 30_000;
      const ghosts = await Promise.all(
        Array.from({ length: 10 }, (_, i) => signToken(k1, { sub: SUB }, { kid: `late-${i}` })),
      );
      await Promise.all(ghosts.map((token) => assertRefused(verifier.verify(token), "no_key")));
      assert.equal(server.fetches, 3);
    });

    await t.step("a removed key is refused after the cache grows old", async () => {
      server.setJwks(jwksOf(k2));
      clock += 600_001;
      await assertRefused(verifier.verify(await signToken(k1, { sub: SUB })), "no_key");
      assert.equal(server.fetches, 4);
    });
  } finally {
    await server.close();
  }
});

Deno.test("TokenVerifier: concurrent first use shares one fetch", async () => {
  const key = await generateSigningKey("ES256", "c1");
  const server = serveJwks(jwksOf(key));
  try {
    const verifier = new TokenVerifier({ jwksUrl: server.url });
    const token = await signToken(key, { sub: SUB });
    const results = await Promise.all(Array.from({ length: 10 }, () => verifier.verify(token)));
    assert.equal(results.length, 10);
    assert.equal(server.fetches, 1);
  } finally {
    await server.close();
  }
});

Deno.test("TokenVerifier: JWKS failures", async (t) => {
  const key = await generateSigningKey("ES256", "f1");
  const token = await signToken(key, { sub: SUB });
  const url = "http://127.0.0.1:9/jwks.json";

  await t.step("network error -> jwks_unavailable, retried only after the cooldown", async () => {
    let calls = 0;
    let clock = 0;
    const verifier = new TokenVerifier({
      jwksUrl: url,
      now: () => clock,
      fetch: () => {
        calls++;
        return Promise.reject(new TypeError("connection refused"));
      },
    });
    await assertRefused(verifier.verify(token), "jwks_unavailable");
    await assertRefused(verifier.verify(token), "jwks_unavailable");
    assert.equal(calls, 1);
    clock += 30_000;
    await assertRefused(verifier.verify(token), "jwks_unavailable");
    assert.equal(calls, 2);
  });

  for (
    const [name, response] of [
      ["HTTP 500", () => new Response("oops", { status: 500 })],
      ["not JSON", () => new Response("<html>")],
      ["not a JWKS", () => Response.json({ hello: "world" })],
    ] as const
  ) {
    await t.step(`${name} -> jwks_unavailable`, async () => {
      const verifier = new TokenVerifier({
        jwksUrl: url,
        fetch: () => Promise.resolve(response()),
      });
      await assertRefused(verifier.verify(token), "jwks_unavailable");
    });
  }

  await t.step("a hanging fetch is aborted by the timeout", async () => {
    const verifier = new TokenVerifier({
      jwksUrl: url,
      jwksTimeoutMs: 20,
      fetch: (_input, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted")));
        }),
    });
    await assertRefused(verifier.verify(token), "jwks_unavailable");
  });

  await t.step("a failed refetch keeps the cached keys", async () => {
    let clock = 0;
    let fail = false;
    const verifier = new TokenVerifier({
      jwksUrl: url,
      now: () => clock,
      fetch: () =>
        Promise.resolve(fail ? new Response("down", { status: 503 }) : Response.json(jwksOf(key))),
    });
    assert.equal((await verifier.verify(token)).sub, SUB);
    fail = true;
    clock += 700_000; // cache is old: a refetch is attempted and fails
    assert.equal((await verifier.verify(token)).sub, SUB);
  });
});

Deno.test("TokenVerifier: construction", () => {
  assert.throws(() => new TokenVerifier({}), TypeError);
  assert.throws(() => new TokenVerifier({ secret: "" }), TypeError);
  assert.throws(() => new TokenVerifier({ jwksUrl: "not a url" }), TypeError);
});

Deno.test("jwksUrlFor and issuerFor", () => {
  assert.equal(
    jwksUrlFor("https://abc.supabase.co/"),
    "https://abc.supabase.co/auth/v1/.well-known/jwks.json",
  );
  assert.equal(issuerFor("https://abc.supabase.co"), "https://abc.supabase.co/auth/v1");
});

Deno.test("verifierOptionsFor", async (t) => {
  const ORIGINS = { SOCKET_CORS_ORIGINS: "https://app.servana.example" };

  await t.step("development without key sources uses both dev secrets", () => {
    const settings = verifierOptionsFor(loadConfig({ APP_ENV: "development" }));
    assert.deepEqual(settings, {
      options: { secret: DEV_JWT_SECRET, issuer: undefined, audience: "authenticated" },
      customerSecret: DEV_CUSTOMER_SECRET,
      usingDevSecret: true,
      usingDevCustomerSecret: true,
    });
    assert.notEqual(DEV_CUSTOMER_SECRET, DEV_JWT_SECRET);
  });

  await t.step("development with a Supabase secret still uses the dev customers' secret", () => {
    const settings = verifierOptionsFor(loadConfig({
      APP_ENV: "development",
      SUPABASE_JWT_SECRET: "s3cret",
    }));
    assert.equal(settings.usingDevSecret, false);
    assert.equal(settings.options.secret, "s3cret");
    assert.equal(settings.customerSecret, DEV_CUSTOMER_SECRET);
    assert.equal(settings.usingDevCustomerSecret, true);
  });

  await t.step("development with JWT_ACCESS_SECRET uses it", () => {
    const settings = verifierOptionsFor(loadConfig({
      APP_ENV: "development",
      JWT_ACCESS_SECRET: "customers",
    }));
    assert.equal(settings.customerSecret, "customers");
    assert.equal(settings.usingDevCustomerSecret, false);
    assert.equal(settings.usingDevSecret, true);
  });

  await t.step("production without key sources refuses to start", () => {
    assert.throws(
      () => loadConfig({ APP_ENV: "production", ...ORIGINS, SUPABASE_JWT_SECRET: "  " }),
      /SUPABASE_JWT_SECRET/,
    );
    const development = loadConfig({ APP_ENV: "development" });
    assert.throws(
      () => verifierOptionsFor({ ...development, appEnv: "production" }),
      /SUPABASE_JWT_SECRET/,
    );
  });

  await t.step(
    "production without JWT_ACCESS_SECRET refuses customer tokens (no dev secret)",
    () => {
      const settings = verifierOptionsFor(loadConfig({
        APP_ENV: "production",
        ...ORIGINS,
        SUPABASE_JWT_SECRET: "s3cret",
      }));
      assert.equal(settings.customerSecret, null);
      assert.equal(settings.usingDevCustomerSecret, false);
      assert.equal(settings.usingDevSecret, false);
    },
  );

  await t.step("SUPABASE_URL derives JWKS and issuer", () => {
    const settings = verifierOptionsFor(loadConfig({
      APP_ENV: "production",
      ...ORIGINS,
      SUPABASE_URL: "https://abc.supabase.co",
      JWT_ACCESS_SECRET: "customers",
    }));
    assert.deepEqual(settings, {
      options: {
        secret: undefined,
        jwksUrl: "https://abc.supabase.co/auth/v1/.well-known/jwks.json",
        issuer: "https://abc.supabase.co/auth/v1",
        audience: "authenticated",
      },
      customerSecret: "customers",
      usingDevSecret: false,
      usingDevCustomerSecret: false,
    });
  });

  await t.step("explicit variables win", () => {
    const { options } = verifierOptionsFor(loadConfig({
      ...ORIGINS,
      SUPABASE_URL: "https://abc.supabase.co",
      SUPABASE_JWT_SECRET: "s3cret",
      SUPABASE_JWKS_URL: "https://keys.example/jwks.json",
      JWT_ISSUER: "https://issuer.example",
      JWT_AUDIENCE: "servana",
    }));
    assert.deepEqual(options, {
      secret: "s3cret",
      jwksUrl: "https://keys.example/jwks.json",
      issuer: "https://issuer.example",
      audience: "servana",
    });
  });
});
