/**
 * Environment → typed configuration, parsed with zod.
 *
 * A wrong or missing value stops start-up with one line that names the
 * variable and what it expects ({@linkcode ConfigError}).
 *
 * @module
 */

import { z } from "zod";
import { parseTrustedProxies } from "./engine/client_address.ts";
import { MAX_RATE_LIMIT } from "./rate_limit.ts";

/** The service's configuration. */
export interface Config {
  port: number;
  host: string;
  appEnv: "development" | "production";
  /** Origins allowed for CORS and for cookie-authenticated handshakes. */
  corsOrigins: string[];
  /** Engine.IO ping interval, ms (`SOCKET_HEARTBEAT_INTERVAL`). */
  heartbeatInterval: number;
  /** Engine.IO ping timeout and presence expiry, ms (`SOCKET_HEARTBEAT_TIMEOUT`). */
  heartbeatTimeout: number;
  debug: boolean;
  maxHttpBufferSize: number;
  /** Engine.IO transports offered (`SOCKET_TRANSPORTS`); websocket only on Deno Deploy. */
  transports: ("polling" | "websocket")[];
  auth: {
    cookieNames: string[];
    /** Supabase's legacy JWT secret (`SUPABASE_JWT_SECRET`): agents' HS256 tokens. */
    jwtSecret: string | null;
    /** The backend's `JWT_ACCESS_SECRET`: customers' tokens; null refuses them. */
    customerSecret: string | null;
    supabaseUrl: string | null;
    jwksUrl: string | null;
    issuer: string | null;
    audience: string;
    failLimit: number;
    /** Seconds before `exp` at which `tokenExpiring` is sent. */
    expiryWarningSec: number;
  };
  kvPath: string | null;
  databaseUrl: string | null;
  /** Prepared statements against `DATABASE_URL`: true, false, or "auto" (off behind a pooler). */
  databasePrepare: boolean | "auto";
  /** How long a `clientMessageId` is remembered, ms. */
  dedupeWindowMs: number;
  seedFile: string | null;
  maxMessageLength: number;
  roomStatsIntervalMs: number;
  /** Least ms between two `onlineUsersUpdate` broadcasts (`PRESENCE_BROADCAST_INTERVAL`). */
  presenceBroadcastIntervalMs: number;
  rateLimits: {
    messagesPerWindow: number;
    statusPerWindow: number;
    /** `refreshToken` per window per person (its own budget). */
    refreshPerWindow: number;
    /** Read requests per minute per person. */
    readsPerMinute: number;
    windowMs: number;
    typingIntervalMs: number;
  };
  /** Sockets one person may hold at once, across processes. */
  maxSocketsPerPerson: number;
  /** How often connected people's access to their rooms is checked again, ms. */
  accessRecheckMs: number;
  /** Active conversations an agent may be assigned from the queue. */
  queueMaxActive: number;
  redisUrl: string | null;
  recoveryWindowMs: number;
  shutdownTimeoutMs: number;
  metricsToken: string | null;
  /** Whether `GET /metrics` answers without a token (development, or `METRICS_PUBLIC=true`). */
  metricsPublic: boolean;
  serveDemo: boolean;
  /** Engine hardening (TRUSTED_PROXIES, SOCKET_PENDING_*, SOCKET_MAX_BUFFERED). */
  engineLimits: {
    /** Proxies whose forwarding header gives the client address. */
    trustedProxies: string[];
    proxyHeader: "x-forwarded-for" | "forwarded";
    /** Ms an unauthenticated session may live (0 = no deadline). */
    pendingTimeoutMs: number;
    pendingPerAddress: number;
    pendingMax: number;
    /** Bytes waiting for one client before it is disconnected. */
    maxBufferedBytes: number;
    /**
     * Refuse Engine.IO handshakes without a Bearer header or token cookie
     * (`SOCKET_REQUIRE_HEADER_TOKEN`; off by default: the contract lets a
     * client send its token in `auth.token` only).
     */
    requireHeaderToken: boolean;
  };
}

/** A configuration error: `message` is the one line to print. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

const bool = z.enum(["true", "false", "1", "0", "yes", "no", ""], {
  message: "true or false",
}).transform((v) => v === "true" || v === "1" || v === "yes");

function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  return z.string().regex(/^\d+$/, `an integer from ${min} to ${max}`).transform(Number).pipe(
    z.number().int().min(min, `an integer from ${min} to ${max}`).max(
      max,
      `an integer from ${min} to ${max}`,
    ),
  );
}

const url = z.url({ message: "a URL" });

/** CORS origins in development when `SOCKET_CORS_ORIGINS` is unset (Servana's Vite dev server, the backend). */
const DEVELOPMENT_ORIGINS = ["http://localhost:5173", "http://localhost:5000"];
const list = z.string().transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean));

const schema = z.object({
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).optional(),
  APP_ENV: z.enum(["development", "production"], {
    message: "development or production",
  }).default("production"),
  SOCKET_CORS_ORIGINS: list.optional(),
  SOCKET_HEARTBEAT_INTERVAL: int(50).default(25_000),
  SOCKET_HEARTBEAT_TIMEOUT: int(50).default(60_000),
  SOCKET_DEBUG: bool.default(false),
  SOCKET_MAX_BUFFER: int(1024).default(1_000_000),
  SOCKET_TRANSPORTS: z.string().transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean))
    .pipe(
      z.array(z.enum(["polling", "websocket"], { message: "a comma list of polling, websocket" }))
        .min(1, "a comma list of polling, websocket"),
    ).default(["polling", "websocket"]),
  AUTH_COOKIE_NAMES: list.pipe(z.array(z.string()).min(1, "a comma list of cookie names"))
    .default(["access_token"]),
  SUPABASE_JWT_SECRET: z.string().min(1).optional(),
  JWT_ACCESS_SECRET: z.string().min(1).optional(),
  SUPABASE_URL: url.optional(),
  SUPABASE_JWKS_URL: url.optional(),
  JWT_ISSUER: z.string().min(1).optional(),
  JWT_AUDIENCE: z.string().min(1).default("authenticated"),
  AUTH_FAIL_LIMIT: int(1).default(20),
  TOKEN_EXPIRY_WARNING: int(1).default(60),
  KV_PATH: z.string().min(1).optional(),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, "a postgres:// URL").optional(),
  DATABASE_PREPARE: z.enum(["true", "false", "auto"], { message: "true, false or auto" })
    .default("auto"),
  MESSAGE_DEDUPE_WINDOW: int(1000).default(86_400_000),
  SEED_FILE: z.string().min(1).optional(),
  // at most 10000: escaped text must fit one Deno KV value (64 KiB)
  MAX_MESSAGE_LENGTH: int(1, 10_000).default(5000),
  ROOM_STATS_INTERVAL: int(100).default(10_000),
  PRESENCE_BROADCAST_INTERVAL: int(0).default(1000),
  // the limiter refuses larger limits at every call (SERVER_ERROR): refuse them at start instead
  RATE_LIMIT_MESSAGES: int(1, MAX_RATE_LIMIT).default(30),
  RATE_LIMIT_STATUS: int(1, MAX_RATE_LIMIT).default(10),
  RATE_LIMIT_WINDOW: int(100).default(60_000),
  RATE_LIMIT_REFRESH: int(1, MAX_RATE_LIMIT).default(10),
  RATE_LIMIT_READS: int(1, MAX_RATE_LIMIT).default(240),
  MAX_SOCKETS_PER_PERSON: int(1, 10_000).default(20),
  ACCESS_RECHECK_INTERVAL: int(100).default(5000),
  QUEUE_MAX_ACTIVE: int(1, 1000).default(5),
  TYPING_THROTTLE: int(0).default(1000),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, "a redis:// URL").optional(),
  SOCKET_RECOVERY_WINDOW: int(0).default(120_000),
  SHUTDOWN_TIMEOUT: int(0).default(10_000),
  METRICS_TOKEN: z.string().min(1).optional(),
  METRICS_PUBLIC: bool.optional(),
  SERVE_DEMO: bool.optional(),
  // ---- engine hardening (src/engine): client address behind proxies, pending sessions, slow readers
  TRUSTED_PROXIES: list.refine((v) => {
    try {
      parseTrustedProxies(v);
      return true;
    } catch {
      return false;
    }
  }, "a comma list of IP addresses or CIDR networks").default([]),
  TRUSTED_PROXY_HEADER: z.enum(["x-forwarded-for", "forwarded"], {
    message: "x-forwarded-for or forwarded",
  }).default("x-forwarded-for"),
  SOCKET_PENDING_TIMEOUT: int(0).default(10_000),
  SOCKET_PENDING_PER_ADDRESS: int(1).default(50),
  SOCKET_PENDING_MAX: int(1).default(5000),
  SOCKET_MAX_BUFFERED: int(65_536).default(4 * 1024 * 1024),
  SOCKET_REQUIRE_HEADER_TOKEN: bool.optional(),
});

/** Variable names the service reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(schema.shape);

/** Variables whose value may hold a credential: never echoed in an error. */
const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  "SUPABASE_JWT_SECRET",
  "JWT_ACCESS_SECRET",
  "DATABASE_URL",
  "REDIS_URL",
  "METRICS_TOKEN",
]);

/**
 * Parses environment variables into a {@linkcode Config}. Values are trimmed; empty ones count
 * as unset. Throws {@linkcode ConfigError} naming the first bad variable.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const input: Record<string, string> = {};
  for (const key of CONFIG_VARIABLES) {
    const value = env[key]?.trim();
    if (value !== undefined && value !== "") input[key] = value;
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0]);
    const got = SECRET_VARIABLES.has(name)
      ? "a value that is not shown"
      : JSON.stringify(input[name]);
    throw new ConfigError(`${name}: expected ${issue.message} (got ${got})`);
  }
  const e = parsed.data;
  const supabaseUrl = e.SUPABASE_URL?.replace(/\/+$/, "") ?? null;
  const jwksUrl = e.SUPABASE_JWKS_URL ??
    (supabaseUrl ? `${supabaseUrl}/auth/v1/.well-known/jwks.json` : null);
  const development = e.APP_ENV === "development";
  if (!development && e.SOCKET_CORS_ORIGINS === undefined) {
    throw new ConfigError(
      "SOCKET_CORS_ORIGINS: expected the comma list of origins of your web app (required when APP_ENV=production)",
    );
  }
  if (
    e.SUPABASE_JWT_SECRET !== undefined && e.SUPABASE_JWT_SECRET === e.JWT_ACCESS_SECRET
  ) {
    throw new ConfigError(
      "JWT_ACCESS_SECRET: expected a secret different from SUPABASE_JWT_SECRET (equal secrets would let one kind of token pass as the other)",
    );
  }
  const config: Config = {
    port: e.PORT,
    // development listens on loopback unless told otherwise
    host: e.HOST ?? (development ? "127.0.0.1" : "0.0.0.0"),
    appEnv: e.APP_ENV,
    corsOrigins: e.SOCKET_CORS_ORIGINS ?? DEVELOPMENT_ORIGINS,
    heartbeatInterval: e.SOCKET_HEARTBEAT_INTERVAL,
    heartbeatTimeout: e.SOCKET_HEARTBEAT_TIMEOUT,
    debug: e.SOCKET_DEBUG,
    maxHttpBufferSize: e.SOCKET_MAX_BUFFER,
    transports: e.SOCKET_TRANSPORTS,
    auth: {
      cookieNames: e.AUTH_COOKIE_NAMES,
      jwtSecret: e.SUPABASE_JWT_SECRET ?? null,
      customerSecret: e.JWT_ACCESS_SECRET ?? null,
      supabaseUrl,
      jwksUrl,
      issuer: e.JWT_ISSUER ?? (supabaseUrl ? `${supabaseUrl}/auth/v1` : null),
      audience: e.JWT_AUDIENCE,
      failLimit: e.AUTH_FAIL_LIMIT,
      expiryWarningSec: e.TOKEN_EXPIRY_WARNING,
    },
    // Deno Deploy: its attached KV (no path); elsewhere a file inside the binary's write scope
    kvPath: e.KV_PATH ?? (env.DENO_DEPLOYMENT_ID ? null : "./data/servana.kv"),
    databaseUrl: e.DATABASE_URL ?? null,
    databasePrepare: e.DATABASE_PREPARE === "auto" ? "auto" : e.DATABASE_PREPARE === "true",
    dedupeWindowMs: e.MESSAGE_DEDUPE_WINDOW,
    seedFile: e.SEED_FILE ?? null,
    maxMessageLength: e.MAX_MESSAGE_LENGTH,
    roomStatsIntervalMs: e.ROOM_STATS_INTERVAL,
    presenceBroadcastIntervalMs: e.PRESENCE_BROADCAST_INTERVAL,
    rateLimits: {
      messagesPerWindow: e.RATE_LIMIT_MESSAGES,
      statusPerWindow: e.RATE_LIMIT_STATUS,
      refreshPerWindow: e.RATE_LIMIT_REFRESH,
      readsPerMinute: e.RATE_LIMIT_READS,
      windowMs: e.RATE_LIMIT_WINDOW,
      typingIntervalMs: e.TYPING_THROTTLE,
    },
    maxSocketsPerPerson: e.MAX_SOCKETS_PER_PERSON,
    accessRecheckMs: e.ACCESS_RECHECK_INTERVAL,
    queueMaxActive: e.QUEUE_MAX_ACTIVE,
    redisUrl: e.REDIS_URL ?? null,
    recoveryWindowMs: e.SOCKET_RECOVERY_WINDOW,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
    metricsToken: e.METRICS_TOKEN ?? null,
    metricsPublic: e.METRICS_PUBLIC ?? development,
    serveDemo: e.SERVE_DEMO ?? development,
    engineLimits: {
      trustedProxies: e.TRUSTED_PROXIES,
      proxyHeader: e.TRUSTED_PROXY_HEADER,
      pendingTimeoutMs: e.SOCKET_PENDING_TIMEOUT,
      pendingPerAddress: e.SOCKET_PENDING_PER_ADDRESS,
      pendingMax: e.SOCKET_PENDING_MAX,
      maxBufferedBytes: e.SOCKET_MAX_BUFFERED,
      requireHeaderToken: e.SOCKET_REQUIRE_HEADER_TOKEN ?? false,
    },
  };
  if (config.appEnv === "production" && !config.auth.jwtSecret && !config.auth.jwksUrl) {
    throw new ConfigError(
      "SUPABASE_JWT_SECRET: expected a secret, or SUPABASE_URL / SUPABASE_JWKS_URL for a JWKS (required when APP_ENV=production)",
    );
  }
  return config;
}
