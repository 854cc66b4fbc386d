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
