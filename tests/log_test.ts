import assert from "node:assert/strict";
import { isDebug, log, security, setDebug, setLogSink } from "../src/log.ts";

function capture(fn: () => void): Record<string, unknown>[] {
  const lines: string[] = [];
  const previous = setLogSink({ write: (line) => lines.push(line) });
  try {
    fn();
  } finally {
    setLogSink(previous);
  }
  return lines.map((line) => JSON.parse(line));
}

Deno.test("one JSON line per event with time, level and message", () => {
  const [line] = capture(() => log("info", "listening", { port: 3000 }));
  assert.equal(line.level, "info");
  assert.equal(line.msg, "listening");
  assert.equal(line.port, 3000);
  assert.ok(!Number.isNaN(Date.parse(String(line.time))));
});

Deno.test("debug lines only when debug is on", () => {
  const before = isDebug();
  try {
    setDebug(false);
    assert.equal(capture(() => log("debug", "hidden")).length, 0);
    setDebug(true);
    assert.equal(capture(() => log("debug", "shown")).length, 1);
  } finally {
    setDebug(before);
  }
});

Deno.test("security events: warn level except successes; event name cannot be overwritten by fields", () => {
  const lines = capture(() => {
    security("auth_success", { userId: 1 });
    security("auth_failure", { reason: "expired", event: "joinChatGroup" });
  });
  assert.deepEqual(lines.map((l) => [l.msg, l.event, l.level]), [
    ["security", "auth_success", "info"],
    ["security", "auth_failure", "warn"],
  ]);
});

Deno.test("unserializable fields do not throw", () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const [line] = capture(() => log("warn", "odd", { cyclic }));
  assert.equal(line.msg, "odd");
  assert.equal(line.unserializable, true);
});
