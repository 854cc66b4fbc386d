/**
 * Composition root: opens KV and the store, builds the Engine.IO engine,
 * socket.io's `Server` on top of it, the shared services, the event
 * handlers and the HTTP routes, and returns a web-standard request handler.
 *
 * @module
 */

import { Server, type ServerOptions } from "socket.io";
import {
  Authenticator,
  CustomerTokenVerifier,
  FailLimiter,
  mintCustomerToken,
  mintToken,
  requireHeaderCredential,
  TokenVerifier,
  verifierOptionsFor,
} from "./auth/mod.ts";
import { devLoginHandler } from "./auth/dev_login.ts";
import { Availability, loggingMirror } from "./availability.ts";
import { backendCache } from "./backend_cache.ts";
import type { Config } from "./config.ts";
import { demoRoutes } from "./demo/mod.ts";
import { Engine, type EngineSocket } from "./engine/mod.ts";
import { startAccessWatch } from "./handlers/access_watch.ts";
import { announceAssignment } from "./handlers/chat.ts";
import {
  availabilityOnLastDisconnect,
  registerHandlers,
  type Services,
  startAvailabilityRefresh,
  startRoomStatsPush,
} from "./handlers/mod.ts";
import { deferRecovery } from "./handlers/recovery.ts";
import { log, LogThrottle } from "./log.ts";
import { Membership } from "./membership.ts";
import { Metrics } from "./metrics.ts";
import { PresenceFeed } from "./presence_feed.ts";
import { QueueDrain } from "./queue.ts";
import { TypingThrottle } from "./rate_limit.ts";
import { routes } from "./routes.ts";
import { redisAdapter } from "./scale.ts";
import { startSharedKvCheck } from "./shared_kv.ts";
import { loadFixtureFile } from "./store/fixture.ts";
import { KvStore } from "./store/kv_store.ts";
import type { ChatStore } from "./store/mod.ts";
import { openPostgresStore } from "./store/postgres_store.ts";
import { TimedPresence, TimedRateLimiter, timedStore } from "./store/timed.ts";

/** Dev-token minting (development with the built-in secrets only). */
export interface DevTokens {
  /** An agent's Supabase-shaped token for their `supabase_user_id`, or null. */
  agent: ((authId: string) => Promise<string>) | null;
  /** A customer's token, or null. */
  customer: ((customer: { clientId: number; clientNumber: string }) => Promise<string>) | null;
}

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
  /** Mints development tokens (development with the built-in secrets). */
  devTokens: DevTokens;
}

/** Options of {@linkcode createApp}: ready-made dependencies (tests). */
export interface AppOptions {
  /** An open KV for presence, membership and rate limits (and chat data without a database). */
  kv?: Deno.Kv;
  /** A ready store; default: Postgres when `DATABASE_URL`, else KV. */
  store?: ChatStore;
  /** Extra socket.io server options (e.g. an adapter). */
  socketIo?: Partial<ServerOptions>;
}

/** Period of the agents' availability refresh (the backend's keys expire after 900 s). */
const AVAILABILITY_REFRESH_MS = 300_000;
/** How often processes on Redis check that they share one KV. */
const SHARED_KV_CHECK_MS = 5_000;

async function openKv(path: string | null): Promise<Deno.Kv> {
  if (path && path !== ":memory:" && !path.includes("://")) {
    const dir = path.replace(/[/\\][^/\\]*$/, "");
    if (dir && dir !== path) await Deno.mkdir(dir, { recursive: true });
  }
  return await Deno.openKv(path ?? undefined);
}

async function openStore(config: Config, kv: Deno.Kv): Promise<ChatStore> {
  if (!config.databaseUrl) return new KvStore(kv, { dedupeWindowMs: config.dedupeWindowMs });
  // connectTimeout (s): while the database is unreachable a send fails within it
  return await openPostgresStore(config.databaseUrl, {
    connectTimeout: 3,
    prepare: config.databasePrepare === "auto" ? undefined : config.databasePrepare,
    dedupeWindowMs: config.dedupeWindowMs,
  });
}

/** Builds the service from its configuration. */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  // Redis first: when it does not answer at start-up nothing else is open yet.
  const scale = config.redisUrl ? await redisAdapter(config.redisUrl) : null;
  const metrics = new Metrics();
  const kv = options.kv ?? await openKv(config.kvPath);
  const store = timedStore(options.store ?? await openStore(config, kv), metrics);
  // a database without Servana's tables (or ours) stops here, naming what is missing
  await store.ping();
  if (config.seedFile) {
    await loadFixtureFile(store, config.seedFile);
    log("info", "fixture loaded", { file: config.seedFile });
  }

  const verifierSettings = verifierOptionsFor(config);
  if (verifierSettings.usingDevSecret) log("warn", "using the insecure development JWT secret");
  if (verifierSettings.usingDevCustomerSecret) {
    log("warn", "using the insecure development customer token secret");
  }
  const verifier = new TokenVerifier(verifierSettings.options);
  const customerVerifier = verifierSettings.customerSecret === null
    ? null
    : new CustomerTokenVerifier({ secret: verifierSettings.customerSecret });

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
    // SOCKET_REQUIRE_HEADER_TOKEN: no Bearer header or token cookie, no session
    allowRequest: config.engineLimits.requireHeaderToken
      ? requireHeaderCredential({ cookieNames: config.auth.cookieNames })
      : undefined,
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
  deferRecovery(io);
  // a session stops being pending (engine caps and deadline) once socket.io
  // admitted it, i.e. the auth middleware passed
  io.of("/").on("connection", (socket) => {
    (socket.conn as unknown as EngineSocket).markAuthenticated();
  });

  const presence = new TimedPresence(kv, metrics, { ttlMs: config.heartbeatTimeout });
  const presenceFeed = new PresenceFeed(io, presence, {
    intervalMs: config.presenceBroadcastIntervalMs,
    kv,
    sweepEveryMs: Math.max(1000, Math.min(10_000, Math.floor(config.heartbeatTimeout / 2))),
  });
  const members = new Membership(kv);
  const availability = new Availability(kv, {
    mirror: scale ? loggingMirror(scale.keys) : null,
    // a dropped connection that comes back within the recovery window keeps the agent's status
    rememberMs: config.recoveryWindowMs,
  });
  const pending = new Set<Promise<unknown>>();
  function track<T>(work: Promise<T>): Promise<T> {
    pending.add(work);
    work.then(() => pending.delete(work), () => pending.delete(work));
    return work;
  }
  const cache = backendCache(scale ? scale.keys : null);
  const queue = new QueueDrain({
    store,
    availability,
    members,
    kv,
    maxActive: config.queueMaxActive,
    onAssigned: (group) => announceAssignment({ io, store, backendCache: cache }, group),
  });
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
      customerVerifier,
      people: store,
      cookieNames: config.auth.cookieNames,
      allowedOrigins: config.corsOrigins,
      failLimiter: new FailLimiter({ limit: config.auth.failLimit }),
    }),
    members,
    availability,
    queue,
    backendCache: cache,
    securityLog: new LogThrottle(),
    metrics,
    track,
  };
  registerHandlers(io, services);
  await members.start({
    onReaped: (gone) => {
      for (const person of gone) {
        track(
          store.getPerson(person).then((found) =>
            availabilityOnLastDisconnect(
              services,
              found ?? { ...person, firstName: "", lastName: "" },
            )
          ),
        ).catch((error) => log("warn", "reaped availability failed", { error: String(error) }));
      }
    },
  });
  presenceFeed.start();
  const stoppers = [
    startRoomStatsPush(io, { store, presence, intervalMs: config.roomStatsIntervalMs }),
    startAvailabilityRefresh(services, { everyMs: AVAILABILITY_REFRESH_MS }),
    startAccessWatch(services, { everyMs: config.accessRecheckMs }),
  ];
  if (scale) {
    const adapter = io.of("/").adapter as unknown as { serverCount(): Promise<number> };
    stoppers.push(startSharedKvCheck({
      redisServers: () => adapter.serverCount(),
      kvProcesses: () => members.liveProcessCount(),
    }, { everyMs: SHARED_KV_CHECK_MS, kvPath: config.kvPath }));
  }
  metrics.sockets.collect(() => {
    const counts = new Map<string, number>();
    for (const socket of io.of("/").sockets.values()) {
      const key = `${socket.conn.transport.name}|${socket.data.person?.role ?? "unknown"}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return [...counts].map(([key, n]) => {
      const [transport, role] = key.split("|");
      return [{ transport, role }, n];
    });
  });
  metrics.rooms.collect(() => [[{}, io.of("/").adapter.rooms.size]]);

  const development = config.appEnv === "development";
  const devTokens: DevTokens = {
    agent: development && verifierSettings.usingDevSecret
      ? (authId) =>
        mintToken({ authId }, {
          secret: verifierSettings.options.secret!,
          issuer: config.auth.issuer ?? undefined,
          audience: config.auth.audience,
        })
      : null,
    customer: development && verifierSettings.usingDevCustomerSecret
      ? (customer) => mintCustomerToken(customer, { secret: verifierSettings.customerSecret! })
      : null,
  };
  const devLogin = devTokens.agent || devTokens.customer
    ? devLoginHandler({
      getPerson: (ref) => store.getPerson(ref),
      mintAgent: devTokens.agent,
      mintCustomer: devTokens.customer,
      cookieName: config.auth.cookieNames[0],
      allowedOrigins: config.corsOrigins,
    })
    : null;

  let closing = false;
  const engineHandler = engine.handler();
  const http = routes({
    ready: () => store.ping(),
    closing: () => closing,
    storeKind: store.kind,
    metrics,
    metricsToken: config.metricsToken,
    metricsPublic: config.metricsPublic,
    demo: demoRoutes(config, { devLogin: devLogin !== null }),
    devLogin,
  });

  function handler(req: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> {
    const { pathname } = new URL(req.url);
    if (!engine.matches(pathname)) return http(req);
    // new handshakes are refused; open sessions are served until they are closed
    if (closing && !new URL(req.url).searchParams.has("sid")) {
      return Response.json({ code: 3, message: "Server shutting down" }, { status: 503 });
    }
    return engineHandler(req, info);
  }

  async function close(): Promise<void> {
    if (closing) return;
    closing = true;
    for (const stop of stoppers) stop();
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
    await members.close();
    await store.close();
    await scale?.close();
    try {
      kv.close();
    } catch {
      // already closed by the KV store
    }
  }

  return { handler, close, io, engine, services, devTokens };
}
