/**
 * Counts failed handshakes per remote address, in memory. An address with
 * `limit` failures within one window (one minute) is blocked for a cooldown:
 * its handshakes are refused without verifying anything (`AUTH_FAIL_LIMIT`).
 *
 * Memory is bounded: entries whose window and block have passed are pruned
 * (at most once per window, on a failure), and at most `maxEntries` addresses
 * are tracked (the least recently touched are dropped first; an attacker with
 * more addresses than that can push a block out). No timers: pruning happens on use, so nothing needs
 * closing.
 *
 * @module
 */

/** Options of {@linkcode FailLimiter}. */
export interface FailLimiterOptions {
  /** Failures per window that trigger a block. Default 20. */
  limit?: number;
  /** Length of the counting window, ms. Default 60 000. */
  windowMs?: number;
  /** How long a blocked address stays blocked, ms. Default 60 000. */
  blockMs?: number;
  /** Most addresses tracked at once. Default 10 000. */
  maxEntries?: number;
}

interface Entry {
  windowStart: number;
  failures: number;
  blockedUntil: number;
}

/** Per-address failed-handshake counter; see the module docs. */
export class FailLimiter {
  /** Failures per window that trigger a block. */
  readonly limit: number;
  /** Window length, ms. */
  readonly windowMs: number;
  /** Block length, ms. */
  readonly blockMs: number;
  /** Most addresses tracked. */
  readonly maxEntries: number;
  readonly #entries = new Map<string, Entry>();
  #lastPruneAt = -Infinity;

  constructor(options: FailLimiterOptions = {}) {
    this.limit = positiveInt(options.limit ?? 20, "limit");
    this.windowMs = positiveInt(options.windowMs ?? 60_000, "windowMs");
    this.blockMs = positiveInt(options.blockMs ?? 60_000, "blockMs");
    this.maxEntries = positiveInt(options.maxEntries ?? 10_000, "maxEntries");
  }

  /** Number of addresses currently tracked. */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether handshakes from `address` are refused right now. */
  isBlocked(address: string, now: number = Date.now()): boolean {
    const entry = this.#entries.get(address);
    return entry !== undefined && entry.blockedUntil > now;
  }

  /**
   * Counts one failed handshake. Returns true when this failure blocked the
   * address (the `limit`-th failure of its window).
   */
  recordFailure(address: string, now: number = Date.now()): boolean {
    if (now - this.#lastPruneAt >= this.windowMs) this.prune(now);
    let entry = this.#entries.get(address);
    if (entry !== undefined) {
      this.#entries.delete(address); // re-inserted below: most recently touched last
    } else {
      if (this.#entries.size >= this.maxEntries) this.#evictOldest();
      entry = { windowStart: now, failures: 0, blockedUntil: 0 };
    }
    this.#entries.set(address, entry);
    if (entry.blockedUntil > now) return false;
    if (now - entry.windowStart >= this.windowMs) {
      entry.windowStart = now;
      entry.failures = 0;
    }
    entry.failures++;
    if (entry.failures >= this.limit) {
      entry.blockedUntil = now + this.blockMs;
      entry.failures = 0;
      entry.windowStart = entry.blockedUntil;
      return true;
    }
    return false;
  }

  /** Forgets the failures of an address that authenticated (an active block stays). */
  recordSuccess(address: string, now: number = Date.now()): void {
    const entry = this.#entries.get(address);
    if (entry !== undefined && entry.blockedUntil <= now) this.#entries.delete(address);
  }

  /** Drops every entry whose window and block have both passed. */
  prune(now: number = Date.now()): void {
    this.#lastPruneAt = now;
    for (const [address, entry] of this.#entries) {
      if (entry.blockedUntil <= now && now - entry.windowStart >= this.windowMs) {
        this.#entries.delete(address);
      }
    }
  }

  #evictOldest(): void {
    const oldest = this.#entries.keys().next();
    if (oldest.done !== true) this.#entries.delete(oldest.value);
  }
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`FailLimiter: ${name} must be a positive integer`);
  }
  return value;
}
