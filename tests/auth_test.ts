import assert from "node:assert/strict";
import { ServanaError } from "../src/errors.ts";
import type { User } from "../src/store/mod.ts";
import {
  Authenticator,
  type AuthenticatorOptions,
  FailLimiter,
  type Identity,
  TokenVerifier,
} from "../src/auth/mod.ts";
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
import { captureLog } from "./support/log_capture.ts";

const SECRET = "auth-test-secret-0123456789-0123456789";
const ISS = "http://127.0.0.1:54321/auth/v1";
const ORIGIN = "http://localhost:5173";
const ADDRESS = "198.51.100.20";
const UA = "Mozilla/5.0 (test)";

const AGENT: User = {
  id: 123,
  authId: "agent-123",
  role: "agent",
  departments: [1],
  firstName: "John",
  lastName: "Doe",
};
const CLIENT: User = {
  id: 789,
  authId: "client-789",
  role: "client",
  departments: [],
  firstName: "Ana",
  lastName: "Lee",
};

/** A TokenVerifier that counts verify calls. */
class CountingVerifier extends TokenVerifier {
  calls = 0;
  override verify(token: string) {
    this.calls++;
    return super.verify(token);
  }
}

interface Harness {
  auth: Authenticator;
  verifier: CountingVerifier;
  users: Map<string, User>;
}

function harness(
  jwksUrl: string,
  overrides: Partial<AuthenticatorOptions> = {},
): Harness {
  const verifier = new CountingVerifier({ secret: SECRET, jwksUrl, issuer: ISS });
  const users = new Map<string, User>([[AGENT.authId, AGENT], [CLIENT.authId, CLIENT]]);
  const auth = new Authenticator({
    verifier,
    findUser: (authId) => Promise.resolve(users.get(authId) ?? null),
    cookieNames: ["access_token"],
    allowedOrigins: [ORIGIN, "https://app.servana.example"],
    ...overrides,
  });
  return { auth, verifier, users };
}

function handshake(
  init: Record<string, string>,
  auth?: unknown,
  address = ADDRESS,
): { headers: Headers; auth?: unknown; address: string } {
  return { headers: new Headers({ "user-agent": UA, ...init }), auth, address };
}

async function refusal(promise: Promise<unknown>): Promise<ServanaError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ServanaError, `not a ServanaError: ${error}`);
    return error;
  }
  assert.fail("expected a refusal");
}

function reasonOf(error: ServanaError): unknown {
  return (error.details as { reason?: unknown } | undefined)?.reason;
}

Deno.test("Authenticator: each token source", async (t) => {
  const key = await generateSigningKey("ES256", "k1");
  const server = serveJwks(jwksOf(key));
  const log = captureLog();
  try {
    const { auth } = harness(server.url);
    const token = await signHs256(SECRET, { sub: AGENT.authId }, { issuer: ISS });
    const esToken = await signToken(key, { sub: CLIENT.authId }, { issuer: ISS });
    const session = JSON.stringify({ access_token: esToken, refresh_token: "r" });
    const base64Value = "base64-" + b64url(session);

    const cases: Array<[string, ReturnType<typeof handshake>, User, string]> = [
      ["handshake auth.token", handshake({}, { token }), AGENT, "auth"],
      [
        "Authorization: Bearer",
        handshake({ authorization: `Bearer ${esToken}` }),
        CLIENT,
        "bearer",
      ],
      [
        "access_token cookie",
        handshake({ cookie: `access_token=${token}`, origin: ORIGIN }),
        AGENT,
        "cookie",
      ],
      [
        "@supabase/ssr cookie, raw JSON",
        handshake({
          cookie: `sb-127-auth-token=${encodeURIComponent(session)}`,
          origin: ORIGIN,
        }),
        CLIENT,
        "cookie",
      ],
      [
        "@supabase/ssr cookie, base64 and chunked",
        handshake({
          cookie: `sb-127-auth-token.0=${base64Value.slice(0, 100)}; sb-127-auth-token.1=${
            base64Value.slice(100)
          }`,
          origin: ORIGIN,
        }),
        CLIENT,
        "cookie",
      ],
    ];
    for (const [name, input, user, source] of cases) {
      await t.step(name, async () => {
        const identity = await auth.authenticate(input);
        assert.deepEqual(identity.user, user);
        assert.equal(identity.source, source);
        assert.equal(identity.claims.sub, user.authId);
        assert.equal(identity.expiresAt, identity.claims.exp! * 1000);
      });
    }

    await t.step("success lines carry address, user agent, source, userId; never a token", () => {
      const successes = log.lines().filter((line) => line.event === "auth_success");
      assert.equal(successes.length, cases.length);
      assert.deepEqual(
        successes.map((line) => [line.address, line.userAgent, line.source, line.userId]),
        cases.map(([, , user, source]) => [ADDRESS, UA, source, user.id]),
      );
      for (const line of log.raw) {
        assert.ok(!line.includes(token.split(".")[2]), "HS256 token leaked into the log");
        assert.ok(!line.includes(esToken.split(".")[2]), "ES256 token leaked into the log");
      }
    });
  } finally {
    log.restore();
    await server.close();
  }
});

Deno.test("Authenticator: origin check applies to cookies only", async (t) => {
  const server = serveJwks({ keys: [] });
  const log = captureLog();
  try {
    const { auth } = harness(server.url);
    const token = await signHs256(SECRET, { sub: AGENT.authId }, { issuer: ISS });
    const cookie = `access_token=${token}`;

    for (
      const [name, headers] of [
        ["foreign origin", { cookie, origin: "https://evil.example" }],
        ["no origin, cross-site fetch metadata", { cookie, "sec-fetch-site": "cross-site" }],
        ["no origin at all", { cookie }],
        ["origin null", { cookie, origin: "null" }],
        ["allowed host on another port", { cookie, origin: "http://localhost:5174" }],
      ] as const
    ) {
      await t.step(`cookie refused: ${name}`, async () => {
        const error = await refusal(auth.authenticate(handshake(headers)));
        assert.equal(error.code, "ACCESS_DENIED");
        assert.equal(reasonOf(error), "origin_not_allowed");
      });
    }

    await t.step("cookie accepted: listed origin (case and trailing slash ignored)", async () => {
      for (const origin of [ORIGIN, "HTTP://LOCALHOST:5173/", "https://app.servana.example"]) {
        const identity = await auth.authenticate(handshake({ cookie, origin }));
        assert.equal(identity.user.id, AGENT.id);
      }
    });

    await t.step("cookie accepted: same-origin request without Origin", async () => {
      const identity = await auth.authenticate(
        handshake({ cookie, "sec-fetch-site": "same-origin" }),
      );
      assert.equal(identity.source, "cookie");
    });

    await t.step("token and Bearer handshakes are not tied to an origin", async () => {
      const foreign = { origin: "https://evil.example" };
      assert.equal((await auth.authenticate(handshake(foreign, { token }))).source, "auth");
      const bearer = { ...foreign, authorization: `Bearer ${token}` };
      assert.equal((await auth.authenticate(handshake(bearer))).source, "bearer");
    });

    await t.step("a wildcard origin list does not admit cookie handshakes", async () => {
      const { auth: wildcard } = harness(server.url, { allowedOrigins: ["*"] });
      const error = await refusal(wildcard.authenticate(handshake({ cookie, origin: ORIGIN })));
      assert.equal(error.code, "ACCESS_DENIED");
    });
  } finally {
    log.restore();
    await server.close();
  }
});

Deno.test("Authenticator: hostile handshakes are refused with the right code, nothing leaked", async (t) => {
  const rsa = await generateSigningKey("RS256", "rsa-1");
  const server = serveJwks(jwksOf(rsa));
  const log = captureLog();
  try {
    const jwksOnly = new TokenVerifier({ jwksUrl: server.url, issuer: ISS });
    const { auth } = harness(server.url);
    const authJwksOnly = harness(server.url, { verifier: jwksOnly }).auth;
    const good = { sub: AGENT.authId };
    const opts = { issuer: ISS };
    const pem = await publicKeyPemBytes(rsa);

    const rows: Array<{
      name: string;
      token?: () => Promise<string> | string;
      via?: Authenticator;
      headers?: Record<string, string>;
      code: string;
      reason: string;
    }> = [
      { name: "no token", code: "AUTH_REQUIRED", reason: "missing_token" },
      { name: "malformed token", token: () => "x.y.z", code: "AUTH_REQUIRED", reason: "malformed" },
      {
        name: "alg none",
        token: () => unsecuredToken(good, opts),
        code: "AUTH_REQUIRED",
        reason: "alg_not_allowed",
      },
      {
        name: "HS256 signed with the JWKS public key",
        token: () => signHs256(pem, good, { ...opts, kid: "rsa-1" }),
        via: authJwksOnly,
        code: "AUTH_REQUIRED",
        reason: "alg_not_allowed",
      },
      {
        name: "wrong signature",
        token: async () => tamperSignature(await signToken(rsa, good, opts)),
        code: "AUTH_REQUIRED",
        reason: "bad_signature",
      },
      {
        name: "expired",
        token: () => signHs256(SECRET, good, { ...opts, expiresInSec: -120 }),
        code: "AUTH_REQUIRED",
        reason: "expired",
      },
      {
        name: "not yet valid",
        token: () => signHs256(SECRET, good, { ...opts, notBeforeInSec: 300 }),
        code: "AUTH_REQUIRED",
        reason: "not_yet_valid",
      },
      {
        name: "wrong issuer",
        token: () => signHs256(SECRET, good, { issuer: "https://evil.example/auth/v1" }),
        code: "AUTH_REQUIRED",
        reason: "wrong_issuer",
      },
      {
        name: "wrong audience",
        token: () => signHs256(SECRET, good, { ...opts, audience: "anon" }),
        code: "AUTH_REQUIRED",
        reason: "wrong_audience",
      },
      {
        name: "unknown sub",
        token: () => signHs256(SECRET, { sub: "nobody" }, opts),
        code: "USER_NOT_FOUND",
        reason: "user_not_found",
      },
    ];

    const tokens: string[] = [];
    const payloads: string[] = [];
    for (const row of rows) {
      await t.step(`${row.name} -> ${row.code} (${row.reason})`, async () => {
        const token = row.token === undefined ? undefined : await row.token();
        if (token !== undefined) tokens.push(token);
        const before = log.raw.length;
        const error = await refusal(
          (row.via ?? auth).authenticate(
            handshake(row.headers ?? {}, token === undefined ? undefined : { token }),
          ),
        );
        assert.equal(error.code, row.code);
        assert.equal(reasonOf(error), row.reason);
        payloads.push(JSON.stringify(error.toPayload()));
        assert.deepEqual(Object.keys(error.toPayload()).sort(), ["code", "details", "message"]);
        const lines = log.lines().slice(before);
        assert.equal(lines.length, 1);
        assert.equal(lines[0].event, "auth_failure");
        assert.equal(lines[0].reason, row.reason);
        assert.equal(lines[0].code, row.code);
        assert.equal(lines[0].address, ADDRESS);
        assert.equal(lines[0].userAgent, UA);
      });
    }

    await t.step("no log line and no error payload contains a token", () => {
      assert.ok(tokens.length >= 9);
      for (const token of tokens) {
        // every part long enough to be recognisable (the 1-char "x.y.z" parts are not)
        const parts = token.split(".").filter((part) => part.length >= 16);
        for (const text of [...log.raw, ...payloads]) {
          for (const part of parts) assert.ok(!text.includes(part), `token leaked: ${text}`);
        }
      }
    });
  } finally {
    log.restore();
    await server.close();
  }
});

Deno.test("Authenticator: fail limiter", async (t) => {
  const server = serveJwks({ keys: [] });
  const log = captureLog();
  try {
    const failLimiter = new FailLimiter({ limit: 3 });
    const { auth, verifier } = harness(server.url, { failLimiter });
    const valid = await signHs256(SECRET, { sub: AGENT.authId }, { issuer: ISS });
    const bad = tamperSignature(valid);

    await t.step("the limit-th failure blocks the address", async () => {
      for (let i = 0; i < 3; i++) {
        const error = await refusal(auth.authenticate(handshake({}, { token: bad })));
        assert.equal(reasonOf(error), "bad_signature");
      }
      assert.equal(verifier.calls, 3);
      assert.ok(log.lines().some((line) => line.event === "auth_blocked"));
    });

    await t.step("a blocked address is refused without verifying anything", async () => {
      const error = await refusal(auth.authenticate(handshake({}, { token: valid })));
      assert.equal(error.code, "AUTH_REQUIRED");
      assert.equal(reasonOf(error), "too_many_failures");
      assert.equal(verifier.calls, 3, "verify was not called");
      const last = log.lines().at(-1)!;
      assert.equal(last.event, "auth_failure");
      assert.equal(last.reason, "too_many_failures");
    });

    await t.step("other addresses are unaffected", async () => {
      const identity = await auth.authenticate(handshake({}, { token: valid }, "192.0.2.99"));
      assert.equal(identity.user.id, AGENT.id);
    });

    await t.step("store failures are SERVER_ERROR and do not count", async () => {
      const limiter = new FailLimiter({ limit: 1 });
      const broken = harness(server.url, {
        failLimiter: limiter,
        findUser: () => Promise.reject(new Error("database down: password=hunter2")),
      }).auth;
      const error = await refusal(broken.authenticate(handshake({}, { token: valid })));
      assert.equal(error.code, "SERVER_ERROR");
      assert.equal(limiter.isBlocked(ADDRESS), false);
      assert.ok(!error.message.includes("hunter2"));
      assert.ok(!JSON.stringify(error.toPayload()).includes("hunter2"));
    });
  } finally {
    log.restore();
    await server.close();
  }
});

Deno.test("Authenticator: refresh", async (t) => {
  const server = serveJwks({ keys: [] });
  const log = captureLog();
  try {
    const { auth, users } = harness(server.url);
    const first = await signHs256(SECRET, { sub: AGENT.authId }, { issuer: ISS, expiresInSec: 60 });
    const identity: Identity = await auth.authenticate(handshake({}, { token: first }));

    await t.step("same sub: a new identity with the new expiry", async () => {
      const next = await signHs256(SECRET, { sub: AGENT.authId }, {
        issuer: ISS,
        expiresInSec: 3600,
      });
      const refreshed = await auth.refresh(identity, next, { address: ADDRESS, userAgent: UA });
      assert.equal(refreshed.user.id, AGENT.id);
      assert.equal(refreshed.source, "auth");
      assert.ok(refreshed.expiresAt! > identity.expiresAt!);
      assert.equal(refreshed.expiresAt, refreshed.claims.exp! * 1000);
      const line = log.lines().at(-1)!;
      assert.equal(line.event, "token_refresh");
      assert.equal(line.userId, AGENT.id);
    });

    await t.step("another user's token: ACCESS_DENIED", async () => {
      const other = await signHs256(SECRET, { sub: CLIENT.authId }, { issuer: ISS });
      const error = await refusal(auth.refresh(identity, other));
      assert.equal(error.code, "ACCESS_DENIED");
      assert.equal(reasonOf(error), "sub_mismatch");
      assert.equal(log.lines().at(-1)!.event, "token_refresh_failure");
    });

    await t.step("an invalid token: AUTH_REQUIRED with the reason", async () => {
      const expired = await signHs256(SECRET, { sub: AGENT.authId }, {
        issuer: ISS,
        expiresInSec: -120,
      });
      const error = await refusal(auth.refresh(identity, expired));
      assert.equal(error.code, "AUTH_REQUIRED");
      assert.equal(reasonOf(error), "expired");
      const error2 = await refusal(auth.refresh(identity, 42 as unknown as string));
      assert.equal(reasonOf(error2), "missing_token");
    });

    await t.step("a user removed meanwhile: USER_NOT_FOUND", async () => {
      users.delete(AGENT.authId);
      const next = await signHs256(SECRET, { sub: AGENT.authId }, { issuer: ISS });
      const error = await refusal(auth.refresh(identity, next));
      assert.equal(error.code, "USER_NOT_FOUND");
    });

    await t.step("refresh log lines contain no token", () => {
      for (const line of log.raw) assert.ok(!line.includes(first.split(".")[2]));
    });
  } finally {
    log.restore();
    await server.close();
  }
});
