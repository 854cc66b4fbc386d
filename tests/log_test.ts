import assert from "node:assert/strict";
import { isDebug, log, LogThrottle, security, setDebug, setLogSink } from "../src/log.ts";

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

/** A settable clock. */
function clock(start: number): { now: () => number; set: (t: number) => void } {
  let t = start;
  return { now: () => t, set: (next) => (t = next) };
}

Deno.test("LogThrottle: one security line per scope and event per window", async (t) => {
  const c = clock(1_000_000);
  const throttle = new LogThrottle({ windowMs: 10_000, now: c.now });
  const lines: Record<string, unknown>[] = [];
  const write = (fn: () => void) => lines.push(...capture(fn));

  await t.step("the first line is written as a security line with its fields", () => {
    write(() => throttle.security("socket-a", "access_denied", { chatGroupId: 456 }));
    assert.equal(lines.length, 1);
    assert.equal(lines[0].msg, "security");
    assert.equal(lines[0].event, "access_denied");
    assert.equal(lines[0].level, "warn");
    assert.equal(lines[0].chatGroupId, 456);
    assert.equal("suppressed" in lines[0], false);
  });

  await t.step("repeats within the window are suppressed", () => {
    for (let i = 0; i < 5; i++) {
      c.set(1_000_000 + i * 1000);
      write(() => throttle.security("socket-a", "access_denied", { chatGroupId: 456 }));
    }
    c.set(1_000_000 + 9_999);
    write(() => throttle.security("socket-a", "access_denied", { chatGroupId: 456 }));
    assert.equal(lines.length, 1);
  });

  await t.step("another event of the scope, and another scope, are lines of their own", () => {
    write(() => throttle.security("socket-a", "rate_limit", { event: "x" }));
    write(() => throttle.security("socket-b", "access_denied", {}));
    assert.deepEqual(lines.slice(1).map((l) => l.event), ["rate_limit", "access_denied"]);
    assert.equal(throttle.size, 2);
  });

  await t.step("after the window: one line carrying how many were suppressed", () => {
    c.set(1_000_000 + 10_000);
    write(() => throttle.security("socket-a", "access_denied", { chatGroupId: 457 }));
    assert.equal(lines.length, 4);
    assert.equal(lines[3].event, "access_denied");
    assert.equal(lines[3].chatGroupId, 457);
    assert.equal(lines[3].suppressed, 6);
  });

  await t.step("the count starts again with the new window", () => {
    c.set(1_000_000 + 15_000);
    write(() => throttle.security("socket-a", "access_denied"));
    c.set(1_000_000 + 20_000);
    write(() => throttle.security("socket-a", "access_denied"));
    assert.equal(lines.length, 5);
    assert.equal(lines[4].suppressed, 1);
    c.set(1_000_000 + 30_000);
    write(() => throttle.security("socket-a", "access_denied"));
    assert.equal(lines.length, 6);
    assert.equal("suppressed" in lines[5], false);
  });

  await t.step("forget: the scope's next line is written at once, without a count", () => {
    write(() => throttle.security("socket-b", "access_denied"));
    write(() => throttle.security("socket-b", "access_denied"));
    assert.equal(lines.length, 7); // the second is within socket-b's window
    throttle.forget("socket-b");
    assert.equal(throttle.size, 1);
    write(() => throttle.security("socket-b", "access_denied"));
    assert.equal(lines.length, 8);
    assert.equal(lines[7].event, "access_denied");
    assert.equal("suppressed" in lines[7], false);
    throttle.forget("never-seen");
    assert.equal(throttle.size, 2);
  });
});

Deno.test("LogThrottle: memory stays bounded by maxKeys, the oldest scope dropped", () => {
  const throttle = new LogThrottle({ windowMs: 60_000, maxKeys: 3, now: () => 0 });
  const lines = capture(() => {
    for (const scope of ["a", "b", "c", "d"]) throttle.security(scope, "auth_failure");
    // "a" was dropped: written again; "d" is held: suppressed
    throttle.security("a", "auth_failure");
    throttle.security("d", "auth_failure");
  });
  assert.equal(throttle.size, 3);
  assert.equal(lines.length, 5);
});

Deno.test("LogThrottle: auth_success lines are info like security()", () => {
  const throttle = new LogThrottle({ now: () => 0 });
  const [line] = capture(() => throttle.security("1.2.3.4", "auth_success", { kind: "agent" }));
  assert.deepEqual([line.msg, line.event, line.level, line.kind], [
    "security",
    "auth_success",
    "info",
    "agent",
  ]);
});
