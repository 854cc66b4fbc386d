/**
 * Optimistic KV writes shared by presence, rate limits and the KV store:
 * read, `atomic().check(...)`, commit, and on a conflict read again. Several
 * processes sharing one KV file (SQLite) may also see a transient "database
 * is locked" error, which is retried the same way.
 *
 * @module
 */

/** Whether a KV error is the transient "database is locked" of a shared SQLite file. */
export function isKvBusy(error: unknown): boolean {
  return error instanceof Error && /database is (locked|busy)/i.test(error.message);
}

/**
 * Commits an atomic operation: true when it went through, false on a failed
 * check or a busy database (the caller re-reads and retries).
 */
export async function tryCommit(op: Deno.AtomicOperation): Promise<boolean> {
  return (await commitResult(op)) !== null;
}

/**
 * Commits an atomic operation: its result (with the new versionstamp) when
 * it went through, null on a failed check or a busy database.
 */
export async function commitResult(op: Deno.AtomicOperation): Promise<Deno.KvCommitResult | null> {
  try {
    const result = await op.commit();
    return result.ok ? result : null;
  } catch (error) {
    if (isKvBusy(error)) return null;
    throw error;
  }
}

/** Short random pause after the first few attempts, so that writers on one key spread out. */
export function backoff(attempt: number): Promise<void> {
  if (attempt <= 3) return Promise.resolve();
  const ms = Math.random() * Math.min(20, attempt);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Options of {@linkcode retryCommit}. */
export interface RetryOptions {
  /** Attempts before giving up (default 100). */
  maxAttempts?: number;
  /** Names what was written, for the error. */
  what: string;
}

/**
 * Runs `attempt` until it returns a result; `null` means "conflicted, read
 * again". A busy database counts as a conflict. Throws after `maxAttempts`.
 */
export async function retryCommit<T>(
  attempt: () => Promise<T | null>,
  options: RetryOptions,
): Promise<T> {
  const max = options.maxAttempts ?? 100;
  let lastError: unknown = undefined;
  for (let n = 1; n <= max; n++) {
    try {
      const result = await attempt();
      if (result !== null) return result;
    } catch (error) {
      if (!isKvBusy(error)) throw error;
      lastError = error;
    }
    await backoff(n);
  }
  throw new Error(`too many conflicting commits on ${options.what}`, { cause: lastError });
}

/**
 * The entries a process wrote last, each with the versionstamp of that
 * write, at most `max` (the oldest dropped first). A caller that writes the
 * same key again commits with `check(entry)` on what it took from here
 * instead of reading the key first; when anyone wrote the key since (or it
 * expired) the check fails, and the caller reads as usual.
 */
export class RecentWrites<T> {
  readonly #entries = new Map<string, Deno.KvEntry<T>>();
  readonly #max: number;

  constructor(options: { max: number }) {
    this.#max = options.max;
  }

  /** Remembers that `value` was written at `key` with `versionstamp`. */
  remember(key: Deno.KvKey, value: T, versionstamp: string): void {
    const id = JSON.stringify(key);
    this.#entries.delete(id);
    this.#entries.set(id, { key, value, versionstamp });
    if (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!);
  }

  /** The remembered entry of `key`, forgotten as it is handed out; undefined when none. */
  take(key: Deno.KvKey): Deno.KvEntry<T> | undefined {
    const id = JSON.stringify(key);
    const entry = this.#entries.get(id);
    this.#entries.delete(id);
    return entry;
  }
}
