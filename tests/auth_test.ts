/**
 * The Authenticator: which token names which person. Agents' Supabase
 * tokens (HS256 or JWKS) name a `sys_user` by `supabase_user_id`; customers'
 * backend tokens (HS256 with `JWT_ACCESS_SECRET`) name a `client`; no token
 * passes as the other kind; every presented token is tried in order; only
 * the client's own faults count against its address.
 */

import assert from "node:assert/strict";
import { ServanaError } from "../src/errors.ts";
import type { Agent, Customer, Person, PersonRef } from "../src/store/mod.ts";
import {
  Authenticator,
  type AuthenticatorOptions,
  CustomerTokenVerifier,
  FailLimiter,
  type Identity,
  mintCustomerToken,
  TokenVerifier,
} from "../src/auth/mod.ts";
import {
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
import { supabaseSessionCookies } from "./support/supabase_cookies.ts";

const SECRET = "auth-test-secret-0123456789-0123456789";
const CUSTOMER_SECRET = "auth-test-customer-secret-9876543210";
const ISS = "http://127.0.0.1:54321/auth/v1";
const ORIGIN = "http://localhost:5173";
const ADDRESS = "198.51.100.20";
const UA = "Mozilla/5.0 (test)";

const AGENT: Agent = {
  kind: "agent",
  id: 123,
  role: "agent",
  authId: "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
  email: "john@example.com",
  roleName: "Agent",
  departments: [1],
  firstName: "John",
  lastName: "Doe",
  image: null,
  active: true,
};
const ADMIN: Agent = {
  ...AGENT,
  id: 1,
  role: "admin",
  roleName: "Admin",
  authId: "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d",
  firstName: "Ada",
  lastName: "Admin",
};
const CUSTOMER: Customer = {
  kind: "client",
  id: 789,
  role: "client",
  number: "9171234567",
  countryCode: "+63",
  firstName: "Carla",
  lastName: "Client",
  image: null,
  active: true,
};
/** Customer 1: same number as the admin agent 1, another person. */
const CUSTOMER_ONE: Customer = { ...CUSTOMER, id: 1, number: "9191234567", firstName: "Pia" };

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
  agents: Agent[];
  customers: Map<number, Customer>;
}

function harness(jwksUrl: string, overrides: Partial<AuthenticatorOptions> = {}): Harness {
  const verifier = new CountingVerifier({ secret: SECRET, jwksUrl, issuer: ISS });
  const agents: Agent[] = [AGENT, ADMIN];
  const customers = new Map<number, Customer>([[789, CUSTOMER], [1, CUSTOMER_ONE]]);
  const auth = new Authenticator({
    verifier,
    customerVerifier: new CustomerTokenVerifier({ secret: CUSTOMER_SECRET }),
    people: {
      findAgentsByAuthId: (authId) => Promise.resolve(agents.filter((a) => a.authId === authId)),
      getPerson: (ref: PersonRef) =>
        Promise.resolve<Person | null>(
          ref.kind === "client"
            ? customers.get(ref.id) ?? null
            : agents.find((a) => a.id === ref.id) ?? null,
        ),
    },
    cookieNames: ["access_token"],
    allowedOrigins: [ORIGIN, "https://app.servana.example"],
    ...overrides,
  });
  return { auth, verifier, agents, customers };
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

function agentToken(authId = AGENT.authId!, options: Parameters<typeof signHs256>[2] = {}) {
  return signHs256(SECRET, { sub: authId }, { issuer: ISS, ...options });
}

function customerToken(clientId = 789, options: { secret?: string; expiresInSec?: number } = {}) {
  return mintCustomerToken({ clientId, clientNumber: "9171234567" }, {
    secret: options.secret ?? CUSTOMER_SECRET,
    expiresInSec: options.expiresInSec,
  });
}

Deno.test("Authenticator: each token source and both kinds of tokens", async (t) => {
  const key = await generateSigningKey("ES256", "k1");
  const server = serveJwks(jwksOf(key));
  const log = captureLog();
  try {
    const { auth, verifier } = harness(server.url);
    const token = await agentToken();
    const esToken = await signToken(key, { sub: ADMIN.authId! }, { issuer: ISS });
    const mobile = await customerToken();
    const ssr = await supabaseSessionCookies({ supabaseUrl: ISS, accessToken: esToken });
    const chunked = await supabaseSessionCookies({
      supabaseUrl: "https://abcdefghij.supabase.co",
      accessToken: token,
      metadataBytes: 6000,
    });
    assert.ok(chunked.names.length >= 2, `@supabase/ssr chunked the cookie: ${chunked.names}`);

    const cases: Array<[string, ReturnType<typeof handshake>, Person, string]> = [
      ["handshake auth.token (agent)", handshake({}, { token }), AGENT, "auth"],
      [
        "mobile app: auth.token and Bearer with a customer token",
        handshake({ authorization: `Bearer ${mobile}` }, { token: mobile }),
        CUSTOMER,
        "auth",
      ],
      ["Bearer (customer)", handshake({ authorization: `Bearer ${mobile}` }), CUSTOMER, "bearer"],
      [
        "web app: Bearer with auth { userId, timestamp }",
        handshake({ authorization: `Bearer ${token}` }, { userId: 123, timestamp: Date.now() }),
        AGENT,
        "bearer",
      ],
      [
        "access_token cookie",
        handshake({ cookie: `access_token=${token}`, origin: ORIGIN }),
        AGENT,
        "cookie",
      ],
      [
        "@supabase/ssr cookie (ES256 token, written by @supabase/ssr)",
        handshake({ cookie: ssr.header, origin: ORIGIN }),
        ADMIN,
        "cookie",
      ],
      [
        "@supabase/ssr chunked cookies",
        handshake({ cookie: chunked.header, origin: ORIGIN }),
        AGENT,
        "cookie",
      ],
    ];
    for (const [name, input, person, source] of cases) {
      await t.step(name, async () => {
        const identity = await auth.authenticate(input);
        assert.deepEqual(identity.person, person);
        assert.equal(identity.source, source);
        assert.equal(identity.tokenKind, person.kind === "client" ? "customer" : "supabase");
        assert.ok(identity.expiresAt !== null && identity.expiresAt > Date.now());
      });
    }

    await t.step(
      "a customer token is never checked against the Supabase secret or JWKS",
      async () => {
        const before = verifier.calls;
        await auth.authenticate(handshake({}, { token: mobile }));
        const expired = await customerToken(789, { expiresInSec: -120 });
        const error = await refusal(auth.authenticate(handshake({}, { token: expired })));
        assert.equal(reasonOf(error), "expired");
        assert.equal(verifier.calls, before, "the Supabase verifier was not called");
      },
    );

    await t.step("success lines name kind, id, source and address; never a token", () => {
      const successes = log.lines().filter((line) => line.event === "auth_success");
      assert.equal(successes.length, cases.length + 1);
      assert.deepEqual(
        successes.slice(0, cases.length).map((
          l,
        ) => [l.address, l.userAgent, l.source, l.kind, l.userId]),
        cases.map(([, , person, source]) => [ADDRESS, UA, source, person.kind, person.id]),
      );
      for (const line of log.raw) {
        for (const secret of [token, esToken, mobile]) {
          assert.ok(!line.includes(secret.split(".")[2]), "a token leaked into the log");
        }
      }
    });
  } finally {
    log.restore();
    await server.close();
  }
});

Deno.test("Authenticator: the first token that verifies wins", async (t) => {
  const server = serveJwks({ keys: [] });
  const log = captureLog();
  try {
    const { auth } = harness(server.url);
    const valid = await agentToken();
    const stale = await agentToken(AGENT.authId!, { expiresInSec: -600 });

    await t.step("a stale cookie does not hide a valid Bearer token", async () => {
      const identity = await auth.authenticate(handshake({
        cookie: `access_token=${stale}`,
        authorization: `Bearer ${valid}`,
        origin: ORIGIN,
      }));
      assert.equal(identity.person.id, 123);
      assert.equal(identity.source, "bearer");
    });

    await t.step("a stale auth.token does not hide a valid cookie", async () => {
      const identity = await auth.authenticate(
        handshake({ cookie: `access_token=${valid}`, origin: ORIGIN }, { token: stale }),
      );
      assert.equal(identity.source, "cookie");
    });

    await t.step("when every token fails, the first token's refusal is reported", async () => {
      const error = await refusal(auth.authenticate(handshake(
        { authorization: `Bearer ${tamperSignature(valid)}` },
        { token: stale },
      )));
      assert.equal(reasonOf(error), "expired");
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
    const token = await agentToken();
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
        assert.equal(identity.person.id, AGENT.id);
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
    const h = harness(server.url);
    h.agents.push({
      ...AGENT,
      id: 300,
      authId: "11111111-2222-4333-8444-555555555555",
      active: false,
    });
    h.agents.push({ ...AGENT, id: 301, authId: "22222222-3333-4444-8555-666666666666" });
    h.agents.push({ ...AGENT, id: 302, authId: "22222222-3333-4444-8555-666666666666" });
    h.customers.set(790, { ...CUSTOMER, id: 790, active: false });
    const { auth } = h;
    const authJwksOnly = harness(server.url, { verifier: jwksOnly }).auth;
    const good = { sub: AGENT.authId! };
    const opts = { issuer: ISS };
    const pem = await publicKeyPemBytes(rsa);
    const customerClaims = (claims: Record<string, unknown>) =>
      signHs256(CUSTOMER_SECRET, claims, { audience: null });

    const rows: Array<{
      name: string;
      token?: () => Promise<string> | string;
      via?: Authenticator;
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
        name: "alg none with a client_id",
        token: () => unsecuredToken({ sub: "x", client_id: 789, type: "client" }),
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
        token: () => signHs256(SECRET, { sub: "9a9a9a9a-0000-4000-8000-000000000000" }, opts),
        code: "USER_NOT_FOUND",
        reason: "user_not_found",
      },
      {
        name: "inactive agent",
        token: () => signHs256(SECRET, { sub: "11111111-2222-4333-8444-555555555555" }, opts),
        code: "ACCESS_DENIED",
        reason: "account_inactive",
      },
      {
        name: "two active agents with one login",
        token: () => signHs256(SECRET, { sub: "22222222-3333-4444-8555-666666666666" }, opts),
        code: "ACCESS_DENIED",
        reason: "ambiguous_account",
      },
      {
        name: "Supabase-signed token with a client_id is not a customer",
        token: () =>
          signHs256(SECRET, { sub: "ffffffff-0000-4000-8000-000000000000", client_id: 789 }, opts),
        code: "USER_NOT_FOUND",
        reason: "user_not_found",
      },
      {
        name: "customer token, wrong secret (then not a Supabase token either)",
        token: () => customerToken(789, { secret: "some-other-secret-entirely-00000" }),
        code: "AUTH_REQUIRED",
        reason: "bad_signature",
      },
      {
        name: "customer token without client_id",
        token: () => customerClaims({ client_number: "917", type: "client" }),
        code: "AUTH_REQUIRED",
        reason: "missing_client_id",
      },
      {
        name: "customer token without exp",
        token: () =>
          signHs256(CUSTOMER_SECRET, { client_id: 789 }, { audience: null, expiresInSec: null }),
        code: "AUTH_REQUIRED",
        reason: "missing_exp",
      },
      {
        name: "customer token, expired",
        token: () => customerToken(789, { expiresInSec: -120 }),
        code: "AUTH_REQUIRED",
        reason: "expired",
      },
      {
        name: "customer token of another type",
        token: () => customerClaims({ client_id: 789, type: "refresh" }),
        code: "AUTH_REQUIRED",
        reason: "wrong_token_type",
      },
      {
        name: "customer token, unknown client",
        token: () => customerToken(999),
        code: "USER_NOT_FOUND",
        reason: "user_not_found",
      },
      {
        name: "customer token, inactive client",
        token: () => customerToken(790),
        code: "ACCESS_DENIED",
        reason: "account_inactive",
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
            handshake({}, token === undefined ? undefined : { token }),
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
      assert.ok(tokens.length >= 19);
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

Deno.test("Authenticator: without JWT_ACCESS_SECRET customer tokens are refused", async () => {
  const server = serveJwks({ keys: [] });
  const log = captureLog();
  try {
    const { auth } = harness(server.url, { customerVerifier: null });
    const error = await refusal(auth.authenticate(handshake({}, { token: await customerToken() })));
    assert.equal(error.code, "AUTH_REQUIRED");
    assert.equal(
      (await auth.authenticate(handshake({}, { token: await agentToken() }))).person.id,
      123,
    );
  } finally {
    log.restore();
    await server.close();
  }
});

Deno.test("Authenticator: fail limiter", async (t) => {
  const log = captureLog();
  try {
    const unreachableJwks = "http://127.0.0.1:9/auth/v1/.well-known/jwks.json";
    const failLimiter = new FailLimiter({ limit: 3 });
    const { auth, verifier } = harness(unreachableJwks, { failLimiter });
    const valid = await agentToken();
    const bad = tamperSignature(valid);

    await t.step("the limit-th failure blocks the address", async () => {
      for (let i = 0; i < 3; i++) {
        const error = await refusal(auth.authenticate(handshake({}, { token: bad })));
        assert.equal(reasonOf(error), "bad_signature");
      }
      assert.equal(verifier.calls, 3);
      assert.ok(log.lines().some((line) => line.event === "auth_blocked"));
      assert.equal(failLimiter.isBlocked(ADDRESS), true);
    });

    await t.step("a blocked address is refused, but never a token that verifies", async () => {
      const error = await refusal(auth.authenticate(handshake({}, { token: bad })));
      assert.equal(error.code, "AUTH_REQUIRED");
      assert.equal(reasonOf(error), "too_many_failures");
      const identity = await auth.authenticate(handshake({}, { token: valid }));
      assert.equal(identity.person.id, AGENT.id);
      const mobile = await auth.authenticate(handshake({}, { token: await customerToken() }));
      assert.equal(mobile.person.kind, "client");
    });

    await t.step("other addresses are unaffected", async () => {
      const error = await refusal(auth.authenticate(handshake({}, { token: bad }, "192.0.2.99")));
      assert.equal(reasonOf(error), "bad_signature");
    });

    await t.step("server-side failures do not count: store down, JWKS unreachable", async () => {
      const limiter = new FailLimiter({ limit: 1 });
      const rsa = await generateSigningKey("RS256", "rsa-x");
      const jwksToken = await signToken(rsa, { sub: AGENT.authId! }, { issuer: ISS });
      const broken = harness(unreachableJwks, {
        failLimiter: limiter,
        people: {
          findAgentsByAuthId: () => Promise.reject(new Error("database down: password=hunter2")),
          getPerson: () => Promise.reject(new Error("database down")),
        },
      }).auth;
      const error = await refusal(broken.authenticate(handshake({}, { token: valid })));
      assert.equal(error.code, "SERVER_ERROR");
      assert.ok(!error.message.includes("hunter2"));
      assert.ok(!JSON.stringify(error.toPayload()).includes("hunter2"));
      const outage = await refusal(broken.authenticate(handshake({}, { token: jwksToken })));
      assert.equal(reasonOf(outage), "jwks_unavailable");
      assert.equal(limiter.isBlocked(ADDRESS), false);
    });

    await t.step("origin refusals and stale tokens do not count", async () => {
      const limiter = new FailLimiter({ limit: 1 });
      const { auth: strict } = harness(unreachableJwks, { failLimiter: limiter });
      await refusal(
        strict.authenticate(
          handshake({ cookie: `access_token=${valid}`, origin: "https://evil.example" }),
        ),
      );
      await refusal(
        strict.authenticate(
          handshake({}, { token: await agentToken(AGENT.authId!, { expiresInSec: -600 }) }),
        ),
      );
      assert.equal(limiter.isBlocked(ADDRESS), false);
      await refusal(strict.authenticate(handshake({}, { token: bad })));
      assert.equal(limiter.isBlocked(ADDRESS), true, "a forged token does");
    });
  } finally {
    log.restore();
  }
});

Deno.test("Authenticator: refresh", async (t) => {
  const server = serveJwks({ keys: [] });
  const log = captureLog();
  try {
    const { auth, agents } = harness(server.url);
    const first = await agentToken(AGENT.authId!, { expiresInSec: 60 });
    const identity: Identity = await auth.authenticate(handshake({}, { token: first }));

    await t.step("same person: a new identity with the new expiry", async () => {
      const next = await agentToken(AGENT.authId!, { expiresInSec: 3600 });
      const refreshed = await auth.refresh(identity, next, { address: ADDRESS, userAgent: UA });
      assert.equal(refreshed.person.id, AGENT.id);
      assert.equal(refreshed.source, "auth");
      assert.ok(refreshed.expiresAt! > identity.expiresAt!);
      const line = log.lines().at(-1)!;
      assert.equal(line.event, "token_refresh");
      assert.equal(line.userId, AGENT.id);
    });

    await t.step("the person is read again: a role change is picked up", async () => {
      agents[0] = { ...AGENT, role: "admin", roleName: "Admin", departments: [1, 2] };
      const refreshed = await auth.refresh(identity, await agentToken());
      assert.equal(refreshed.person.role, "admin");
      agents[0] = AGENT;
    });

    await t.step(
      "another person's token: ACCESS_DENIED, also a customer with the same id",
      async () => {
        const other = await agentToken(ADMIN.authId!);
        const error = await refusal(auth.refresh(identity, other));
        assert.equal(error.code, "ACCESS_DENIED");
        assert.equal(reasonOf(error), "person_mismatch");
        assert.equal(log.lines().at(-1)!.event, "token_refresh_failure");
        const adminIdentity = await auth.authenticate(handshake({}, { token: other }));
        const sameNumber = await refusal(auth.refresh(adminIdentity, await customerToken(1)));
        assert.equal(reasonOf(sameNumber), "person_mismatch", "customer 1 is not agent 1");
      },
    );

    await t.step("an invalid token: AUTH_REQUIRED with the reason", async () => {
      const expired = await agentToken(AGENT.authId!, { expiresInSec: -120 });
      const error = await refusal(auth.refresh(identity, expired));
      assert.equal(error.code, "AUTH_REQUIRED");
      assert.equal(reasonOf(error), "expired");
    });

    await t.step("a person removed meanwhile: USER_NOT_FOUND", async () => {
      agents.splice(0, 1);
      const error = await refusal(auth.refresh(identity, await agentToken()));
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
