/**
 * Who is online, stored in Deno KV so that several server processes sharing
 * one KV database agree.
 *
 * A user is online while at least one of their sockets is live: recorded by
 * {@linkcode Presence.online} and refreshed by {@linkcode Presence.heartbeat}
 * within `ttlMs` (`SOCKET_HEARTBEAT_TIMEOUT`). Keys:
 *
 * - `["presence", "sockets", userId, socketId]` → `{ userType, lastSeen }`,
 *   written with `expireIn: ttlMs` (refreshed by every heartbeat).
 * - `["presence", "users", userId]` → `{ userType, lastSeen }` where
 *   `lastSeen` is the newest `lastSeen` of the user's sockets. It exists from
 *   the moment the user was announced online until the moment they are
 *   announced offline (last socket closed, `offline()`, or `sweep()`), and is
 *   written with `expireIn: userKeyExpireMs` (default 5 × ttl) as a safety net
 *   when no process sweeps any more.
 *
 * Consistency: every operation that writes or deletes a socket key also checks
 * and rewrites (or deletes) the user key in the same atomic commit, so the
 * user key's versionstamp serialises all changes to one user across
 * processes. That is what makes `cameOnline` and `wentOffline` true for
 * exactly one caller. A conflicting commit is retried from the read, and so is
 * the "database is locked" error of a SQLite file shared by several processes.
 *
 * KV expiry is lazy (an expired entry may still be read for a while), so every
 * read also compares `lastSeen` with the clock: an entry older than `ttlMs` is
 * stale and treated as gone.
 *
 * @module
 */

import { retryCommit } from "./kv_retry.ts";

/** Roles that can be online. */
export type UserType = "client" | "agent" | "admin";

/** The user types accepted by {@linkcode Presence.online}. */
export const USER_TYPES: readonly UserType[] = ["client", "agent", "admin"];

/** One entry of `onlineUsersUpdate.onlineUsers` and of `onlineUsersList`. */
export interface OnlineUser {
  userId: number;
  userType: UserType;
  /** ISO 8601 time of the user's newest heartbeat on any socket. */
  lastSeen: string;
}

/** Options of {@linkcode Presence}. */
export interface PresenceOptions {
  /** A socket without a heartbeat for this long is stale (`SOCKET_HEARTBEAT_TIMEOUT`). */
  ttlMs: number;
  /** Clock in milliseconds since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
  /**
   * `expireIn` of the per-user key, a safety net used only when no process
   * sweeps. Must exceed `ttlMs` plus the sweep interval. Default `5 * ttlMs`.
   */
  userKeyExpireMs?: number;
  /** How many times a conflicting commit is retried before giving up. Default 100. */
  maxAttempts?: number;
}

/** What {@linkcode Presence.online} records. */
export interface OnlineEntry {
  userId: number;
  userType: UserType;
  socketId: string;
}

/** Value stored under the user key and under each socket key. Exported for tests only. */
export interface PresenceRecord {
  userType: UserType;
  /** Milliseconds since the epoch. */
  lastSeen: number;
}

/** First part of every KV key written by {@linkcode Presence}. */
export const PRESENCE_PREFIX = "presence";

/** At most this many socket keys are deleted in one commit (KV allows 1000 mutations). */
const MAX_SOCKET_DELETES = 990;

/** Stale users removed in parallel by one sweep. */
const SWEEP_CONCURRENCY = 32;

/**
 * Presence of users and their sockets in Deno KV.
 *
 * KV round trips per method (uncontended; a conflict repeats the method's
 * read and commit):
 *
 * | method | reads | commits |
 * | --- | --- | --- |
 * | `online` | 1 (`get` user) | 1 |
 * | `heartbeat` | 1 (`getMany` socket + user) | 1 (0 when the socket is not live) |
 * | `socketClosed` | 2 in parallel (`get` user, `list` the user's sockets) | 1 (0 when nothing to remove) |
 * | `offline` | 2 in parallel (`get` user, `list` the user's sockets) | 1 (0 when not online) |
 * | `list` | 1 `list` per 1000 online users | 0 |
 * | `isOnline` | 1 | 0 |
 * | `sweep` | 1 `list` per 1000 users, then per stale user 2 in parallel | 1 per stale user |
 *
 * The class owns no timers: the caller schedules {@linkcode Presence.sweep}.
 */
export class Presence {
  readonly #kv: Deno.Kv;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #userKeyExpireMs: number;
  readonly #maxAttempts: number;

  constructor(kv: Deno.Kv, options: PresenceOptions) {
    if (!Number.isFinite(options.ttlMs) || options.ttlMs < 1) {
      throw new RangeError("presence: ttlMs must be a positive number");
    }
    this.#kv = kv;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
    this.#userKeyExpireMs = options.userKeyExpireMs ?? options.ttlMs * 5;
    if (!(this.#userKeyExpireMs > this.#ttlMs)) {
      throw new RangeError("presence: userKeyExpireMs must exceed ttlMs");
    }
    this.#maxAttempts = options.maxAttempts ?? 100;
  }

  /**
   * Records that this socket of the user is online. `cameOnline` is true when
   * the user was not online before (no user key, or only stale sockets): the
   * caller then announces `userStatusUpdated` / `onlineUsersUpdate`. Under
   * concurrent calls from several processes exactly one gets `true`.
   */
  async online(entry: OnlineEntry): Promise<{ cameOnline: boolean }> {
    validateUserId(entry.userId);
    validateSocketId(entry.socketId);
    if (!USER_TYPES.includes(entry.userType)) {
      throw new RangeError("presence: userType must be client, agent or admin");
    }
    const userKey = userKeyOf(entry.userId);
    return await this.#retry(async () => {
      const user = await this.#kv.get<PresenceRecord>(userKey);
      const now = this.#now();
      const cameOnline = user.value === null || !this.#isLive(user.value, now);
      const record: PresenceRecord = { userType: entry.userType, lastSeen: now };
      // lastSeen of the user is the newest of their sockets (clocks of processes may differ).
      const userRecord: PresenceRecord = {
        userType: entry.userType,
        lastSeen: user.value === null || cameOnline ? now : Math.max(user.value.lastSeen, now),
      };
      const commit = await this.#kv.atomic()
        .check(user)
        .set(userKey, userRecord, { expireIn: this.#userKeyExpireMs })
        .set(socketKeyOf(entry.userId, entry.socketId), record, { expireIn: this.#ttlMs })
        .commit();
      return commit.ok ? { cameOnline } : null;
    });
  }

  /**
   * Refreshes `lastSeen` and the expiry of a live socket. Returns false, and
   * writes nothing, when the socket is unknown or already stale (it may have
   * been swept and announced offline): the caller should then call
   * {@linkcode Presence.online} again.
   */
  async heartbeat(userId: number, socketId: string): Promise<boolean> {
    validateUserId(userId);
    validateSocketId(socketId);
    const userKey = userKeyOf(userId);
    const socketKey = socketKeyOf(userId, socketId);
    return await this.#retry(async () => {
      const [user, socket] = await this.#kv.getMany<[PresenceRecord, PresenceRecord]>([
        userKey,
        socketKey,
      ]);
      const now = this.#now();
      if (user.value === null || socket.value === null || !this.#isLive(socket.value, now)) {
        return false;
      }
      const commit = await this.#kv.atomic()
        .check(user)
        .set(userKey, { ...user.value, lastSeen: Math.max(user.value.lastSeen, now) }, {
          expireIn: this.#userKeyExpireMs,
        })
        .set(socketKey, { ...socket.value, lastSeen: now }, { expireIn: this.#ttlMs })
        .commit();
      return commit.ok ? true : null;
    });
  }

  /**
   * Removes one socket (disconnect). `wentOffline` is true when it was the
   * user's last live socket: the user key is removed in the same commit, and
   * under concurrent closes exactly one caller gets `true`.
   */
  async socketClosed(userId: number, socketId: string): Promise<{ wentOffline: boolean }> {
    validateUserId(userId);
    validateSocketId(socketId);
    const userKey = userKeyOf(userId);
    return await this.#retry(async () => {
      const [user, sockets] = await Promise.all([
        this.#kv.get<PresenceRecord>(userKey),
        this.#listSockets(userId),
      ]);
      const now = this.#now();
      const closing = sockets.find((s) => s.key[3] === socketId);
      const others = sockets.filter((s) => s !== closing && this.#isLive(s.value, now));
      if (user.value === null) {
        // Not announced online (already swept or offline): drop a leftover key.
        if (!closing) return { wentOffline: false };
        const commit = await this.#kv.atomic().check(user).delete(closing.key).commit();
        return commit.ok ? { wentOffline: false } : null;
      }
      if (others.length === 0) {
        const op = this.#kv.atomic().check(user).delete(userKey);
        for (const s of sockets.slice(0, MAX_SOCKET_DELETES)) op.delete(s.key);
        const commit = await op.commit();
        return commit.ok ? { wentOffline: true } : null;
      }
      if (!closing) return { wentOffline: false };
      const lastSeen = Math.max(...others.map((s) => s.value.lastSeen));
      const commit = await this.#kv.atomic()
        .check(user)
        .delete(closing.key)
        .set(userKey, { ...user.value, lastSeen }, { expireIn: this.#userKeyExpireMs })
        .commit();
      return commit.ok ? { wentOffline: false } : null;
    });
  }

  /**
   * Removes the user and all their sockets (explicit `userOffline`).
   * `wentOffline` is true when the user was online (announced) before.
   */
  async offline(userId: number): Promise<{ wentOffline: boolean }> {
    validateUserId(userId);
    const userKey = userKeyOf(userId);
    return await this.#retry(async () => {
      const [user, sockets] = await Promise.all([
        this.#kv.get<PresenceRecord>(userKey),
        this.#listSockets(userId),
      ]);
      if (user.value === null && sockets.length === 0) return { wentOffline: false };
      const op = this.#kv.atomic().check(user).delete(userKey);
      for (const s of sockets.slice(0, MAX_SOCKET_DELETES)) op.delete(s.key);
      const commit = await op.commit();
      return commit.ok ? { wentOffline: user.value !== null } : null;
    });
  }

  /**
   * Online users, one entry per user (lastSeen = newest of their sockets),
   * ordered by userId. Users whose newest heartbeat is older than `ttlMs` are
   * left out even when KV has not expired or swept them yet.
   */
  async list(): Promise<OnlineUser[]> {
    const users: OnlineUser[] = [];
    const now = this.#now();
    for await (const { userId, record } of this.#userRecords()) {
      if (!this.#isLive(record, now)) continue;
      users.push({
        userId,
        userType: record.userType,
        lastSeen: new Date(record.lastSeen).toISOString(),
      });
    }
    return users;
  }

  /** Whether the user has a live socket. */
  async isOnline(userId: number): Promise<boolean> {
    validateUserId(userId);
    const user = await this.#kv.get<PresenceRecord>(userKeyOf(userId));
    return user.value !== null && this.#isLive(user.value, this.#now());
  }

  /**
   * Finds users announced online whose sockets have all gone stale, removes
   * them (user key and socket keys, atomically) and returns their ids so the
   * caller announces them offline. When several processes sweep at once each
   * stale user is returned by exactly one of them.
   */
  async sweep(): Promise<number[]> {
    const candidates: number[] = [];
    const now = this.#now();
    for await (const { userId, record } of this.#userRecords()) {
      if (!this.#isLive(record, now)) candidates.push(userId);
    }
    const swept: number[] = [];
    for (let i = 0; i < candidates.length; i += SWEEP_CONCURRENCY) {
      const batch = candidates.slice(i, i + SWEEP_CONCURRENCY);
      const removed = await Promise.all(batch.map((userId) => this.#sweepUser(userId)));
      for (let j = 0; j < batch.length; j++) if (removed[j]) swept.push(batch[j]);
    }
    return swept;
  }

  /** Removes one user if still stale; true when this call removed them. */
  async #sweepUser(userId: number): Promise<boolean> {
    const userKey = userKeyOf(userId);
    return await this.#retry(async () => {
      const [user, sockets] = await Promise.all([
        this.#kv.get<PresenceRecord>(userKey),
        this.#listSockets(userId),
      ]);
      const now = this.#now();
      // Gone (another process won) or alive again (online() since the scan).
      if (user.value === null || this.#isLive(user.value, now)) return false;
      const op = this.#kv.atomic().check(user).delete(userKey);
      for (const s of sockets.slice(0, MAX_SOCKET_DELETES)) op.delete(s.key);
      const commit = await op.commit();
      return commit.ok ? true : null;
    });
  }

  async #listSockets(userId: number): Promise<Deno.KvEntry<PresenceRecord>[]> {
    const sockets: Deno.KvEntry<PresenceRecord>[] = [];
    const entries = this.#kv.list<PresenceRecord>(
      { prefix: [PRESENCE_PREFIX, "sockets", userId] },
      { batchSize: 1000 },
    );
    for await (const entry of entries) sockets.push(entry);
    return sockets;
  }

  #isLive(record: PresenceRecord, now: number): boolean {
    return now - record.lastSeen < this.#ttlMs;
  }

  /** Every user key, ordered by user id. */
  async *#userRecords(): AsyncGenerator<{ userId: number; record: PresenceRecord }> {
    const entries = this.#kv.list<PresenceRecord>(
      { prefix: [PRESENCE_PREFIX, "users"] },
      { batchSize: 1000 },
    );
    for await (const entry of entries) {
      yield { userId: entry.key[2] as number, record: entry.value };
    }
  }

  /** Retries a read-check-commit until it goes through ("presence" in errors). */
  #retry<T>(attempt: () => Promise<T | null>): Promise<T> {
    return retryCommit(attempt, { maxAttempts: this.#maxAttempts, what: "presence" });
  }
}

function userKeyOf(userId: number): Deno.KvKey {
  return [PRESENCE_PREFIX, "users", userId];
}

function socketKeyOf(userId: number, socketId: string): Deno.KvKey {
  return [PRESENCE_PREFIX, "sockets", userId, socketId];
}

function validateUserId(userId: number): void {
  if (!Number.isSafeInteger(userId)) throw new RangeError("presence: userId must be an integer");
}

function validateSocketId(socketId: string): void {
  if (typeof socketId !== "string" || socketId.length === 0) {
    throw new RangeError("presence: socketId must be a non-empty string");
  }
}
