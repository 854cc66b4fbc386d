/**
 * Pending sessions: those that completed the Engine.IO handshake but have not
 * been marked authenticated by the application yet. Anyone can open them
 * without a token, so their number is capped per client address and in
 * total, and each is closed when its deadline passes.
 *
 * One timer serves every pending session (deadlines are handshake time +
 * one fixed timeout, so the oldest session is always the next to expire).
 *
 * @module
 */

/** Limits on pending sessions (see {@linkcode PendingSessions}). */
export interface PendingLimits {
  /** Ms after its handshake at which a session still pending is closed; 0 = never. */
  timeoutMs: number;
  /** Most pending sessions per client address (`Infinity` = no cap). */
  maxPerAddress: number;
  /** Most pending sessions in total (`Infinity` = no cap). */
  maxTotal: number;
}

/** What the registry needs of a session. */
export interface PendingSession {
  /** The client's address (after trusted proxies). */
  readonly remoteAddress: string;
  /** Closes the session because its pending deadline passed. */
  expirePending(): void;
}

/** Why a handshake is refused: the per-address cap or the total cap. */
export type PendingRefusal = "address" | "total";

interface Entry {
  deadline: number;
  address: string;
}

/** The pending sessions of one engine. */
export class PendingSessions {
  readonly limits: Readonly<PendingLimits>;
  #sessions = new Map<PendingSession, Entry>();
  #byAddress = new Map<string, number>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;

  constructor(limits: PendingLimits) {
    this.limits = limits;
  }

  /** Number of pending sessions. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Number of pending sessions of one client address. */
  countFor(address: string): number {
    return this.#byAddress.get(address) ?? 0;
  }

  /** Whether one more pending session from `address` is refused, and by which cap. */
  refusal(address: string): PendingRefusal | null {
    if (this.#sessions.size >= this.limits.maxTotal) return "total";
    if (this.countFor(address) >= this.limits.maxPerAddress) return "address";
    return null;
  }

  /** Registers a new session as pending. */
  add(session: PendingSession): void {
    if (this.#sessions.has(session)) return;
    const address = session.remoteAddress;
    const timeout = this.limits.timeoutMs;
    const deadline = timeout > 0 ? performance.now() + timeout : Infinity;
    this.#sessions.set(session, { deadline, address });
    this.#byAddress.set(address, this.countFor(address) + 1);
    if (deadline !== Infinity && this.#timer === undefined) this.#arm(deadline);
  }

  /** Whether a session is pending. */
  has(session: PendingSession): boolean {
    return this.#sessions.has(session);
  }

  /** A session stopped being pending (authenticated or closed). */
  remove(session: PendingSession): void {
    const entry = this.#sessions.get(session);
    if (!entry) return;
    this.#sessions.delete(session);
    const left = this.countFor(entry.address) - 1;
    if (left > 0) this.#byAddress.set(entry.address, left);
    else this.#byAddress.delete(entry.address);
    if (this.#sessions.size === 0) this.#disarm();
  }

  /** Forgets every session and stops the timer (the engine closes them). */
  clear(): void {
    this.#sessions.clear();
    this.#byAddress.clear();
    this.#disarm();
  }

  #arm(at: number): void {
    this.#disarm();
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, at - performance.now()));
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    const expired: PendingSession[] = [];
    let next = Infinity;
    // insertion order is deadline order
    for (const [session, entry] of this.#sessions) {
      if (entry.deadline > now) {
        next = entry.deadline;
        break;
      }
      expired.push(session);
    }
    for (const session of expired) {
      this.remove(session);
      session.expirePending();
    }
    if (next !== Infinity && this.#sessions.size > 0 && next < this.#timerAt) this.#arm(next);
  }
}
