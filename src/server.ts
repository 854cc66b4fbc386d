/**
 * Composition root: opens KV and the store, builds the Engine.IO engine,
 * socket.io's `Server` on top of it, the event handlers and the HTTP routes,
 * and returns a web-standard request handler.
 *
 * @module
 */

import { Server, type ServerOptions } from "socket.io";
import {
  Authenticator,
  FailLimiter,
  mintToken,
  TokenVerifier,
  verifierOptionsFor,
} from "./auth/mod.ts";
import type { Config } from "./config.ts";
import { demoRoutes } from "./demo/mod.ts";
import { Engine, type EngineSocket } from "./engine/mod.ts";
import { registerHandlers, type Services, startRoomStatsPush } from "./handlers/mod.ts";
import { log } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { PresenceFeed } from "./presence_feed.ts";
import { TypingThrottle } from "./rate_limit.ts";
import { redisAdapter } from "./scale.ts";
import { loadFixtureFile } from "./store/fixture.ts";
import { KvStore } from "./store/kv_store.ts";
import type { ChatStore } from "./store/mod.ts";
import { openPostgresStore } from "./store/postgres_store.ts";
import { TimedPresence, TimedRateLimiter, timedStore } from "./store/timed.ts";

/** A running service: its request handler and how to stop it. */
export interface App {
  /** The handler for `Deno.serve`. */
  handler: (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;
  /** Stops taking connections, closes every socket, releases KV and database. */
  close: () => Promise<void>;
  /** socket.io's server. */
  io: Server;
  /** The Engine.IO engine. */
  engine: Engine;
  /** Shared services (tests, wiring). */
  services: Services;
  /** Mints a development token for a user's auth id (development only, else null). */
  mintDevToken: ((authId: string) => Promise<string>) | null;
}

/** Options of {@linkcode createApp}: ready-made dependencies (tests). */
export interface AppOptions {
  /** An open KV for presence and rate limits (and chat data without a database). */
  kv?: Deno.Kv;
  /** A ready store; default: Postgres when `DATABASE_URL`, else KV. */
  store?: ChatStore;
  /** Extra socket.io server options (e.g. an adapter). */
  socketIo?: Partial<ServerOptions>;
}

async function openKv(path: string | null): Promise<Deno.Kv> {
  if (path && path !== ":memory:" && !path.includes("://")) {
    const dir = path.replace(/[/\\][^/\\]*$/, "");
    if (dir && dir !== path) await Deno.mkdir(dir, { recursive: true });
  }
  return await Deno.openKv(path ?? undefined);
}

/** Builds the service from its configuration. */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  // Redis first: when it does not answer at start-up nothing else is open yet.
  const scale = config.redisUrl ? await redisAdapter(config.redisUrl) : null;
  const metrics = new Metrics();
  const kv = options.kv ?? await openKv(config.kvPath);
  // connectTimeout (s): while the database is unreachable a send fails within it
  const store = timedStore(
    options.store ??
      (config.databaseUrl
        ? await openPostgresStore(config.databaseUrl, { connectTimeout: 3 })
        : new KvStore(kv)),
    metrics,
  );
  if (config.seedFile) {
    await loadFixtureFile(store, config.seedFile);
    log("info", "fixture loaded", { file: config.seedFile });
  }

  const { options: verifierOptions, usingDevSecret } = verifierOptionsFor(config);
  const verifier = new TokenVerifier(verifierOptions);
  if (usingDevSecret) log("warn", "using the insecure development JWT secret");
  const secret = verifierOptions.secret;

  const engine = new Engine({
    pingInterval: config.heartbeatInterval,
    pingTimeout: config.heartbeatTimeout,
    maxHttpBufferSize: config.maxHttpBufferSize,
    transports: config.transports,
    cors: { origin: config.corsOrigins, credentials: true },
    // engine hardening: client address behind proxies, pending sessions, slow readers
    trustedProxies: config.engineLimits.trustedProxies,
    proxyHeader: config.engineLimits.proxyHeader,
    pendingTimeout: config.engineLimits.pendingTimeoutMs,
    maxPendingPerAddress: config.engineLimits.pendingPerAddress,
    maxPending: config.engineLimits.pendingMax,
    maxBufferedBytes: config.engineLimits.maxBufferedBytes,
  });
  engine.on("connection_error", (err) => {
    log("info", "connection refused", {
      code: err.code,
      message: err.message,
      context: err.context,
      address: err.req.remoteAddress,
    });
  });
  const io = new Server({
    maxHttpBufferSize: config.maxHttpBufferSize,
    serveClient: false,
    connectionStateRecovery: config.recoveryWindowMs > 0
      ? { maxDisconnectionDuration: config.recoveryWindowMs, skipMiddlewares: false }
      : undefined,
    ...(scale ? { adapter: scale.adapter } : {}),
    ...options.socketIo,
  });
  io.bind(engine as never);
  deliverToRecoveredSockets(io);
  // a session stops being pending (engine caps and deadline) once socket.io
  // admitted it, i.e. the auth middleware passed
  io.of("/").on("connection", (socket) => {
    (socket.conn as unknown as EngineSocket).markAuthenticated();
  });

  const presence = new TimedPresence(kv, metrics, { ttlMs: config.heartbeatTimeout });
  const presenceFeed = new PresenceFeed(io, presence, {
    sweepEveryMs: Math.max(1000, Math.min(10_000, Math.floor(config.heartbeatTimeout / 2))),
  });
  const pending = new Set<Promise<unknown>>();
  function track<T>(work: Promise<T>): Promise<T> {
    pending.add(work);
    work.then(() => pending.delete(work), () => pending.delete(work));
    return work;
  }
  const services: Services = {
    config,
    io,
    store,
    presence,
    presenceFeed,
    limiter: new TimedRateLimiter(kv, metrics),
    typing: new TypingThrottle({ intervalMs: config.rateLimits.typingIntervalMs }),
    authenticator: new Authenticator({
      verifier,
      findUser: (authId) => store.getUserByAuthId(authId),
      cookieNames: config.auth.cookieNames,
      allowedOrigins: config.corsOrigins,
      failLimiter: new FailLimiter({ limit: config.auth.failLimit }),
    }),
    metrics,
    track,
  };
  registerHandlers(io, services);
  presenceFeed.start();
  const stopStats = startRoomStatsPush(io, {
    store,
    presence,
    intervalMs: config.roomStatsIntervalMs,
  });
  metrics.sockets.collect(() => {
    const counts = new Map<string, number>();
    for (const socket of io.of("/").sockets.values()) {
      const key = `${socket.conn.transport.name}|${socket.data.user?.role ?? "unknown"}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return [...counts].map(([key, n]) => {
      const [transport, role] = key.split("|");
      return [{ transport, role }, n];
    });
  });
  metrics.rooms.collect(() => [[{}, io.of("/").adapter.rooms.size]]);

  const mintDevToken = config.appEnv === "development" && secret
    ? (authId: string) =>
      mintToken({ authId }, {
        secret,
        issuer: config.auth.issuer ?? undefined,
        audience: config.auth.audience,
      })
    : null;

  const demo = demoRoutes(config, { devLogin: mintDevToken !== null });
  let closing = false;
  const engineHandler = engine.handler();

  async function readyz(): Promise<Response> {
    if (closing) return json({ status: "shutting_down" }, 503);
    try {
      await store.ping();
      return json({ status: "ready", store: store.kind }, 200);
    } catch (error) {
      log("warn", "readiness check failed", { store: store.kind, error: String(error) });
      return json({ status: "not_ready", reason: "store unreachable" }, 503);
    }
  }

  async function devLogin(req: Request): Promise<Response> {
    if (!mintDevToken) return json({ error: "not_found" }, 404);
    let body: { userId?: unknown; authId?: unknown };
    try {
      body = await req.json();
    } catch {
      return json({ code: "INVALID_DATA", message: "Expected a JSON body" }, 400);
    }
    const user = typeof body.authId === "string"
      ? await store.getUserByAuthId(body.authId)
      : typeof body.userId === "number"
      ? await store.getUser(body.userId)
      : null;
    if (!user) return json({ code: "USER_NOT_FOUND", message: "No such demo user" }, 404);
    const token = await mintDevToken(user.authId);
    const cookie = `${
      config.auth.cookieNames[0]
    }=${token}; HttpOnly; Path=/; SameSite=Lax; Max-Age=3600`;
    return json({ token, user }, 200, { "Set-Cookie": cookie });
  }

  function metricsRoute(req: Request): Response {
    if (config.metricsToken) {
      const auth = req.headers.get("authorization");
      if (!sameSecret(auth ?? "", `Bearer ${config.metricsToken}`)) {
        return json({ error: "unauthorized" }, 401);
      }
    }
    return new Response(metrics.render(), {
      headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }

  function handler(req: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> {
    const { pathname } = new URL(req.url);
    if (engine.matches(pathname)) {
      // new handshakes are refused; open sessions are served until they are closed
      if (closing && !new URL(req.url).searchParams.has("sid")) {
        return json({ code: 3, message: "Server shutting down" }, 503);
      }
      return engineHandler(req, info);
    }
    if (req.method === "GET" || req.method === "HEAD") {
      if (pathname === "/healthz") return json({ status: "ok" }, 200);
      if (pathname === "/readyz") return readyz();
      if (pathname === "/metrics") return metricsRoute(req);
      const page = demo?.(req);
      if (page) return page;
    }
    if (req.method === "POST" && pathname === "/dev/login") return devLogin(req);
    return json({ error: "not_found" }, 404);
  }

  async function close(): Promise<void> {
    if (closing) return;
    closing = true;
    stopStats();
    // in-flight events finish first, so that their acks still reach the clients
    await Promise.allSettled([...pending]);
    await presenceFeed.close();
    // io.close() sends no disconnect packet: it closes the Engine.IO sessions,
    // so clients see "transport close" and reconnect (to another instance)
    await io.close();
    // events that arrived meanwhile finish and are stored (their acks may be
    // lost: the client resends with its clientMessageId); disconnect
    // clean-ups reach KV
    while (pending.size) await Promise.allSettled([...pending]);
    await store.close();
    await scale?.close();
    try {
      kv.close();
    } catch {
      // already closed by the KV store
    }
  }

  return { handler, close, io, engine, services, mintDevToken };
}

/**
 * socket.io restores a recovered socket's rooms and replays what it missed
 * before the middlewares run again (`skipMiddlewares: false`), but delivers
 * broadcasts only to sockets listed in `nsp.sockets`, which it adds after the
 * middlewares: a message broadcast while the recovered handshake is being
 * re-authenticated would be lost. The first middleware lists a recovered
 * socket at once (moving it out of socket.io's pre-connect map, so a refusal,
 * which deletes it from `nsp.sockets`, leaves nothing behind); the client
 * buffers events received before its CONNECT, as it does for the replay.
 */
function deliverToRecoveredSockets(io: Server): void {
  const nsp = io.of("/");
  nsp.use((socket, next) => {
    if (socket.recovered) {
      (nsp as unknown as { _preConnectSockets: Map<string, unknown> })._preConnectSockets
        .delete(socket.id);
      nsp.sockets.set(socket.id, socket);
    }
    next();
  });
}

/** Compares two strings in time independent of where they differ. */
function sameSecret(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}

function json(body: unknown, status: number, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}
