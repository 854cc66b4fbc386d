/**
 * Rate limiting shared by every server process, and a per-process typing
 * throttle.
 *
 * {@linkcode RateLimiter} keeps an exact sliding window (a log of the
 * timestamps of the allowed calls) for each key in Deno KV under
 * `["ratelimit", ...key]`. Every change is written with
 * `kv.atomic().check(...)` and retried on conflict, so several processes
 * sharing one KV database enforce one limit exactly: at most `limit` calls are
 * allowed in any interval of `windowMs`, also across a window boundary.
 *
 * {@linkcode TypingThrottle} is an in-memory map per process (typing events
 * are short-lived and not worth a KV round trip); it prunes itself without
 * timers.
 *
 * @module
 */

import { commitResult, RecentWrites, retryCommit } from "./kv_retry.ts";

/** A limit: at most `limit` calls in any interval of `windowMs` milliseconds. */
export interface RateLimitRule {
  limit: number;
  windowMs: number;
}

/** The outcome of {@linkcode RateLimiter.consume}. */
export interface RateLimitResult {
  /** Whether the call is allowed (and was counted). */
  allowed: boolean;
  /** How many more calls are allowed right now (0 when denied). */
  remaining: number;
  /** When denied: milliseconds until one more call will be allowed; 0 when allowed. */
  retryAfterMs: number;
  /**
   * True only for the first denied call within a window (at most once per
   * `windowMs` per key, across all processes), so that the caller logs a
   * violation once per window.
   */
  firstDenial: boolean;
}

/** Options of {@linkcode RateLimiter}. */
export interface RateLimiterOptions {
  /** Clock in milliseconds since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
  /** How many times a conflicting commit is retried before giving up. Default 100. */
  maxAttempts?: number;
}

/** A key part of a rate limit key, e.g. `["sendMessage", userId]`. */
export type RateLimitKeyPart = string | number;

/**
 * Largest `limit` accepted: the log stores one number per allowed call and a
 * KV value holds at most 64 KiB.
 */
export const MAX_RATE_LIMIT = 4000;

/** The value stored per key. Exported for tests and tooling only. */
export interface RateLimitState {
  /** Timestamps (ms) of the allowed calls still inside the window, ascending. */
  hits: number[];
  /** Time of the last denial reported with `firstDenial: true`, if any. */
  deniedAt?: number;
}

/** Prefix of every KV key written by {@linkcode RateLimiter}. */
export const RATE_LIMIT_PREFIX = "ratelimit";

/**
 * Exact sliding-window rate limiter over Deno KV.
 *
 * Round trips per {@linkcode RateLimiter.consume}: one read, plus one atomic
 * commit when the state changes (an allowed call, or the first denial of a
 * window). A denial that is not the first of its window costs the read only.
 * A conflicting commit (another process or call changed the same key) is
 * retried from the read, and so is a "database is locked" error of a SQLite
 * file shared by several processes.
 *
 * The entry this instance wrote last for a key is remembered with its
 * versionstamp (at most {@linkcode REMEMBERED_KEYS} keys): the next call
 * decides from it and commits with a check of that versionstamp, without the
 * read. When anyone else wrote the key since (or it expired), the check
 * fails and the call reads as usual; a decision not to write is never taken
 * from memory.
 *
 * Each key's entry is written with `expireIn = windowMs`: every write happens
 * at the time of the newest timestamp it holds, so when it expires no
 * timestamp in it is inside the window any more. There is one entry per key,
 * never more, and it holds at most `limit` timestamps.
 */
export class RateLimiter {
  readonly #kv: Deno.Kv;
  readonly #now: () => number;
  readonly #maxAttempts: number;
  readonly #remembered = new RecentWrites<RateLimitState>({ max: REMEMBERED_KEYS });

  constructor(kv: Deno.Kv, options: RateLimiterOptions = {}) {
    this.#kv = kv;
    this.#now = options.now ?? Date.now;
    this.#maxAttempts = options.maxAttempts ?? 100;
  }

  /**
   * Counts one call against `rule` for `key` if it is allowed.
   *
   * @throws {RangeError} when the rule or key is invalid.
   * @throws {Error} when the commit kept conflicting (or the database stayed
   * locked by another process) `maxAttempts` times.
   */
  async consume(
    key: readonly RateLimitKeyPart[],
    rule: RateLimitRule,
  ): Promise<RateLimitResult> {
    validateRule(rule);
    validateKey(key);
    const kvKey: Deno.KvKey = [RATE_LIMIT_PREFIX, ...key];
    const known = this.#remembered.take(kvKey);
    if (known !== undefined) {
      const decision = decide(known.value, rule, this.#now());
      if (decision.next !== null && await this.#write(known, decision.next, rule)) {
        return decision.result;
      }
    }
    return await retryCommit(async () => {
      const entry = await this.#kv.get<RateLimitState>(kvKey);
      const decision = decide(entry.value, rule, this.#now());
      if (decision.next === null) return decision.result;
      return await this.#write(entry, decision.next, rule) ? decision.result : null;
    }, { maxAttempts: this.#maxAttempts, what: `rate limit ${JSON.stringify(kvKey)}` });
  }

  /** Commits `next` over `entry` (checked); remembers what was written. False on a conflict. */
  async #write(
    entry: Deno.KvEntryMaybe<RateLimitState>,
    next: RateLimitState,
    rule: RateLimitRule,
  ): Promise<boolean> {
    const committed = await commitResult(
      this.#kv.atomic().check(entry).set(entry.key, next, { expireIn: rule.windowMs }),
    );
    if (committed === null) return false;
    this.#remembered.remember(entry.key, next, committed.versionstamp);
    return true;
  }
}

/** Most keys whose last write a {@linkcode RateLimiter} remembers. */
const REMEMBERED_KEYS = 10_000;

interface Decision {
  result: RateLimitResult;
  /** New state to write, or null when nothing changes. */
  next: RateLimitState | null;
}

/** Decides one call from the stored state (pure). */
function decide(state: RateLimitState | null, rule: RateLimitRule, now: number): Decision {
  const windowStart = now - rule.windowMs;
  // A timestamp t is inside the window while now - t < windowMs.
  const hits = (state?.hits ?? []).filter((t) => t > windowStart);
  const deniedAt = state?.deniedAt !== undefined && state.deniedAt > windowStart
    ? state.deniedAt
    : undefined;
  if (hits.length < rule.limit) {
    insertSorted(hits, now);
    const next: RateLimitState = { hits };
    if (deniedAt !== undefined) next.deniedAt = deniedAt;
    return {
      result: {
        allowed: true,
        remaining: rule.limit - hits.length,
        retryAfterMs: 0,
        firstDenial: false,
      },
      next,
    };
  }
  // Denied: one more call is allowed once the oldest hit that keeps the count
  // at the limit has left the window.
  const blocking = hits[hits.length - rule.limit];
  const retryAfterMs = Math.max(1, blocking + rule.windowMs - now);
  const firstDenial = deniedAt === undefined;
  return {
    result: { allowed: false, remaining: 0, retryAfterMs, firstDenial },
    next: firstDenial ? { hits, deniedAt: now } : null,
  };
}

function insertSorted(values: number[], value: number): void {
  let i = values.length;
  while (i > 0 && values[i - 1] > value) i--;
  values.splice(i, 0, value);
}

function validateRule(rule: RateLimitRule): void {
  if (!Number.isInteger(rule.limit) || rule.limit < 1 || rule.limit > MAX_RATE_LIMIT) {
    throw new RangeError(`rate limit: limit must be an integer in 1..${MAX_RATE_LIMIT}`);
  }
  if (!Number.isFinite(rule.windowMs) || rule.windowMs < 1) {
    throw new RangeError("rate limit: windowMs must be a positive number");
  }
}

function validateKey(key: readonly RateLimitKeyPart[]): void {
  if (key.length === 0) throw new RangeError("rate limit: key must not be empty");
  for (const part of key) {
    if (typeof part !== "string" && (typeof part !== "number" || !Number.isFinite(part))) {
      throw new RangeError("rate limit: key parts must be strings or finite numbers");
    }
  }
}

/** Identifier of a user or a chat group in {@linkcode TypingThrottle}. */
export type TypingId = string | number;

/** Options of {@linkcode TypingThrottle}. */
export interface TypingThrottleOptions {
  /** Minimum time between two relayed events of the same kind. Default 1000 ms. */
  intervalMs?: number;
  /** Prune entries older than `intervalMs` every this many calls. Default 256. */
  pruneEvery?: number;
}

interface TypingEntry {
  isTyping: boolean;
  at: number;
}

/**
 * Drops a `typing` / `stopTyping` event repeated by the same user in the same
 * room within `intervalMs` of the last one relayed.
 *
 * State is per process (an in-memory map): with several processes each one
 * throttles the sockets it serves, which is enough since a user's burst of
 * events on one socket arrives at one process.
 *
 * Rules: an event is relayed unless the last relayed event of that user in
 * that room was of the same kind (`isTyping`) and less than `intervalMs` ago.
 * The interval is measured from the last relayed event, so someone typing
 * continuously is relayed once per interval (receivers' indicators stay up),
 * and a `stopTyping` right after `typing` always gets through.
 *
 * Memory: every `pruneEvery` calls, entries older than `intervalMs` (which can
 * no longer drop anything) are deleted; {@linkcode TypingThrottle.forget}
 * removes a user's entries at disconnect. No timers are used.
 */
export class TypingThrottle {
  readonly #intervalMs: number;
  readonly #pruneEvery: number;
  readonly #byUser = new Map<TypingId, Map<TypingId, TypingEntry>>();
  #size = 0;
  #calls = 0;

  constructor(options: TypingThrottleOptions = {}) {
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#pruneEvery = Math.max(1, options.pruneEvery ?? 256);
  }

  /** Whether this event should be relayed to the room; records it if so. */
  shouldRelay(
    userId: TypingId,
    chatGroupId: TypingId,
    isTyping: boolean,
    now: number = Date.now(),
  ): boolean {
    this.#calls++;
    if (this.#calls >= this.#pruneEvery) {
      this.#calls = 0;
      this.prune(now);
    }
    let rooms = this.#byUser.get(userId);
    const last = rooms?.get(chatGroupId);
    if (last && last.isTyping === isTyping && now - last.at < this.#intervalMs) return false;
    if (!rooms) {
      rooms = new Map();
      this.#byUser.set(userId, rooms);
    }
    if (!last) this.#size++;
    rooms.set(chatGroupId, { isTyping, at: now });
    return true;
  }

  /** Deletes every entry older than `intervalMs`; returns how many were deleted. */
  prune(now: number = Date.now()): number {
    let deleted = 0;
    for (const [userId, rooms] of this.#byUser) {
      for (const [roomId, entry] of rooms) {
        if (now - entry.at >= this.#intervalMs) {
          rooms.delete(roomId);
          deleted++;
        }
      }
      if (rooms.size === 0) this.#byUser.delete(userId);
    }
    this.#size -= deleted;
    return deleted;
  }

  /** Removes a user's entries (all rooms, or one room): disconnect and leaveRoom cleanup. */
  forget(userId: TypingId, chatGroupId?: TypingId): void {
    const rooms = this.#byUser.get(userId);
    if (!rooms) return;
    if (chatGroupId === undefined) {
      this.#size -= rooms.size;
      this.#byUser.delete(userId);
      return;
    }
    if (rooms.delete(chatGroupId)) this.#size--;
    if (rooms.size === 0) this.#byUser.delete(userId);
  }

  /** Number of (user, room) entries held. */
  get size(): number {
    return this.#size;
  }
}
