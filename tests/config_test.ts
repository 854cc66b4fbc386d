/**
 * src/config.ts: defaults, parsing, one-line errors naming the variable, no
 * secret echoed in an error, and production refusing to start without a way
 * to verify tokens or without its web app's origins (also through `main.ts`
 * in a child process).
 */

import assert from "node:assert/strict";
import { CONFIG_VARIABLES, ConfigError, loadConfig } from "../src/config.ts";

/** What production needs besides a key source. */
const ORIGINS = { SOCKET_CORS_ORIGINS: "https://app.servana.example" };

/** Expects a ConfigError and returns its message. */
function configError(env: Record<string, string | undefined>): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    return error.message;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}

Deno.test("defaults", () => {
  // production is the default: without its origins or a key source nothing starts
  assert.match(configError({}), /^SOCKET_CORS_ORIGINS: /);
  assert.match(configError(ORIGINS), /^SUPABASE_JWT_SECRET: /);
  const production = loadConfig({ ...ORIGINS, SUPABASE_JWT_SECRET: "a-secret" });
  assert.equal(production.appEnv, "production");
  assert.equal(production.serveDemo, false);
  assert.equal(production.metricsPublic, false);
  // production listens on every interface, development on loopback
  assert.equal(production.host, "0.0.0.0");
  assert.deepEqual(production.corsOrigins, ["https://app.servana.example"]);
  const config = loadConfig({ APP_ENV: "development" });
  assert.equal(config.port, 3000);
  assert.equal(config.host, "127.0.0.1");
  assert.deepEqual(config.corsOrigins, ["http://localhost:5173", "http://localhost:5000"]);
  assert.equal(config.heartbeatInterval, 25_000);
  assert.equal(config.heartbeatTimeout, 60_000);
  assert.equal(config.debug, false);
  assert.equal(config.maxHttpBufferSize, 1_000_000);
  assert.deepEqual(config.transports, ["polling", "websocket"]);
  assert.deepEqual(config.auth, {
    cookieNames: ["access_token"],
    jwtSecret: null,
    customerSecret: null,
    supabaseUrl: null,
    jwksUrl: null,
    issuer: null,
    audience: "authenticated",
    failLimit: 20,
    expiryWarningSec: 60,
  });
  assert.equal(config.kvPath, "./data/servana.kv");
  // on Deno Deploy: the attached KV database
  assert.equal(loadConfig({ APP_ENV: "development", DENO_DEPLOYMENT_ID: "abc" }).kvPath, null);
  assert.equal(config.databaseUrl, null);
  assert.equal(config.databasePrepare, "auto");
  assert.equal(config.dedupeWindowMs, 86_400_000);
  assert.equal(config.seedFile, null);
  assert.equal(config.maxMessageLength, 5000);
  assert.equal(config.roomStatsIntervalMs, 10_000);
  assert.deepEqual(config.rateLimits, {
    messagesPerWindow: 30,
    statusPerWindow: 10,
    refreshPerWindow: 10,
    readsPerMinute: 240,
    windowMs: 60_000,
    typingIntervalMs: 1000,
  });
  assert.equal(config.maxSocketsPerPerson, 20);
  assert.equal(config.accessRecheckMs, 5000);
  assert.equal(config.queueMaxActive, 5);
  assert.equal(config.redisUrl, null);
  assert.equal(config.recoveryWindowMs, 120_000);
  assert.equal(config.shutdownTimeoutMs, 10_000);
  assert.equal(config.metricsToken, null);
  assert.equal(config.metricsPublic, true);
  assert.equal(config.serveDemo, true);
});

Deno.test("empty strings count as unset; unknown variables are ignored", () => {
  const config = loadConfig({
    PORT: "",
    APP_ENV: "development",
    SUPABASE_JWT_SECRET: "",
    UNRELATED: "x",
  });
  assert.equal(config.port, 3000);
  assert.equal(config.appEnv, "development");
  assert.equal(config.auth.jwtSecret, null);
  // an empty APP_ENV is the default (production), which then needs its origins and a key source
  assert.match(configError({ APP_ENV: "", SUPABASE_JWT_SECRET: "" }), /^SOCKET_CORS_ORIGINS: /);
  assert.match(
    configError({ APP_ENV: "", ...ORIGINS, SUPABASE_JWT_SECRET: "" }),
    /^SUPABASE_JWT_SECRET: /,
  );
  // blank origins are unset: production refuses them like a missing variable
  assert.match(
    configError({ SOCKET_CORS_ORIGINS: "  ", SUPABASE_JWT_SECRET: "s" }),
    /^SOCKET_CORS_ORIGINS: .*APP_ENV=production/,
  );
});

Deno.test("values are parsed", async (t) => {
  await t.step("numbers, lists, booleans", () => {
    const config = loadConfig({
      APP_ENV: "development",
      PORT: "8080",
      HOST: "127.0.0.1",
      SOCKET_CORS_ORIGINS: " https://a.example , https://b.example,,",
      SOCKET_HEARTBEAT_INTERVAL: "1000",
      SOCKET_HEARTBEAT_TIMEOUT: "2000",
      SOCKET_DEBUG: "yes",
      SOCKET_TRANSPORTS: "websocket",
      AUTH_COOKIE_NAMES: "session, access_token",
      AUTH_FAIL_LIMIT: "3",
      TOKEN_EXPIRY_WARNING: "2",
      RATE_LIMIT_MESSAGES: "5",
      RATE_LIMIT_STATUS: "6",
      RATE_LIMIT_READS: "120",
      RATE_LIMIT_REFRESH: "7",
      RATE_LIMIT_WINDOW: "1000",
      TYPING_THROTTLE: "0",
      MAX_SOCKETS_PER_PERSON: "3",
      ACCESS_RECHECK_INTERVAL: "250",
      QUEUE_MAX_ACTIVE: "2",
      MESSAGE_DEDUPE_WINDOW: "60000",
      SOCKET_RECOVERY_WINDOW: "0",
      METRICS_TOKEN: "m-token",
      METRICS_PUBLIC: "false",
    });
    assert.equal(config.port, 8080);
    assert.equal(config.host, "127.0.0.1");
    assert.deepEqual(config.corsOrigins, ["https://a.example", "https://b.example"]);
    assert.equal(config.heartbeatInterval, 1000);
    assert.equal(config.heartbeatTimeout, 2000);
    assert.equal(config.debug, true);
    assert.deepEqual(config.transports, ["websocket"]);
    assert.deepEqual(config.auth.cookieNames, ["session", "access_token"]);
    assert.equal(config.auth.failLimit, 3);
    assert.equal(config.auth.expiryWarningSec, 2);
    assert.deepEqual(config.rateLimits, {
      messagesPerWindow: 5,
      statusPerWindow: 6,
      refreshPerWindow: 7,
      readsPerMinute: 120,
      windowMs: 1000,
      typingIntervalMs: 0,
    });
    assert.equal(config.maxSocketsPerPerson, 3);
    assert.equal(config.accessRecheckMs, 250);
    assert.equal(config.queueMaxActive, 2);
    assert.equal(config.dedupeWindowMs, 60_000);
    assert.equal(config.recoveryWindowMs, 0);
    assert.equal(config.metricsToken, "m-token");
    assert.equal(config.metricsPublic, false);
  });

  await t.step("RATE_LIMIT_READS: 1 up to the limiter's 4000", () => {
    const reads = (value: string) =>
      loadConfig({ APP_ENV: "development", RATE_LIMIT_READS: value }).rateLimits.readsPerMinute;
    assert.equal(reads("1"), 1);
    assert.equal(reads("4000"), 4000);
    assert.match(
      configError({ APP_ENV: "development", RATE_LIMIT_READS: "4001" }),
      /^RATE_LIMIT_READS: expected an integer from 1 to 4000 /,
    );
  });

  await t.step("HOST: explicit wins in both environments", () => {
    assert.equal(loadConfig({ APP_ENV: "development", HOST: "0.0.0.0" }).host, "0.0.0.0");
    assert.equal(
      loadConfig({ ...ORIGINS, SUPABASE_JWT_SECRET: "s", HOST: "10.0.0.7" }).host,
      "10.0.0.7",
    );
  });

  await t.step("DATABASE_PREPARE: true, false or auto", () => {
    const prepare = (value: string) =>
      loadConfig({ APP_ENV: "development", DATABASE_PREPARE: value }).databasePrepare;
    assert.equal(prepare("true"), true);
    assert.equal(prepare("false"), false);
    assert.equal(prepare("auto"), "auto");
  });

  await t.step("METRICS_PUBLIC: public in development unless false, private in production", () => {
    assert.equal(
      loadConfig({ APP_ENV: "development", METRICS_PUBLIC: "no" }).metricsPublic,
      false,
    );
    const production = { ...ORIGINS, SUPABASE_JWT_SECRET: "s" };
    assert.equal(loadConfig(production).metricsPublic, false);
    assert.equal(loadConfig({ ...production, METRICS_PUBLIC: "true" }).metricsPublic, true);
  });

  await t.step("JWT_ACCESS_SECRET: the customers' secret", () => {
    const config = loadConfig({
      ...ORIGINS,
      SUPABASE_JWT_SECRET: "agents-secret",
      JWT_ACCESS_SECRET: "customers-secret",
    });
    assert.equal(config.auth.jwtSecret, "agents-secret");
    assert.equal(config.auth.customerSecret, "customers-secret");
  });

  await t.step("booleans: true/1/yes and false/0/no", () => {
    for (const value of ["true", "1", "yes"]) {
      assert.equal(loadConfig({ APP_ENV: "development", SOCKET_DEBUG: value }).debug, true, value);
    }
    for (const value of ["false", "0", "no"]) {
      assert.equal(loadConfig({ APP_ENV: "development", SOCKET_DEBUG: value }).debug, false, value);
    }
  });

  await t.step("SUPABASE_URL derives the JWKS URL and the issuer (trailing slash dropped)", () => {
    const config = loadConfig({
      APP_ENV: "development",
      SUPABASE_URL: "https://abcd.supabase.co/",
    });
    assert.equal(config.auth.supabaseUrl, "https://abcd.supabase.co");
    assert.equal(config.auth.jwksUrl, "https://abcd.supabase.co/auth/v1/.well-known/jwks.json");
    assert.equal(config.auth.issuer, "https://abcd.supabase.co/auth/v1");
  });

  await t.step("SUPABASE_JWKS_URL and JWT_ISSUER win over the derived values", () => {
    const config = loadConfig({
      APP_ENV: "development",
      SUPABASE_URL: "https://abcd.supabase.co",
      SUPABASE_JWKS_URL: "http://127.0.0.1:9999/jwks.json",
      JWT_ISSUER: "https://issuer.example",
      JWT_AUDIENCE: "servana",
    });
    assert.equal(config.auth.jwksUrl, "http://127.0.0.1:9999/jwks.json");
    assert.equal(config.auth.issuer, "https://issuer.example");
    assert.equal(config.auth.audience, "servana");
  });

  await t.step("stores and files", () => {
    const config = loadConfig({
      APP_ENV: "development",
      KV_PATH: "./data/servana.kv",
      DATABASE_URL: "postgresql://u:p@localhost:5432/servana",
      REDIS_URL: "rediss://cache.example:6380",
      SEED_FILE: "demo/fixture.json",
    });
    assert.equal(config.kvPath, "./data/servana.kv");
    assert.equal(config.databaseUrl, "postgresql://u:p@localhost:5432/servana");
    assert.equal(config.redisUrl, "rediss://cache.example:6380");
    assert.equal(config.seedFile, "demo/fixture.json");
  });

  await t.step("SERVE_DEMO defaults to false in production", () => {
    const config = loadConfig({ ...ORIGINS, APP_ENV: "production", SUPABASE_JWT_SECRET: "s" });
    assert.equal(config.serveDemo, false);
    assert.equal(
      loadConfig({
        ...ORIGINS,
        APP_ENV: "production",
        SUPABASE_JWT_SECRET: "s",
        SERVE_DEMO: "true",
      })
        .serveDemo,
      true,
    );
  });
});

Deno.test("each bad value stops with one line naming the variable", async (t) => {
  const cases: Array<[string, string]> = [
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["PORT", "-1"],
    ["APP_ENV", "staging"],
    ["SOCKET_HEARTBEAT_INTERVAL", "10"],
    ["SOCKET_HEARTBEAT_TIMEOUT", "soon"],
    ["SOCKET_DEBUG", "maybe"],
    ["SOCKET_MAX_BUFFER", "12"],
    ["SOCKET_TRANSPORTS", "carrier-pigeon"],
    ["SOCKET_TRANSPORTS", ","],
    ["SUPABASE_URL", "not a url"],
    ["SUPABASE_JWKS_URL", "jwks.json"],
    ["AUTH_FAIL_LIMIT", "0"],
    ["TOKEN_EXPIRY_WARNING", "1.5"],
    ["DATABASE_URL", "mysql://localhost/servana"],
    ["MAX_MESSAGE_LENGTH", "0"],
    ["ROOM_STATS_INTERVAL", "5"],
    ["RATE_LIMIT_MESSAGES", "x"],
    ["RATE_LIMIT_STATUS", "0"],
    // above the limiter's MAX_RATE_LIMIT every send would fail with SERVER_ERROR
    ["RATE_LIMIT_MESSAGES", "4001"],
    ["RATE_LIMIT_STATUS", "100000"],
    ["RATE_LIMIT_WINDOW", "99"],
    ["RATE_LIMIT_REFRESH", "0"],
    ["RATE_LIMIT_READS", "0"],
    ["RATE_LIMIT_READS", "4001"],
    ["MAX_SOCKETS_PER_PERSON", "0"],
    ["MAX_SOCKETS_PER_PERSON", "10001"],
    ["ACCESS_RECHECK_INTERVAL", "99"],
    ["QUEUE_MAX_ACTIVE", "0"],
    ["QUEUE_MAX_ACTIVE", "1001"],
    ["MESSAGE_DEDUPE_WINDOW", "999"],
    ["DATABASE_PREPARE", "maybe"],
    ["METRICS_PUBLIC", "public"],
    ["TYPING_THROTTLE", "-5"],
    ["REDIS_URL", "http://cache.example"],
    ["SOCKET_RECOVERY_WINDOW", "2m"],
    ["SHUTDOWN_TIMEOUT", "1e3"],
    ["SERVE_DEMO", "sure"],
  ];
  for (const [name, value] of cases) {
    await t.step(`${name}=${JSON.stringify(value)}`, () => {
      // the bad value among good ones
      const message = configError({ PORT: "3001", APP_ENV: "development", [name]: value });
      assert.ok(!message.includes("\n"), `more than one line: ${message}`);
      assert.ok(message.startsWith(`${name}: expected `), message);
    });
  }
});

Deno.test("a bad secret-bearing value is not echoed", async (t) => {
  const cases: Array<[string, string, string]> = [
    ["DATABASE_URL", "mysql://servana:hunter2-db-password@db.example/servana", "hunter2"],
    ["DATABASE_URL", "postgress://servana:hunter2-db-password@db.example/servana", "hunter2"],
    ["REDIS_URL", "https://:s3cret-redis-password@cache.example", "s3cret"],
  ];
  for (const [name, value, secret] of cases) {
    await t.step(name, () => {
      const message = configError({ [name]: value });
      assert.ok(message.startsWith(`${name}: expected `), message);
      assert.ok(!message.includes(secret), `secret echoed: ${message}`);
    });
  }
});

Deno.test("JWT_ACCESS_SECRET equal to SUPABASE_JWT_SECRET stops start-up, unechoed", () => {
  for (const env of [{ APP_ENV: "development" }, { APP_ENV: "production", ...ORIGINS }]) {
    const message = configError({
      ...env,
      SUPABASE_JWT_SECRET: "one-shared-secret-value",
      JWT_ACCESS_SECRET: " one-shared-secret-value ",
    });
    assert.ok(message.startsWith("JWT_ACCESS_SECRET: expected "), message);
    assert.ok(message.includes("SUPABASE_JWT_SECRET"), message);
    assert.ok(!message.includes("one-shared-secret-value"), `secret echoed: ${message}`);
    assert.ok(!message.includes("\n"));
  }
});

Deno.test("production refuses to start without its web app's origins", async (t) => {
  await t.step("SOCKET_CORS_ORIGINS unset", () => {
    const message = configError({ APP_ENV: "production", SUPABASE_JWT_SECRET: "s" });
    assert.ok(message.startsWith("SOCKET_CORS_ORIGINS: expected "), message);
    assert.ok(message.includes("APP_ENV=production"), message);
    assert.ok(!message.includes("\n"));
  });
  await t.step("set: exactly those origins", () => {
    const config = loadConfig({
      APP_ENV: "production",
      SUPABASE_JWT_SECRET: "s",
      SOCKET_CORS_ORIGINS: "https://app.servana.example, https://admin.servana.example",
    });
    assert.deepEqual(config.corsOrigins, [
      "https://app.servana.example",
      "https://admin.servana.example",
    ]);
  });
  await t.step("development falls back to the local dev servers", () => {
    assert.deepEqual(loadConfig({ APP_ENV: "development" }).corsOrigins, [
      "http://localhost:5173",
      "http://localhost:5000",
    ]);
  });
});

Deno.test("production refuses to start without a secret or a JWKS source", async (t) => {
  await t.step("no key source at all", () => {
    const message = configError({ APP_ENV: "production", ...ORIGINS });
    assert.ok(message.startsWith("SUPABASE_JWT_SECRET: "), message);
    assert.ok(message.includes("APP_ENV=production"), message);
    assert.ok(!message.includes("\n"));
  });
  await t.step("an empty secret counts as none", () => {
    assert.match(
      configError({ APP_ENV: "production", ...ORIGINS, SUPABASE_JWT_SECRET: "" }),
      /^SUPABASE_JWT_SECRET: /,
    );
  });
  await t.step("a secret, SUPABASE_URL or SUPABASE_JWKS_URL is enough", () => {
    const withSecret = loadConfig({ APP_ENV: "production", ...ORIGINS, SUPABASE_JWT_SECRET: "s3" });
    assert.equal(withSecret.auth.jwtSecret, "s3");
    const withUrl = loadConfig({
      APP_ENV: "production",
      ...ORIGINS,
      SUPABASE_URL: "https://p.supabase.co",
    });
    assert.equal(withUrl.auth.jwksUrl, "https://p.supabase.co/auth/v1/.well-known/jwks.json");
    const withJwks = loadConfig({
      APP_ENV: "production",
      ...ORIGINS,
      SUPABASE_JWKS_URL: "https://keys.example/jwks.json",
    });
    assert.equal(withJwks.auth.jwksUrl, "https://keys.example/jwks.json");
  });
  await t.step("a customers' secret alone is not a key source for agents", () => {
    assert.match(
      configError({ APP_ENV: "production", ...ORIGINS, JWT_ACCESS_SECRET: "c" }),
      /^SUPABASE_JWT_SECRET: /,
    );
  });
  await t.step("development starts without any key source", () => {
    assert.equal(loadConfig({ APP_ENV: "development" }).auth.jwtSecret, null);
  });
});

/** Runs main.ts with `env` (key-source variables blanked) and returns exit code and stderr. */
async function runMain(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const blank: Record<string, string> = {};
  for (const name of CONFIG_VARIABLES) blank[name] = "";
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: decodeURIComponent(new URL("../", import.meta.url).pathname),
    env: { ...blank, NO_COLOR: "1", PORT: "0", HOST: "127.0.0.1", KV_PATH: ":memory:", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  const output = await child.output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("main.ts exits 1 with one line on a config error", async (t) => {
  await t.step("production without a key source", async () => {
    const { code, stderr } = await runMain({ APP_ENV: "production", ...ORIGINS });
    assert.equal(code, 1);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0], /^config error: SUPABASE_JWT_SECRET: .*APP_ENV=production/);
  });
  await t.step("production without its origins", async () => {
    const { code, stderr } = await runMain({ APP_ENV: "production", SUPABASE_JWT_SECRET: "s" });
    assert.equal(code, 1);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0], /^config error: SOCKET_CORS_ORIGINS: .*APP_ENV=production/);
  });
  await t.step("a bad variable", async () => {
    const { code, stderr } = await runMain({ RATE_LIMIT_WINDOW: "fast" });
    assert.equal(code, 1);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0], /RATE_LIMIT_WINDOW: expected /);
  });
});

Deno.test("engine hardening variables: defaults, values, refusals", () => {
  const defaults = loadConfig({ APP_ENV: "development" }).engineLimits;
  assert.deepEqual(defaults, {
    trustedProxies: [],
    proxyHeader: "x-forwarded-for",
    pendingTimeoutMs: 10_000,
    pendingPerAddress: 50,
    pendingMax: 5000,
    maxBufferedBytes: 4 * 1024 * 1024,
    requireHeaderToken: false,
  });
  const set = loadConfig({
    APP_ENV: "development",
    TRUSTED_PROXIES: "127.0.0.1, 10.0.0.0/8,fd00::/8",
    TRUSTED_PROXY_HEADER: "forwarded",
    SOCKET_PENDING_TIMEOUT: "0",
    SOCKET_REQUIRE_HEADER_TOKEN: "true",
  }).engineLimits;
  assert.equal(set.requireHeaderToken, true);
  assert.deepEqual(set.trustedProxies, ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
  assert.equal(set.proxyHeader, "forwarded");
  assert.equal(set.pendingTimeoutMs, 0);
  assert.throws(
    () => loadConfig({ APP_ENV: "development", TRUSTED_PROXIES: "10.0.0.0/33" }),
    (e: Error) => e instanceof ConfigError && e.message.startsWith("TRUSTED_PROXIES: expected"),
  );
  assert.throws(
    () => loadConfig({ APP_ENV: "development", TRUSTED_PROXY_HEADER: "x-real-ip" }),
    ConfigError,
  );
});
