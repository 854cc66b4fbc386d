/**
 * The identity layer end to end: the whole service (`startApp`) driven by the
 * official socket.io-client. Hostile handshakes are refused with the right
 * code and leak nothing; every token source, key type and role connects and
 * lands in its rooms; tokens expire, refresh, and repeated failures are
 * blocked; `POST /dev/login` exists only in development; the security log
 * never holds a token.
 */

import assert from "node:assert/strict";
import { decodeJwt } from "jose";
import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import { mintCustomerToken } from "../src/auth/mod.ts";
import { type TestClient, tokenFor } from "./support/clients.ts";
import { mobileAppSocket, webAppSocket } from "./support/app_clients.ts";
import { authIdOf, numberOf } from "./support/people.ts";
import { type RunningApp, startApp } from "./support/server.ts";
import { supabaseSessionCookies } from "./support/supabase_cookies.ts";
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

type ClientOptions = Partial<ManagerOptions & SocketOptions>;
type Transport = "polling" | "websocket";

const SECRET = "handshake-test-secret-0123456789-0123456789";
const OTHER_SECRET = "some-other-secret-0123456789-0123456789-xx";
const CUSTOMER_SECRET = "handshake-test-customer-secret-0123456789";
/** `supabase_user_id`s of the fixture's agents. */
const AGENT_123 = authIdOf(123);
const AGENT_124 = authIdOf(124);
const ADMIN_1 = authIdOf(1);
const NOBODY = "9a9a9a9a-0000-4000-8000-000000000999";
const ISS = "http://127.0.0.1:54321/auth/v1";
const ALLOWED_ORIGIN = "http://localhost:5173";
const FOREIGN_ORIGIN = "https://evil.example";
const FIXTURE = decodeURIComponent(new URL("../demo/fixture.json", import.meta.url).pathname);
const TRANSPORTS: Transport[] = ["polling", "websocket"];
const WAIT_MS = 8000;

const es256 = await generateSigningKey("ES256", "es-1");
const rs256 = await generateSigningKey("RS256", "rs-1");
/** Signs well but is not in the served JWKS. */
const stranger = await generateSigningKey("ES256", "es-stranger");

/** Rejects after `ms` unless `promise` settles first; always clears its timer. */
async function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface RefusedError extends Error {
  data?: unknown;
}

/** Outcome of one connection attempt; the socket is left open when it connected. */
type Attempt =
  | { connected: true; socket: Socket }
  | { connected: false; socket: Socket; error: RefusedError };

function attempt(url: string, options: ClientOptions): Promise<Attempt> {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: WAIT_MS, ...options });
  return within(
    new Promise<Attempt>((resolve) => {
      socket.once("connect", () => resolve({ connected: true, socket }));
      socket.once("connect_error", (error: RefusedError) => {
        socket.close();
        resolve({ connected: false, socket, error });
      });
    }),
    "connect or connect_error",
  ).catch((error) => {
    socket.close();
    throw error;
  });
}

/** Connects or fails the test with the refusal. */
async function connect(url: string, options: ClientOptions): Promise<Socket> {
  const result = await attempt(url, options);
  if (!result.connected) {
    assert.fail(`expected a connection, got connect_error ${JSON.stringify(result.error.data)}`);
  }
  return result.socket;
}

/** Expects a refused handshake and returns what the client saw. */
async function refused(url: string, options: ClientOptions): Promise<RefusedError> {
  const result = await attempt(url, options);
  if (result.connected) {
    result.socket.close();
    assert.fail("expected connect_error, but the socket connected");
  }
  return result.error;
}

/** The client saw `code` and nothing else: no token, no stack, no extra fields. */
function assertCleanRefusal(error: RefusedError, code: string, secrets: string[]): void {
  assert.equal(error.message, code);
  const data = error.data as Record<string, unknown>;
  assert.ok(typeof data === "object" && data !== null, "err.data is an object");
  assert.deepEqual(Object.keys(data).sort(), ["code", "message"]);
  assert.equal(data.code, code);
  assert.equal(typeof data.message, "string");
  assert.ok((data.message as string).length > 0);
  const seen = JSON.stringify({ message: error.message, data });
  assert.ok(!/\n\s+at /.test(String(data.message)), "stack trace in message");
  assert.ok(!seen.includes(".ts:"), "source location in message");
  for (const secret of secrets) {
    if (secret.length > 0) assert.ok(!seen.includes(secret), "secret material leaked to client");
  }
}

/** Parts of a token that must never appear anywhere (the whole token and its signature). */
function secretsOf(token: string | undefined): string[] {
  if (token === undefined) return [SECRET, OTHER_SECRET];
  const parts = token.split(".");
  const out = [token, SECRET, OTHER_SECRET];
  if (parts.length === 3 && parts[2].length > 8) out.push(parts[2]);
  return out;
}

/** The server-side rooms of a connected client's socket, its own id room excluded. */
function roomsOf(running: RunningApp, socket: Socket): string[] {
  assert.ok(socket.id, "client socket has an id");
  const serverSocket = running.app.io.of("/").sockets.get(socket.id);
  assert.ok(serverSocket, "server knows the socket");
  return [...serverSocket.rooms].filter((room) => room !== socket.id).sort();
}

/** Who the server thinks a client socket is: `agent:123`, `client:789`. */
function serverPerson(running: RunningApp, socket: Socket): string | undefined {
  const person = running.app.io.of("/").sockets.get(socket.id ?? "")?.data.person;
  return person === undefined ? undefined : `${person.kind}:${person.id}`;
}

/** A customer's token as the backend's OTP login issues it. */
function customerToken(
  clientId: number,
  options: { secret?: string; expiresInSec?: number } = {},
): Promise<string> {
  return mintCustomerToken(
    { clientId, clientNumber: clientId === 999 ? "000" : numberOf(clientId) },
    { secret: options.secret ?? CUSTOMER_SECRET, expiresInSec: options.expiresInSec },
  );
}

/** The `Cookie` header `@supabase/ssr` writes for a session with this access token. */
async function supabaseCookie(accessToken: string, metadataBytes?: number): Promise<string> {
  return (await supabaseSessionCookies({
    supabaseUrl: "https://abcdefgh.supabase.co",
    accessToken,
    metadataBytes,
  })).header;
}

function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { SEED_FILE: FIXTURE, JWT_ACCESS_SECRET: CUSTOMER_SECRET, ...extra };
}

interface HostileCase {
  name: string;
  /** Which server: secret + JWKS (default) or JWKS only. */
  server?: "both" | "jwksOnly";
  code: "AUTH_REQUIRED" | "ACCESS_DENIED" | "USER_NOT_FOUND" | "RATE_LIMIT_EXCEEDED";
  /** `reason` of the server's `auth_failure` line. */
  reason: string;
  /** The token used (checked for leaks) and the client options carrying it. */
  make(): Promise<{ token?: string; options: ClientOptions }>;
}

const HOSTILE: HostileCase[] = [
  {
    name: "no token",
    code: "AUTH_REQUIRED",
    reason: "missing_token",
    make: () => Promise.resolve({ options: {} }),
  },
  {
    name: "empty auth.token",
    code: "AUTH_REQUIRED",
    reason: "missing_token",
    make: () => Promise.resolve({ options: { auth: { token: "" } } }),
  },
  {
    name: "malformed token",
    code: "AUTH_REQUIRED",
    reason: "malformed",
    make: () => {
      const token = "not-a-jwt.at-all.sorry-nope";
      return Promise.resolve({ token, options: { auth: { token } } });
    },
  },
  {
    name: "alg: none",
    code: "AUTH_REQUIRED",
    reason: "alg_not_allowed",
    make: () => {
      const token = unsecuredToken({ sub: AGENT_123 }, { issuer: ISS });
      return Promise.resolve({ token, options: { auth: { token } } });
    },
  },
  {
    name: "HS256 signed with the JWKS public key (server with JWKS only)",
    server: "jwksOnly",
    code: "AUTH_REQUIRED",
    reason: "alg_not_allowed",
    make: async () => {
      const token = await signHs256(await publicKeyPemBytes(es256), { sub: AGENT_123 }, {
        issuer: ISS,
        kid: es256.kid,
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "HS256 signed with the JWKS public key (server with secret and JWKS)",
    code: "AUTH_REQUIRED",
    reason: "bad_signature",
    make: async () => {
      const token = await signHs256(await publicKeyPemBytes(es256), { sub: AGENT_123 }, {
        issuer: ISS,
        kid: es256.kid,
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "wrong signature (ES256, tampered)",
    code: "AUTH_REQUIRED",
    reason: "bad_signature",
    make: async () => {
      const token = tamperSignature(await signToken(es256, { sub: AGENT_123 }, { issuer: ISS }));
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "wrong signature (HS256, other secret)",
    code: "AUTH_REQUIRED",
    reason: "bad_signature",
    make: async () => {
      const token = await signHs256(OTHER_SECRET, { sub: AGENT_123 }, { issuer: ISS });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "signing key not in the JWKS",
    code: "AUTH_REQUIRED",
    reason: "no_key",
    make: async () => {
      const token = await signToken(stranger, { sub: AGENT_123 }, { issuer: ISS });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "expired",
    code: "AUTH_REQUIRED",
    reason: "expired",
    make: async () => {
      const token = await signToken(es256, { sub: AGENT_123 }, {
        issuer: ISS,
        expiresInSec: -120,
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "not yet valid",
    code: "AUTH_REQUIRED",
    reason: "not_yet_valid",
    make: async () => {
      const token = await signToken(es256, { sub: AGENT_123 }, {
        issuer: ISS,
        notBeforeInSec: 300,
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "no exp",
    code: "AUTH_REQUIRED",
    reason: "missing_exp",
    make: async () => {
      const token = await signHs256(SECRET, { sub: AGENT_123 }, {
        issuer: ISS,
        expiresInSec: null,
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "wrong issuer",
    code: "AUTH_REQUIRED",
    reason: "wrong_issuer",
    make: async () => {
      const token = await signToken(es256, { sub: AGENT_123 }, {
        issuer: "https://evil.example/auth/v1",
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "wrong audience",
    code: "AUTH_REQUIRED",
    reason: "wrong_audience",
    make: async () => {
      const token = await signToken(es256, { sub: AGENT_123 }, { issuer: ISS, audience: "anon" });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "unknown sub",
    code: "USER_NOT_FOUND",
    reason: "user_not_found",
    make: async () => {
      const token = await signToken(es256, { sub: NOBODY }, { issuer: ISS });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "Bearer with an invalid token",
    code: "AUTH_REQUIRED",
    reason: "bad_signature",
    make: async () => {
      const token = await signHs256(OTHER_SECRET, { sub: AGENT_123 }, { issuer: ISS });
      return { token, options: { extraHeaders: { authorization: `Bearer ${token}` } } };
    },
  },
  {
    name: "access_token cookie from a foreign origin",
    code: "ACCESS_DENIED",
    reason: "origin_not_allowed",
    make: async () => {
      const token = await signHs256(SECRET, { sub: AGENT_123 }, { issuer: ISS });
      return {
        token,
        options: { extraHeaders: { cookie: `access_token=${token}`, origin: FOREIGN_ORIGIN } },
      };
    },
  },
  {
    name: "access_token cookie without any origin",
    code: "ACCESS_DENIED",
    reason: "origin_not_allowed",
    make: async () => {
      const token = await signHs256(SECRET, { sub: AGENT_123 }, { issuer: ISS });
      return { token, options: { extraHeaders: { cookie: `access_token=${token}` } } };
    },
  },
  {
    name: "@supabase/ssr cookie from a foreign origin",
    code: "ACCESS_DENIED",
    reason: "origin_not_allowed",
    make: async () => {
      const token = await signToken(es256, { sub: AGENT_124 }, { issuer: ISS });
      return {
        token,
        options: { extraHeaders: { cookie: await supabaseCookie(token), origin: FOREIGN_ORIGIN } },
      };
    },
  },
  {
    name: "customer token signed with another secret",
    code: "AUTH_REQUIRED",
    reason: "bad_signature",
    make: async () => {
      const token = await customerToken(789, { secret: OTHER_SECRET });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "customer token signed with the Supabase secret (the other kind's secret)",
    code: "USER_NOT_FOUND",
    reason: "user_not_found",
    make: async () => {
      // a valid Supabase signature, but a Supabase token names an agent by `sub`: none here
      const token = await signHs256(SECRET, { sub: NOBODY, client_id: 789, type: "client" }, {
        issuer: ISS,
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "alg: none with a client_id",
    code: "AUTH_REQUIRED",
    reason: "alg_not_allowed",
    make: () => {
      const token = unsecuredToken({ sub: "x", client_id: 789, type: "client" });
      return Promise.resolve({ token, options: { auth: { token } } });
    },
  },
  {
    name: "customer token without client_id",
    code: "AUTH_REQUIRED",
    reason: "missing_client_id",
    make: async () => {
      const token = await signHs256(CUSTOMER_SECRET, { client_number: "917", type: "client" }, {
        audience: null,
      });
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "customer token, expired (mobile app: auth.token and Bearer)",
    code: "AUTH_REQUIRED",
    reason: "expired",
    make: async () => {
      const token = await customerToken(789, { expiresInSec: -120 });
      return {
        token,
        options: { auth: { token }, extraHeaders: { authorization: `Bearer ${token}` } },
      };
    },
  },
  {
    name: "customer token of an unknown client",
    code: "USER_NOT_FOUND",
    reason: "user_not_found",
    make: async () => {
      const token = await customerToken(999);
      return { token, options: { auth: { token } } };
    },
  },
  {
    name: "customer token of an inactive client",
    code: "ACCESS_DENIED",
    reason: "account_inactive",
    make: async () => {
      const token = await customerToken(790);
      return { token, options: { auth: { token } } };
    },
  },
];

Deno.test("hostile handshakes are refused with the right code and leak nothing", async (t) => {
  const jwks = serveJwks(jwksOf(es256, rs256));
  const log = captureLog();
  const both = await startApp(baseEnv({
    SUPABASE_JWT_SECRET: SECRET,
    SUPABASE_JWKS_URL: jwks.url,
    JWT_ISSUER: ISS,
    AUTH_FAIL_LIMIT: "1000",
  }));
  const jwksOnly = await startApp(baseEnv({
    SUPABASE_JWKS_URL: jwks.url,
    JWT_ISSUER: ISS,
    AUTH_FAIL_LIMIT: "1000",
  }));
  const inactive = {
    client: [{
      client_id: 790,
      client_country_code: "+63",
      client_number: numberOf(790),
      prof_id: 5,
      client_is_active: false,
    }],
  };
  await both.app.services.store.loadFixture(inactive);
  await jwksOnly.app.services.store.loadFixture(inactive);
  try {
    for (const row of HOSTILE) {
      for (const transport of TRANSPORTS) {
        await t.step(`${row.name} [${transport}]`, async () => {
          const running = row.server === "jwksOnly" ? jwksOnly : both;
          const { token, options } = await row.make();
          const before = log.security("auth_failure").length;
          const rawBefore = log.raw.length;
          const error = await refused(running.url, { transports: [transport], ...options });
          assertCleanRefusal(error, row.code, secretsOf(token));
          for (const line of log.raw.slice(rawBefore)) {
            for (const secret of secretsOf(token)) {
              assert.ok(!line.includes(secret), `secret material in the log: ${line}`);
            }
          }

          const failures = log.security("auth_failure").slice(before);
          assert.equal(failures.length, 1, "one auth_failure line per refused handshake");
          assert.equal(failures[0].reason, row.reason);
          assert.equal(failures[0].code, row.code);
          assert.equal(failures[0].address, "127.0.0.1");
          assert.equal(running.app.io.of("/").sockets.size, 0, "no server socket left");
        });
      }
    }

    await t.step("no log line holds a token or the secret", () => {
      for (const line of log.raw) {
        assert.ok(!line.includes(SECRET), "secret in the log");
        assert.ok(!line.includes(OTHER_SECRET), "secret in the log");
        assert.ok(!/eyJ[\w-]+\.eyJ[\w-]+\./.test(line), `a JWT in the log: ${line}`);
      }
    });
  } finally {
    await both.close();
    await jwksOnly.close();
    log.restore();
    await jwks.close();
  }
});

Deno.test("every token source connects, over both transports", async (t) => {
  const log = captureLog();
  const running = await startApp(baseEnv({ SUPABASE_JWT_SECRET: SECRET, JWT_ISSUER: ISS }));
  try {
    const agentToken = await signHs256(SECRET, { sub: AGENT_123 }, { issuer: ISS });
    const adminToken = await signHs256(SECRET, { sub: ADMIN_1 }, { issuer: ISS });
    const clientToken = await customerToken(789);
    const clientOne = await customerToken(1);
    const ssrCookie = await supabaseCookie(adminToken);
    const chunked = await supabaseCookie(agentToken, 6000);
    assert.match(chunked, /sb-abcdefgh-auth-token\.1=/, "@supabase/ssr chunked the session");

    const sources: Array<{
      name: string;
      options: ClientOptions;
      person: string;
      source: "auth" | "bearer" | "cookie";
    }> = [
      {
        name: "handshake auth.token",
        options: { auth: { token: agentToken } },
        person: "agent:123",
        source: "auth",
      },
      {
        name: "Authorization: Bearer",
        options: { extraHeaders: { authorization: `Bearer ${agentToken}` } },
        person: "agent:123",
        source: "bearer",
      },
      {
        name: "the web app: Bearer, and auth { userId, timestamp } without a token",
        options: {
          auth: { userId: 123, timestamp: Date.now() },
          extraHeaders: { authorization: `Bearer ${agentToken}`, origin: ALLOWED_ORIGIN },
        },
        person: "agent:123",
        source: "bearer",
      },
      {
        name: "the mobile app: a customer token as auth.token and Bearer",
        options: {
          auth: { token: clientToken },
          extraHeaders: { authorization: `Bearer ${clientToken}` },
        },
        person: "client:789",
        source: "auth",
      },
      {
        name: "customer 1 (the admin is agent 1): another person",
        options: { extraHeaders: { authorization: `Bearer ${clientOne}` } },
        person: "client:1",
        source: "bearer",
      },
      {
        name: "Authorization: Bearer from a foreign origin (not tied to an origin)",
        options: {
          extraHeaders: { authorization: `Bearer ${agentToken}`, origin: FOREIGN_ORIGIN },
        },
        person: "agent:123",
        source: "bearer",
      },
      {
        name: "access_token cookie from an allowed origin",
        options: {
          extraHeaders: {
            cookie: `theme=dark; access_token=${agentToken}`,
            origin: ALLOWED_ORIGIN,
          },
        },
        person: "agent:123",
        source: "cookie",
      },
      {
        name: "the cookie @supabase/ssr writes",
        options: { extraHeaders: { cookie: ssrCookie, origin: ALLOWED_ORIGIN } },
        person: "agent:1",
        source: "cookie",
      },
      {
        name: "the chunked cookies @supabase/ssr writes",
        options: { extraHeaders: { cookie: chunked, origin: ALLOWED_ORIGIN } },
        person: "agent:123",
        source: "cookie",
      },
      {
        name: "a stale cookie does not hide a valid Bearer token",
        options: {
          extraHeaders: {
            cookie: `access_token=${tamperSignature(adminToken)}`,
            authorization: `Bearer ${agentToken}`,
            origin: ALLOWED_ORIGIN,
          },
        },
        person: "agent:123",
        source: "bearer",
      },
    ];

    for (const { name, options, person, source } of sources) {
      for (const transport of TRANSPORTS) {
        await t.step(`${name} [${transport}]`, async () => {
          const before = log.security("auth_success").length;
          const socket = await connect(running.url, { transports: [transport], ...options });
          try {
            assert.equal(serverPerson(running, socket), person);
            const successes = log.security("auth_success").slice(before);
            assert.equal(successes.length, 1);
            assert.equal(successes[0].source, source);
            assert.equal(`${successes[0].kind}:${successes[0].userId}`, person);
          } finally {
            socket.close();
          }
        });
      }
    }

    await t.step("auth.token wins over a Bearer of another user", async () => {
      const socket = await connect(running.url, {
        transports: ["websocket"],
        auth: { token: clientToken },
        extraHeaders: { authorization: `Bearer ${agentToken}` },
      });
      try {
        assert.equal(serverPerson(running, socket), "client:789");
      } finally {
        socket.close();
      }
    });

    await t.step("the success lines hold no token", () => {
      for (const line of log.raw) {
        for (const token of [agentToken, adminToken, clientToken, clientOne]) {
          assert.ok(!line.includes(token.split(".")[2]), "token signature in the log");
        }
        assert.ok(!line.includes(ssrCookie.slice(30, 80)), "cookie value in the log");
      }
    });
  } finally {
    await running.close();
    log.restore();
  }
});

Deno.test("each key type: HS256 secret, ES256 and RS256 from a loopback JWKS", async (t) => {
  const jwks = serveJwks(jwksOf(es256, rs256));
  const log = captureLog();
  const secretOnly = await startApp(baseEnv({ SUPABASE_JWT_SECRET: SECRET, JWT_ISSUER: ISS }));
  const jwksOnly = await startApp(baseEnv({ SUPABASE_JWKS_URL: jwks.url, JWT_ISSUER: ISS }));
  try {
    await t.step("HS256 with SUPABASE_JWT_SECRET", async () => {
      const token = await signHs256(SECRET, { sub: AGENT_124 }, { issuer: ISS });
      const socket = await connect(secretOnly.url, { auth: { token } });
      try {
        assert.equal(serverPerson(secretOnly, socket), "agent:124");
      } finally {
        socket.close();
      }
    });

    await t.step("ES256 is refused by a server without a JWKS", async () => {
      const token = await signToken(es256, { sub: AGENT_124 }, { issuer: ISS });
      const error = await refused(secretOnly.url, { auth: { token } });
      assertCleanRefusal(error, "AUTH_REQUIRED", secretsOf(token));
    });

    for (const key of [es256, rs256]) {
      await t.step(`${key.alg} with SUPABASE_JWKS_URL and JWT_ISSUER`, async () => {
        const token = await signToken(key, { sub: ADMIN_1 }, { issuer: ISS });
        const socket = await connect(jwksOnly.url, { auth: { token } });
        try {
          assert.equal(serverPerson(jwksOnly, socket), "agent:1");
        } finally {
          socket.close();
        }
      });
    }

    await t.step("the JWKS was fetched once and cached", () => {
      assert.equal(jwks.fetches, 1);
    });

    await t.step("HS256 is refused by a server with only a JWKS", async () => {
      const token = await signHs256(SECRET, { sub: ADMIN_1 }, { issuer: ISS });
      const error = await refused(jwksOnly.url, { auth: { token } });
      assertCleanRefusal(error, "AUTH_REQUIRED", secretsOf(token));
    });
  } finally {
    await secretOnly.close();
    await jwksOnly.close();
    log.restore();
    await jwks.close();
  }
});

Deno.test("each role lands in its rooms", async (t) => {
  const log = captureLog();
  const running = await startApp({ SEED_FILE: FIXTURE });
  try {
    const cases: Array<[string, string, string[]]> = [
      ["customer 789", "client:789", ["client_789", "clients"]],
      ["customer 1", "client:1", ["client_1", "clients"]],
      ["agent 123", "agent:123", ["agent_123", "department_1", "dept_1", "staff", "user_123"]],
      [
        "admin 1",
        "agent:1",
        [
          "admins",
          "agent_1",
          "department_1",
          "department_2",
          "dept_1",
          "dept_2",
          "staff",
          "user_1",
        ],
      ],
    ];
    for (const [role, who, rooms] of cases) {
      await t.step(role, async () => {
        const socket = await connect(running.url, {
          auth: { token: await tokenFor(running, who) },
        });
        try {
          assert.deepEqual(roomsOf(running, socket), rooms);
        } finally {
          socket.close();
        }
      });
    }
  } finally {
    await running.close();
    log.restore();
  }
});

/** Records `error` and `disconnect` events of a client in order. */
function recordEvents(socket: Socket): { events: string[]; disconnected: Promise<string> } {
  const events: string[] = [];
  socket.on("error", (payload: { code?: string }) => events.push(`error:${payload?.code}`));
  const disconnected = new Promise<string>((resolve) => {
    socket.once("disconnect", (reason: string) => {
      events.push(`disconnect:${reason}`);
      resolve(reason);
    });
  });
  return { events, disconnected };
}

function nextEvent<T>(socket: Socket, event: string): Promise<T> {
  return within(
    new Promise<T>((resolve) => socket.once(event, (value: T) => resolve(value))),
    event,
  );
}

Deno.test("token expiry: tokenExpiring, refreshToken, AUTH_REQUIRED and disconnect", async (t) => {
  const log = captureLog();
  const running = await startApp(baseEnv({
    SUPABASE_JWT_SECRET: SECRET,
    JWT_ISSUER: ISS,
    TOKEN_EXPIRY_WARNING: "2",
  }));
  try {
    await t.step("refresh with a fresh token of the same user keeps the socket", async () => {
      const shortToken = await signHs256(SECRET, { sub: AGENT_123 }, {
        issuer: ISS,
        expiresInSec: 3,
      });
      const oldExpMs = decodeJwt(shortToken).exp! * 1000;
      const socket = await connect(running.url, {
        transports: ["websocket"],
        auth: { token: shortToken },
      });
      const { events } = recordEvents(socket);
      try {
        const warning = await nextEvent<{ expiresAt: string }>(socket, "tokenExpiring");
        assert.equal(Date.parse(warning.expiresAt), oldExpMs);

        const fresh = await signHs256(SECRET, { sub: AGENT_123 }, { issuer: ISS });
        const ack = await within(
          socket.emitWithAck("refreshToken", { token: fresh }),
          "refreshToken ack",
        );
        assert.deepEqual(ack, {
          ok: true,
          expiresAt: new Date(decodeJwt(fresh).exp! * 1000).toISOString(),
        });

        await delay(Math.max(0, oldExpMs - Date.now()) + 1500);
        assert.equal(socket.connected, true, "still connected past the old exp");
        assert.ok(running.app.io.of("/").sockets.get(socket.id!), "server still has the socket");
        assert.deepEqual(events, []);
      } finally {
        socket.close();
      }
    });

    await t.step(
      "refresh with another user's token is ACCESS_DENIED and does not extend",
      async () => {
        const shortToken = await signHs256(SECRET, { sub: AGENT_123 }, {
          issuer: ISS,
          expiresInSec: 3,
        });
        const socket = await connect(running.url, {
          transports: ["websocket"],
          auth: { token: shortToken },
        });
        const { events, disconnected } = recordEvents(socket);
        try {
          await nextEvent(socket, "tokenExpiring");
          const other = await signHs256(SECRET, { sub: AGENT_124 }, { issuer: ISS });
          const ack = await within(
            socket.emitWithAck("refreshToken", { token: other }),
            "refreshToken ack",
          );
          assert.equal(ack.ok, false);
          assert.equal(ack.code, "ACCESS_DENIED");
          assert.ok(!JSON.stringify(ack).includes(other.split(".")[2]), "token echoed back");
          assert.equal(serverPerson(running, socket), "agent:123", "identity unchanged");

          // the transport is closed: a client with reconnection on would reconnect with a new token
          assert.equal(await within(disconnected, "expiry disconnect"), "transport close");
          assert.deepEqual(events, [
            "error:ACCESS_DENIED",
            "error:AUTH_REQUIRED",
            "disconnect:transport close",
          ]);
          const failures = log.security("token_refresh_failure");
          assert.equal(failures.at(-1)?.reason, "person_mismatch");
        } finally {
          socket.close();
        }
      },
    );

    await t.step("a token valid for 30 days is not cut off (timer overflow)", async () => {
      // setTimeout fires at once for delays beyond 2^31-1 ms (~24.8 days)
      const longToken = await signHs256(SECRET, { sub: AGENT_123 }, {
        issuer: ISS,
        expiresInSec: 30 * 86_400,
      });
      const socket = await connect(running.url, {
        transports: ["websocket"],
        auth: { token: longToken },
      });
      const { events } = recordEvents(socket);
      const warnings: unknown[] = [];
      socket.on("tokenExpiring", (payload: unknown) => warnings.push(payload));
      try {
        // a round trip after the connection: any immediate timer has fired by now
        // (a refresh with the same long token re-arms the timers as well)
        const ack = await within(
          socket.emitWithAck("refreshToken", { token: longToken }),
          "refreshToken ack",
        ) as { ok: boolean };
        await delay(300);
        assert.equal(ack.ok, true);
        assert.equal(socket.connected, true);
        assert.deepEqual(warnings, []);
        assert.deepEqual(events, []);
      } finally {
        socket.close();
      }
    });

    await t.step("without refresh: error AUTH_REQUIRED, then the transport closes", async () => {
      const shortToken = await customerToken(789, { expiresInSec: 3 });
      const socket = await connect(running.url, {
        transports: ["polling"],
        auth: { token: shortToken },
      });
      const { events, disconnected } = recordEvents(socket);
      try {
        const warning = await nextEvent<{ expiresAt: string }>(socket, "tokenExpiring");
        assert.equal(typeof warning.expiresAt, "string");
        assert.equal(await within(disconnected, "expiry disconnect"), "transport close");
        assert.deepEqual(events, ["error:AUTH_REQUIRED", "disconnect:transport close"]);
        for (let i = 0; i < 100 && running.app.io.of("/").sockets.size > 0; i++) await delay(10);
        assert.equal(running.app.io.of("/").sockets.size, 0);
      } finally {
        socket.close();
      }
    });
  } finally {
    await running.close();
    log.restore();
  }
});

Deno.test("repeated failed handshakes from one address are blocked, but never a valid token", async () => {
  const log = captureLog();
  const running = await startApp(baseEnv({
    SUPABASE_JWT_SECRET: SECRET,
    JWT_ISSUER: ISS,
    AUTH_FAIL_LIMIT: "3",
  }));
  try {
    const bad = await signHs256(OTHER_SECRET, { sub: AGENT_123 }, { issuer: ISS });
    for (let i = 0; i < 3; i++) {
      const error = await refused(running.url, { transports: ["websocket"], auth: { token: bad } });
      assertCleanRefusal(error, "AUTH_REQUIRED", secretsOf(bad));
    }
    assert.deepEqual(
      log.security("auth_failure").map((line) => line.reason),
      ["bad_signature", "bad_signature", "bad_signature"],
    );
    assert.equal(log.security("auth_blocked").length, 1);

    // a bad token is now refused as blocked; a valid one still connects
    const error = await refused(running.url, { transports: ["websocket"], auth: { token: bad } });
    assertCleanRefusal(error, "AUTH_REQUIRED", secretsOf(bad));
    assert.equal(log.security("auth_failure").at(-1)?.reason, "too_many_failures");
    assert.equal(
      running.app.services.metrics.authFailures.get({ reason: "too_many_failures" }),
      1,
    );
    const good = await signHs256(SECRET, { sub: AGENT_123 }, { issuer: ISS });
    const socket = await connect(running.url, { transports: ["websocket"], auth: { token: good } });
    socket.close();
    assert.equal(log.security("auth_success").length, 1);
  } finally {
    await running.close();
    log.restore();
  }
});

Deno.test("behind a trusted proxy failures count per forwarded client; elsewhere the header is ignored", async (t) => {
  const log = captureLog();
  const bad = await signHs256(OTHER_SECRET, { sub: AGENT_123 }, { issuer: ISS });
  const good = await signHs256(SECRET, { sub: AGENT_123 }, { issuer: ISS });
  const from = (address: string, token: string): ClientOptions => ({
    transports: ["polling"],
    auth: { token },
    extraHeaders: { "x-forwarded-for": address },
  });
  try {
    await t.step("TRUSTED_PROXIES=127.0.0.1: one client locked out, the others not", async () => {
      const running = await startApp(baseEnv({
        SUPABASE_JWT_SECRET: SECRET,
        JWT_ISSUER: ISS,
        AUTH_FAIL_LIMIT: "3",
        TRUSTED_PROXIES: "127.0.0.1",
      }));
      try {
        const before = log.security("auth_failure").length;
        for (let i = 0; i < 4; i++) await refused(running.url, from("203.0.113.7", bad));
        const lines = log.security("auth_failure").slice(before);
        assert.deepEqual(lines.map((l) => [l.address, l.reason]), [
          ["203.0.113.7", "bad_signature"],
          ["203.0.113.7", "bad_signature"],
          ["203.0.113.7", "bad_signature"],
          ["203.0.113.7", "too_many_failures"],
        ]);
        // another user behind the same proxy: a bad token is judged on its own, a good one connects
        await refused(running.url, from("198.51.100.9", bad));
        assert.deepEqual(
          [
            log.security("auth_failure").at(-1)?.address,
            log.security("auth_failure").at(-1)?.reason,
          ],
          ["198.51.100.9", "bad_signature"],
        );
        (await connect(running.url, from("198.51.100.9", good))).close();
        // and the locked-out address itself with a token that verifies
        (await connect(running.url, from("203.0.113.7", good))).close();
      } finally {
        await running.close();
      }
    });
    await t.step("no trusted proxy: X-Forwarded-For does not change the address", async () => {
      const running = await startApp(baseEnv({
        SUPABASE_JWT_SECRET: SECRET,
        JWT_ISSUER: ISS,
        AUTH_FAIL_LIMIT: "3",
      }));
      try {
        const before = log.security("auth_failure").length;
        // a new spoofed address each time does not escape the limit
        for (let i = 0; i < 4; i++) await refused(running.url, from(`203.0.113.${i + 1}`, bad));
        const lines = log.security("auth_failure").slice(before);
        assert.deepEqual(lines.map((l) => l.address), [
          "127.0.0.1",
          "127.0.0.1",
          "127.0.0.1",
          "127.0.0.1",
        ]);
        assert.equal(lines.at(-1)?.reason, "too_many_failures");
      } finally {
        await running.close();
      }
    });
  } finally {
    log.restore();
  }
});

Deno.test("POST /dev/login: development only, built-in secrets only, JSON only", async (t) => {
  const log = captureLog();
  const login = (url: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}/dev/login`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  try {
    await t.step("development: cookie and token for a seeded agent and customer", async () => {
      const running = await startApp({ SEED_FILE: FIXTURE });
      try {
        for (const [kind, id] of [["agent", 123], ["client", 789], ["client", 1]] as const) {
          const response = await login(running.url, { kind, id });
          assert.equal(response.status, 200);
          const body = await response.json() as {
            token: string;
            person: { kind: string; id: number };
          };
          assert.deepEqual([body.person.kind, body.person.id], [kind, id]);
          const cookie = response.headers.get("set-cookie") ?? "";
          const attributes = cookie.split(";").map((part) => part.trim().toLowerCase());
          assert.ok(attributes.includes("httponly"), `HttpOnly missing: ${cookie}`);
          assert.equal(cookie.split(";")[0], `access_token=${body.token}`);
          // the cookie authenticates a socket from an allowed origin, as that person
          const socket = await connect(running.url, {
            extraHeaders: { cookie: cookie.split(";")[0], origin: ALLOWED_ORIGIN },
          });
          try {
            assert.equal(serverPerson(running, socket), `${kind}:${id}`);
          } finally {
            socket.close();
          }
        }
        const unknown = await login(running.url, { kind: "agent", id: 999 });
        assert.equal(unknown.status, 404);
        assert.equal((await unknown.json()).code, "USER_NOT_FOUND");
      } finally {
        await running.close();
      }
    });

    await t.step("cross-site posts are refused: text/plain, a foreign Origin", async () => {
      const running = await startApp({ SEED_FILE: FIXTURE });
      try {
        const plain = await login(running.url, '{"kind":"agent","id":1}', {
          "content-type": "text/plain",
        });
        assert.equal(plain.status, 415);
        assert.equal(plain.headers.get("set-cookie"), null);
        const foreign = await login(running.url, { kind: "agent", id: 1 }, {
          origin: FOREIGN_ORIGIN,
        });
        assert.equal(foreign.status, 403);
        assert.equal(foreign.headers.get("set-cookie"), null);
        const ok = await login(running.url, { kind: "agent", id: 1 }, { origin: running.url });
        assert.equal(ok.status, 200);
        await ok.body?.cancel();
      } finally {
        await running.close();
      }
    });

    await t.step(
      "development with a real SUPABASE_JWT_SECRET: no agent token is minted",
      async () => {
        const running = await startApp({ SEED_FILE: FIXTURE, SUPABASE_JWT_SECRET: SECRET });
        try {
          assert.equal(running.app.devTokens.agent, null);
          const response = await login(running.url, { kind: "agent", id: 1 });
          assert.equal(response.status, 403);
          assert.equal(response.headers.get("set-cookie"), null);
          assert.ok(!(await response.text()).includes("eyJ"), "no token in the body");
          // customers still use the built-in development secret here
          const customer = await login(running.url, { kind: "client", id: 789 });
          assert.equal(customer.status, 200);
          await customer.body?.cancel();
        } finally {
          await running.close();
        }
      },
    );

    await t.step("development listens on loopback by default", async () => {
      const { loadConfig } = await import("../src/config.ts");
      assert.equal(loadConfig({ APP_ENV: "development" }).host, "127.0.0.1");
    });

    await t.step("production: 404, and nothing minted", async () => {
      const running = await startApp(baseEnv({
        APP_ENV: "production",
        SUPABASE_JWT_SECRET: SECRET,
        SOCKET_CORS_ORIGINS: ALLOWED_ORIGIN,
      }));
      try {
        assert.deepEqual(running.app.devTokens, { agent: null, customer: null });
        const response = await login(running.url, { kind: "agent", id: 123 });
        assert.equal(response.status, 404);
        assert.equal(response.headers.get("set-cookie"), null);
        const text = await response.text();
        assert.ok(!text.includes("eyJ"), "no token in the body");
      } finally {
        await running.close();
      }
    });
  } finally {
    log.restore();
  }
});

Deno.test("security log: auth_success and auth_failure lines, never a token", async () => {
  const log = captureLog();
  const running = await startApp(baseEnv({ SUPABASE_JWT_SECRET: SECRET, JWT_ISSUER: ISS }));
  try {
    const good = await signHs256(SECRET, { sub: AGENT_123 }, { issuer: ISS });
    const expired = await signHs256(SECRET, { sub: AGENT_123 }, {
      issuer: ISS,
      expiresInSec: -120,
    });
    const socket = await connect(running.url, {
      transports: ["polling"],
      extraHeaders: { authorization: `Bearer ${good}`, "user-agent": "handshake-test/1.0" },
    });
    socket.close();
    await refused(running.url, {
      transports: ["polling"],
      extraHeaders: { cookie: `access_token=${expired}`, origin: ALLOWED_ORIGIN },
    });

    const success = log.security("auth_success");
    assert.equal(success.length, 1);
    assert.equal(success[0].level, "info");
    assert.equal(success[0].userId, 123);
    assert.equal(success[0].source, "bearer");
    assert.equal(success[0].address, "127.0.0.1");
    assert.equal(typeof success[0].time, "string");

    const failure = log.security("auth_failure");
    assert.equal(failure.length, 1);
    assert.equal(failure[0].level, "warn");
    assert.equal(failure[0].reason, "expired");
    assert.equal(failure[0].code, "AUTH_REQUIRED");
    assert.equal(failure[0].source, "cookie");
    assert.equal(failure[0].address, "127.0.0.1");

    for (const line of log.raw) {
      for (const token of [good, expired]) {
        assert.ok(!line.includes(token), "a token in the log");
        assert.ok(!line.includes(token.split(".")[2]), "a token signature in the log");
        assert.ok(!line.includes(token.split(".")[1]), "a token payload in the log");
      }
      assert.ok(!line.includes(SECRET), "the secret in the log");
    }
  } finally {
    await running.close();
    log.restore();
  }
});

Deno.test("connection state recovery only resumes the same user's session", async (t) => {
  const log = captureLog();
  const running = await startApp({ SEED_FILE: FIXTURE });
  /** Connects as `who`, receives one broadcast (an offset), then drops the transport. */
  async function dropAgent(who = "agent:123"): Promise<{ socket: Socket; received: string[] }> {
    const socket = io(running.url, {
      forceNew: true,
      reconnectionDelay: 50,
      reconnectionAttempts: 3,
      transports: ["websocket"],
      auth: { token: await tokenFor(running, who) },
    });
    const received: string[] = [];
    // what an agent's connection itself brings (availability changes broadcast to everyone, the
    // queue drain's customerListUpdate "assigned" for agent 1, whose department has a queued
    // conversation, which may land after the probe) is not this test's
    const ownConnection = new Set(["presence:change", "customerListUpdate"]);
    socket.onAny((event: string) => !ownConnection.has(event) && received.push(event));
    await within(
      new Promise<void>((resolve) => socket.once("connect", () => resolve())),
      "connect",
    );
    const first = nextEvent(socket, "probe");
    running.app.io.to(`agent_${who.split(":")[1]}`).emit("probe", 1);
    await first;
    const id = socket.id!;
    const gone = new Promise<void>((resolve) => socket.once("disconnect", () => resolve()));
    socket.io.engine.close(); // abrupt: the server keeps the session for recovery
    await within(gone, "transport close");
    // the server has seen the close (and saved the session) once the socket is gone
    for (let i = 0; i < 200 && running.app.io.of("/").sockets.has(id); i++) await delay(10);
    assert.equal(running.app.io.of("/").sockets.has(id), false, "server saw the drop");
    // missed while away: only for staff
    running.app.io.to("staff").emit("staffOnly", "while away");
    return { socket, received };
  }
  try {
    await t.step("another user's token cannot take over the dropped session", async () => {
      const { socket, received } = await dropAgent();
      try {
        socket.auth = { token: await tokenFor(running, "client:789") };
        const error = await within(
          new Promise<RefusedError>((resolve) => socket.once("connect_error", resolve)),
          "connect_error",
        );
        assertCleanRefusal(error, "ACCESS_DENIED", []);
        assert.equal(socket.connected, false);
        assert.deepEqual(received, ["probe"]);
        const staff = running.app.io.of("/").adapter.rooms.get("staff") ?? new Set();
        assert.equal(staff.size, 0, "nobody is in the staff room");
        const mismatch = log.security("session_identity_mismatch");
        assert.equal(mismatch.length, 1);
        assert.equal(mismatch[0].userId, 789);
        assert.equal(mismatch[0].sessionUserId, 123);
      } finally {
        socket.close();
      }
    });

    await t.step("customer 1 cannot take over admin agent 1's session (same number)", async () => {
      const { socket, received } = await dropAgent("agent:1");
      try {
        socket.auth = { token: await tokenFor(running, "client:1") };
        const error = await within(
          new Promise<RefusedError>((resolve) => socket.once("connect_error", resolve)),
          "connect_error",
        );
        assertCleanRefusal(error, "ACCESS_DENIED", []);
        assert.deepEqual(received, ["probe"]);
        const mismatch = log.security("session_identity_mismatch").at(-1);
        assert.deepEqual(
          [mismatch?.kind, mismatch?.userId, mismatch?.sessionKind, mismatch?.sessionUserId],
          ["client", 1, "agent", 1],
        );
      } finally {
        socket.close();
      }
    });

    await t.step("the same user with a fresh token recovers", async () => {
      const { socket, received } = await dropAgent();
      try {
        socket.auth = { token: await tokenFor(running, "agent:123") };
        await within(
          new Promise<void>((resolve) => socket.once("connect", () => resolve())),
          "reconnect",
        );
        assert.equal(socket.recovered, true);
        assert.equal(serverPerson(running, socket), "agent:123");
        await delay(50);
        assert.deepEqual(received, ["probe", "staffOnly"]);
      } finally {
        socket.close();
      }
    });
  } finally {
    await running.close();
    log.restore();
  }
});

Deno.test("SOCKET_REQUIRE_HEADER_TOKEN: a handshake without a Bearer header or token cookie gets no session", async (t) => {
  const running = await startApp({
    SEED_FILE: FIXTURE,
    SOCKET_REQUIRE_HEADER_TOKEN: "true",
    SOCKET_CORS_ORIGINS: ALLOWED_ORIGIN,
  });
  const clients: TestClient[] = [];
  const handshake = `${running.url}/socket.io/?EIO=4&transport=polling`;
  try {
    await t.step("no header: 403, Engine.IO code 4, no session opened", async () => {
      const before = running.app.engine.clientsCount;
      const res = await fetch(handshake);
      assert.equal(res.status, 403);
      const body = await res.json();
      assert.equal(body.code, 4);
      assert.match(body.message, /^AUTH_REQUIRED/);
      assert.equal(running.app.engine.clientsCount, before);
      // a WebSocket handshake as well
      const ws = new WebSocket(
        `${handshake.replace("http", "ws").replace("polling", "websocket")}`,
      );
      const closed = await new Promise<boolean>((resolve) => {
        ws.onopen = () => resolve(false);
        ws.onerror = () => resolve(true);
      });
      assert.equal(closed, true, "the WebSocket handshake is refused");
    });
    await t.step("a cookie that is not a token cookie does not count", async () => {
      const res = await fetch(handshake, { headers: { cookie: "theme=dark" } });
      assert.equal(res.status, 403);
      await res.body?.cancel();
    });
    await t.step("a Bearer header opens a session (the token is checked at CONNECT)", async () => {
      const res = await fetch(handshake, { headers: { authorization: "Bearer x.y.z" } });
      assert.equal(res.status, 200);
      assert.match(await res.text(), /^0\{"sid"/);
    });
    await t.step("the apps connect as they are", async () => {
      const token = await tokenFor(running, "agent:123");
      clients.push(await webAppSocket(running.url, { token, sysUserId: 123 }));
      clients.push(
        await mobileAppSocket(running.url, { token: await tokenFor(running, "client:789") }),
      );
      assert.equal(clients.every((c) => c.socket.connected), true);
    });
  } finally {
    for (const client of clients) client.close();
    await running.close();
  }
});

Deno.test("by default a client may send its token in auth.token only (the contract)", async () => {
  const running = await startApp({ SEED_FILE: FIXTURE });
  try {
    const res = await fetch(`${running.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  } finally {
    await running.close();
  }
});
