/**
 * Structured logging: one JSON line per event on stderr.
 *
 * The security log (`security(...)`) records authentication results,
 * authorization denials, identity mismatches and rate-limit violations.
 * Tokens are never logged: callers pass reasons and addresses only.
 *
 * @module
 */

/** Severity of a log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** Where log lines go; tests replace it to capture lines. */
export interface LogSink {
  write(line: string): void;
}

const encoder = new TextEncoder();

function stderrSink(): LogSink {
  return {
    write(line: string) {
      try {
        Deno.stderr.writeSync(encoder.encode(line + "\n"));
      } catch {
        // stderr closed: nothing sensible to do
      }
    },
  };
}

let sink: LogSink = stderrSink();
let debugEnabled = false;

/** Replaces the sink (tests) and returns the previous one. */
export function setLogSink(next: LogSink): LogSink {
  const previous = sink;
  sink = next;
  return previous;
}

/** Turns debug lines on or off (`SOCKET_DEBUG`). */
export function setDebug(enabled: boolean): void {
  debugEnabled = enabled;
}

/** Whether debug lines are written. */
export function isDebug(): boolean {
  return debugEnabled;
}

/** Writes one JSON line: `{ time, level, msg, ...fields }`. */
export function log(level: LogLevel, msg: string, fields: LogFields = {}): void {
  if (level === "debug" && !debugEnabled) return;
  let line: string;
  try {
    line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields });
  } catch {
    line = JSON.stringify({ time: new Date().toISOString(), level, msg, unserializable: true });
  }
  sink.write(line);
}

/**
 * Writes one security event line: `{ time, level, msg: "security", event, ...fields }`.
 * `event` names what happened, e.g. `auth_success`, `auth_failure`,
 * `access_denied`, `identity_mismatch`, `rate_limit`.
 */
export function security(event: string, fields: LogFields = {}): void {
  const level: LogLevel = event === "auth_success" ? "info" : "warn";
  log(level, "security", { ...fields, event });
}

/** Options of {@linkcode LogThrottle}. */
export interface LogThrottleOptions {
  /** At most one line per key per this many ms (default 10 000). */
  windowMs?: number;
  /** Keys tracked at once; the oldest are dropped beyond it (default 10 000). */
  maxKeys?: number;
  /** Clock, ms (tests). */
  now?: () => number;
}

/**
 * Throttles repeated security lines: one line per scope (a socket, an
 * address) and event per window; the next line after the window says how
 * many were suppressed. A client that repeats a refused request cannot turn
 * each refusal into a line on stderr.
 */
export class LogThrottle {
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #scopes = new Map<string, Map<string, { until: number; suppressed: number }>>();

  constructor(options: LogThrottleOptions = {}) {
    this.#windowMs = options.windowMs ?? 10_000;
    this.#maxKeys = options.maxKeys ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Writes a security line for `scope` and `event` unless one was written within the window. */
  security(scope: string, event: string, fields: LogFields = {}): void {
    const now = this.#now();
    let events = this.#scopes.get(scope);
    const held = events?.get(event);
    if (held !== undefined && held.until > now) {
      held.suppressed++;
      return;
    }
    if (events === undefined) {
      if (this.#scopes.size >= this.#maxKeys) {
        this.#scopes.delete(this.#scopes.keys().next().value!);
      }
      events = new Map();
      this.#scopes.set(scope, events);
    }
    const suppressed = held?.suppressed ?? 0;
    events.set(event, { until: now + this.#windowMs, suppressed: 0 });
    security(event, suppressed > 0 ? { ...fields, suppressed } : fields);
  }

  /** Forgets a scope (a closed socket). */
  forget(scope: string): void {
    this.#scopes.delete(scope);
  }

  /** Scopes held (tests). */
  get size(): number {
    return this.#scopes.size;
  }
}
