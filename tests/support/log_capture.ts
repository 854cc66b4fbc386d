/**
 * Test helper: captures the JSON log lines of src/log.ts (see `setLogSink`)
 * for the duration of a test.
 *
 * @module
 */

import { type LogSink, setLogSink } from "../../src/log.ts";

/** Log lines captured since {@linkcode captureLog}, until `restore()`. */
export interface LogCapture {
  /** Every line as written (JSON text). */
  raw: string[];
  /** Every line, parsed. */
  lines(): Record<string, unknown>[];
  /** The parsed `security` lines whose `event` is `event`. */
  security(event: string): Record<string, unknown>[];
  /** Puts the previous sink back. */
  restore(): void;
}

/** Starts collecting every log line; call `restore()` (in a `finally`) when done. */
export function captureLog(): LogCapture {
  const raw: string[] = [];
  const sink: LogSink = {
    write(line: string) {
      raw.push(line);
    },
  };
  const previous = setLogSink(sink);
  function lines(): Record<string, unknown>[] {
    return raw.map((line) => JSON.parse(line) as Record<string, unknown>);
  }
  return {
    raw,
    lines,
    security(event: string) {
      return lines().filter((line) => line.msg === "security" && line.event === event);
    },
    restore() {
      setLogSink(previous);
    },
  };
}
