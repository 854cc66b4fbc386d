/**
 * Who is online, stored in Deno KV so that several server processes sharing
 * one KV database agree.
 *
 * A user is online while at least one of their sockets is live: recorded by
 * {@linkcode Presence.online} and refreshed by {@linkcode Presence.heartbeat}
 * within `ttlMs` (`SOCKET_HEARTBEAT_TIMEOUT`). Keys:
 *
 * People are named by kind and id ({@linkcode personKey}: `agent:5`, `client:5`).
 *
 * - `["presence", "sockets", person, socketId]` → `{ userType, lastSeen }`,
 *   written with `expireIn: ttlMs` (refreshed by every heartbeat).
 * - `["presence", "users", person]` → `{ userType, lastSeen }` where
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
import { parsePersonKey, personKey, type PersonRef } from "./store/mod.ts";

/** Roles that can be online. */
export type UserType = "client" | "agent" | "admin";

/** The user types accepted by {@linkcode Presence.online}. */
export const USER_TYPES: readonly UserType[] = ["client", "agent", "admin"];

/** One entry of `onlineUsersUpdate.onlineUsers` and of `onlineUsersList`. */
export interface OnlineUser {
  /** `sys_user_id` or `client_id`; `userType` tells which. */
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
  person: PersonRef;
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
    validatePerson(entry.person);
    validateSocketId(entry.socketId);
    if (!USER_TYPES.includes(entry.userType)) {
      throw new RangeError("presence: userType must be client, agent or admin");
    }
    const userKey = userKeyOf(entry.person);
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
        .set(socketKeyOf(entry.person, entry.socketId), record, { expireIn: this.#ttlMs })
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
  async heartbeat(person: PersonRef, socketId: string): Promise<boolean> {
    validatePerson(person);
    validateSocketId(socketId);
    const userKey = userKeyOf(person);
    const socketKey = socketKeyOf(person, socketId);
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
  async socketClosed(person: PersonRef, socketId: string): Promise<{ wentOffline: boolean }> {
    validatePerson(person);
    validateSocketId(socketId);
    const userKey = userKeyOf(person);
    return await this.#retry(async () => {
      const [user, sockets] = await Promise.all([
        this.#kv.get<PresenceRecord>(userKey),
        this.#listSockets(personKey(person)),
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
  async offline(person: PersonRef): Promise<{ wentOffline: boolean }> {
    validatePerson(person);
    const userKey = userKeyOf(person);
    return await this.#retry(async () => {
      const [user, sockets] = await Promise.all([
        this.#kv.get<PresenceRecord>(userKey),
        this.#listSockets(personKey(person)),
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
   * ordered by kind and id. Users whose newest heartbeat is older than `ttlMs` are
   * left out even when KV has not expired or swept them yet.
   */
  async list(): Promise<OnlineUser[]> {
    const users: OnlineUser[] = [];
    const now = this.#now();
    for await (const { person, record } of this.#userRecords()) {
      if (!this.#isLive(record, now)) continue;
      const ref = parsePersonKey(person);
      if (ref === null) continue;
      users.push({
        userId: ref.id,
        userType: record.userType,
        lastSeen: new Date(record.lastSeen).toISOString(),
      });
    }
    // keys sort as text ("agent:123" < "agent:40"): order by kind, then id
    return users.sort((a, b) =>
      kindOrder(a.userType) - kindOrder(b.userType) || a.userId - b.userId
    );
  }

  /** Whether the user has a live socket. */
  async isOnline(person: PersonRef): Promise<boolean> {
    validatePerson(person);
    const user = await this.#kv.get<PresenceRecord>(userKeyOf(person));
    return user.value !== null && this.#isLive(user.value, this.#now());
  }

  /**
   * Finds users announced online whose sockets have all gone stale, removes
   * them (user key and socket keys, atomically) and returns their ids so the
   * caller announces them offline. When several processes sweep at once each
   * stale user is returned by exactly one of them.
   */
  async sweep(): Promise<PersonRef[]> {
    const candidates: string[] = [];
    const now = this.#now();
    for await (const { person, record } of this.#userRecords()) {
      if (!this.#isLive(record, now)) candidates.push(person);
    }
    const swept: PersonRef[] = [];
    for (let i = 0; i < candidates.length; i += SWEEP_CONCURRENCY) {
      const batch = candidates.slice(i, i + SWEEP_CONCURRENCY);
      const removed = await Promise.all(batch.map((person) => this.#sweepUser(person)));
      for (let j = 0; j < batch.length; j++) {
        const ref = parsePersonKey(batch[j]);
        if (removed[j] && ref !== null) swept.push(ref);
      }
    }
    return swept;
  }

  /** Removes one user if still stale; true when this call removed them. */
  async #sweepUser(person: string): Promise<boolean> {
    const userKey: Deno.KvKey = [PRESENCE_PREFIX, "users", person];
    return await this.#retry(async () => {
      const [user, sockets] = await Promise.all([
        this.#kv.get<PresenceRecord>(userKey),
        this.#listSockets(person),
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

  async #listSockets(person: string): Promise<Deno.KvEntry<PresenceRecord>[]> {
    const sockets: Deno.KvEntry<PresenceRecord>[] = [];
    const entries = this.#kv.list<PresenceRecord>(
      { prefix: [PRESENCE_PREFIX, "sockets", person] },
      { batchSize: 1000 },
    );
    for await (const entry of entries) sockets.push(entry);
    return sockets;
  }

  #isLive(record: PresenceRecord, now: number): boolean {
    return now - record.lastSeen < this.#ttlMs;
  }

  /** Every user key, ordered by person key. */
  async *#userRecords(): AsyncGenerator<{ person: string; record: PresenceRecord }> {
    const entries = this.#kv.list<PresenceRecord>(
      { prefix: [PRESENCE_PREFIX, "users"] },
      { batchSize: 1000 },
    );
    for await (const entry of entries) {
      yield { person: entry.key[2] as string, record: entry.value };
    }
  }

  /** Retries a read-check-commit until it goes through ("presence" in errors). */
  #retry<T>(attempt: () => Promise<T | null>): Promise<T> {
    return retryCommit(attempt, { maxAttempts: this.#maxAttempts, what: "presence" });
  }
}

/** Agents and admins (one id space) before customers. */
function kindOrder(userType: UserType): number {
  return userType === "client" ? 1 : 0;
}

function userKeyOf(person: PersonRef): Deno.KvKey {
  return [PRESENCE_PREFIX, "users", personKey(person)];
}

function socketKeyOf(person: PersonRef, socketId: string): Deno.KvKey {
  return [PRESENCE_PREFIX, "sockets", personKey(person), socketId];
}

function validatePerson(person: PersonRef): void {
  if (
    (person?.kind !== "agent" && person?.kind !== "client") || !Number.isSafeInteger(person.id)
  ) {
    throw new RangeError("presence: a person is an agent or client with an integer id");
  }
}

function validateSocketId(socketId: string): void {
  if (typeof socketId !== "string" || socketId.length === 0) {
    throw new RangeError("presence: socketId must be a non-empty string");
  }
}
