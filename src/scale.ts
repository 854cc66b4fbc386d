/**
 * Scale-out on Redis: socket.io's official Redis Streams adapter
 * (`@socket.io/redis-streams-adapter`) over the `redis` client, so that every
 * broadcast, room operation, `fetchSockets` and `disconnectSockets` reaches
 * every server process. Presence and rate limits stay in Deno KV.
 *
 * The adapter talks to Redis through {@linkcode AdapterClient}, a narrow
 * wrapper around a `redis` client that decides what happens while Redis is
 * unreachable, so that the process keeps serving its own sockets:
 *
 * - stream appends (`XADD`, every cross-process broadcast) fail at once, and
 *   the adapter then delivers to this process's sockets only (without it,
 *   socket.io would wait for Redis before even the local delivery);
 * - fire-and-forget commands (PUB/SUB publishes, recovery session writes)
 *   are dropped instead of raising unhandled rejections;
 * - the server count used by `fetchSockets` is 1 (this process only);
 * - session recovery lookups fail (the client gets a fresh session).
 *
 * The stream reader and the subscriber wait in the client's offline queue
 * and resume by themselves when Redis is back (the stream is read from the
 * last offset seen; PUB/SUB channels are re-subscribed by the client).
 * One line is logged when Redis becomes unreachable and one when it is back,
 * not one per reconnection attempt.
 *
 * @module
 */

import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";
import { log } from "./log.ts";

/** The parts of a `redis` client (v4 API and later) this module uses. */
interface RedisConnection {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  duplicate(): RedisConnection;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  close(): Promise<void>;
  destroy(): void;
  xAdd(
    key: string,
    id: string,
    message: Record<string, string>,
    options?: unknown,
  ): Promise<string>;
  xRead(streams: unknown, options?: unknown): Promise<unknown>;
  xRange(key: string, start: string, end: string): Promise<unknown>;
  set(key: string, value: string, options?: unknown): Promise<unknown>;
  del(key: string): Promise<unknown>;
  publish(channel: string, message: unknown): Promise<number>;
  sPublish(channel: string, message: unknown): Promise<number>;
  subscribe(channels: string[], listener: unknown, bufferMode?: boolean): Promise<void>;
  sSubscribe(channels: string | string[], listener: unknown, bufferMode?: boolean): Promise<void>;
  sendCommand(args: string[]): Promise<unknown>;
  multi(): RedisMulti;
}

/** A `MULTI` block as the adapter uses it (`GETDEL` of a recovery session). */
interface RedisMulti {
  get(key: string): RedisMulti;
  del(key: string): RedisMulti;
  exec(): Promise<unknown[]>;
}

/** Thrown (as a rejection) by commands refused while Redis is unreachable. */
export class RedisUnavailableError extends Error {
  constructor() {
    super("Redis is unreachable");
    this.name = "RedisUnavailableError";
  }
}

/** A `MULTI` block that fails: Redis is unreachable. */
class UnavailableMulti implements RedisMulti {
  get(_key: string): RedisMulti {
    return this;
  }
  del(_key: string): RedisMulti {
    return this;
  }
  exec(): Promise<unknown[]> {
    return Promise.reject(new RedisUnavailableError());
  }
}

/** Shared by a client and its duplicates: every connection, and whether we closed them. */
interface Family {
  members: RedisConnection[];
  closed: boolean;
}

/**
 * A `redis` client as the Redis Streams adapter sees it, with an explicit
 * behaviour while Redis is unreachable (see the module documentation).
 * It exposes exactly the methods the adapter calls.
 */
export class AdapterClient {
  readonly #inner: RedisConnection;
  readonly #family: Family;

  /** Wraps `inner`; duplicates share `family` so that closing reaches all of them. */
  constructor(inner: RedisConnection, family: Family) {
    this.#inner = inner;
    this.#family = family;
    family.members.push(inner);
  }

  /** Whether the connection is up. */
  get isReady(): boolean {
    return this.#inner.isReady;
  }

  /** A new connection with the same options (the adapter's reader and subscriber). */
  duplicate(): AdapterClient {
    return new AdapterClient(this.#inner.duplicate(), this.#family);
  }

  /** Connects (retrying until Redis answers). */
  async connect(): Promise<AdapterClient> {
    try {
      await this.#inner.connect();
    } catch (error) {
      // closed while still connecting (shutdown during start-up): not an error
      if (!this.#family.closed) throw error;
    }
    return this;
  }

  /** Adds an event listener to the underlying client. */
  on(event: string, listener: (...args: unknown[]) => void): AdapterClient {
    this.#inner.on(event, listener);
    return this;
  }

  /** Closes this connection at once (idempotent). */
  disconnect(): Promise<void> {
    this.#inner.destroy();
    return Promise.resolve();
  }

  /** Appends to the stream; refused at once while Redis is unreachable. */
  xAdd(
    key: string,
    id: string,
    message: Record<string, string>,
    options?: unknown,
  ): Promise<string> {
    if (!this.#inner.isReady) return Promise.reject(new RedisUnavailableError());
    return this.#inner.xAdd(key, id, message, options);
  }

  /**
   * Blocking stream read. While Redis is unreachable it waits in the offline
   * queue (no busy loop); once closed it never settles, which ends the
   * adapter's read loop.
   */
  xRead(streams: unknown, options?: unknown): Promise<unknown> {
    if (this.#family.closed) return new Promise(() => {});
    return this.#inner.xRead(streams, options);
  }

  /** Stream range (session recovery); refused while Redis is unreachable. */
  xRange(key: string, start: string, end: string): Promise<unknown> {
    if (!this.#inner.isReady) return Promise.reject(new RedisUnavailableError());
    return this.#inner.xRange(key, start, end);
  }

  /** `MULTI` (session recovery); its `exec` fails while Redis is unreachable. */
  multi(): RedisMulti {
    if (!this.#inner.isReady) return new UnavailableMulti();
    return this.#inner.multi();
  }

  /** Stores a recovery session; dropped while Redis is unreachable. */
  set(key: string, value: string, options?: unknown): Promise<unknown> {
    if (!this.#inner.isReady) return Promise.resolve(null);
    return this.#inner.set(key, value, options).catch(() => null);
  }

  /** Publishes on a PUB/SUB channel; dropped while Redis is unreachable. */
  publish(channel: string, message: unknown): Promise<number> {
    if (!this.#inner.isReady) return Promise.resolve(0);
    return this.#inner.publish(channel, message).catch(() => 0);
  }

  /** Sharded publish; dropped while Redis is unreachable. */
  sPublish(channel: string, message: unknown): Promise<number> {
    if (!this.#inner.isReady) return Promise.resolve(0);
    return this.#inner.sPublish(channel, message).catch(() => 0);
  }

  /** Subscribes (kept across reconnections by the client). */
  subscribe(channels: string[], listener: unknown, bufferMode?: boolean): Promise<void> {
    return this.#inner.subscribe(channels, listener, bufferMode).catch((error) => {
      log("warn", "redis subscribe failed", { error: String(error) });
    });
  }

  /** Sharded subscribe (kept across reconnections by the client). */
  sSubscribe(channels: string | string[], listener: unknown, bufferMode?: boolean): Promise<void> {
    return this.#inner.sSubscribe(channels, listener, bufferMode).catch((error) => {
      log("warn", "redis subscribe failed", { error: String(error) });
    });
  }

  /**
   * A raw command. The adapter sends only `PUBSUB NUMSUB channel` (how many
   * servers listen); while Redis is unreachable the answer is 1 (this
   * process), so `fetchSockets` returns this process's sockets.
   */
  sendCommand(args: string[]): Promise<unknown> {
    const alone = [args[2] ?? "", 1];
    if (!this.#inner.isReady) return Promise.resolve(alone);
    return this.#inner.sendCommand(args).catch(() => alone);
  }
}

/** Options of {@linkcode redisAdapter}. */
export interface RedisAdapterOptions {
  /** Name of the Redis stream and prefix of the PUB/SUB channels; default `servana`. */
  streamName?: string;
  /** Maximum stream length (approximate trimming); default 10,000. */
  maxLen?: number;
  /** Give up the first connection after this many ms; default 10,000. */
  connectTimeoutMs?: number;
  /** Called with `false` when Redis becomes unreachable and `true` when it is back. */
  onStateChange?: (up: boolean) => void;
}

/** The adapter and its Redis connections. */
export interface RedisScale {
  /** Pass as `adapter` to socket.io's `Server`. */
  adapter: ReturnType<typeof createAdapter>;
  /** The client the adapter publishes with (tests, diagnostics). */
  client: AdapterClient;
  /** Whether the publishing connection to Redis is up. */
  isUp(): boolean;
  /**
   * Plain key commands on the same connection (the backend's presence keys):
   * they reject while Redis is unreachable.
   */
  keys: {
    set(key: string, value: string, ttlSec: number): Promise<unknown>;
    del(key: string): Promise<unknown>;
  };
  /** Closes every Redis connection; call after socket.io's `close()`. */
  close(): Promise<void>;
}

/** Retry delay after `retries` failed attempts: 100 ms doubling up to 2 s, never giving up. */
function retryDelay(retries: number): number {
  return Math.min(100 * 2 ** retries, 2000) + Math.floor(Math.random() * 100);
}

/** `redis://user:secret@host:port/0` → `redis://host:port/0` for logs. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = "";
    parsed.password = "";
    return parsed.toString();
  } catch {
    return "redis://(unparsable)";
  }
}

/**
 * Connects to Redis at `url` and builds the socket.io Redis Streams adapter.
 * Rejects when Redis does not answer within `connectTimeoutMs` at start-up;
 * later outages are survived (see the module documentation).
 */
export async function redisAdapter(
  url: string,
  options: RedisAdapterOptions = {},
): Promise<RedisScale> {
  const target = redactUrl(url);
  const inner = createClient({
    url,
    socket: { reconnectStrategy: retryDelay, connectTimeout: 5000 },
  }) as unknown as RedisConnection;
  const family: Family = { members: [], closed: false };
  const client = new AdapterClient(inner, family);

  let up = false;
  let downSince = 0;
  inner.on("error", (error) => {
    if (!up) return; // still starting, or already reported
    up = false;
    downSince = Date.now();
    log("warn", "redis unreachable: cross-process delivery paused, serving local sockets", {
      redis: target,
      error: String(error),
    });
    options.onStateChange?.(false);
  });
  let attempts = 0;
  inner.on("reconnecting", () => {
    attempts++;
    log("debug", "redis reconnecting", { redis: target, attempt: attempts });
  });
  inner.on("ready", () => {
    attempts = 0;
    if (up) return;
    const wasDown = downSince > 0;
    up = true;
    if (wasDown) {
      log("info", "redis reachable again: cross-process delivery resumed", {
        redis: target,
        downMs: Date.now() - downSince,
      });
      options.onStateChange?.(true);
    }
  });

  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Redis at ${target} did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([client.connect(), timeout]);
  } catch (error) {
    family.closed = true;
    inner.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  up = true;

  const streamName = options.streamName ?? "servana";
  const adapter = createAdapter(client, {
    streamName,
    channelPrefix: streamName,
    sessionKeyPrefix: `${streamName}:session:`,
    maxLen: options.maxLen ?? 10_000,
  });
  log("info", "socket.io adapter: redis streams", { redis: target, stream: streamName });

  return {
    adapter,
    client,
    isUp: () => up,
    keys: {
      set(key, value, ttlSec) {
        if (!inner.isReady) return Promise.reject(new RedisUnavailableError());
        return inner.set(key, value, { EX: ttlSec });
      },
      del(key) {
        if (!inner.isReady) return Promise.reject(new RedisUnavailableError());
        return inner.del(key);
      },
    },
    async close() {
      if (family.closed) return;
      family.closed = true;
      // The main connection may still be writing recovery sessions of the
      // sockets socket.io just closed: let it drain briefly when it is up.
      if (inner.isReady) {
        let drainTimer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          inner.close().catch(() => {}),
          new Promise((resolve) => drainTimer = setTimeout(resolve, 1000)),
        ]);
        clearTimeout(drainTimer);
      }
      for (const member of family.members) member.destroy();
    },
  };
}
