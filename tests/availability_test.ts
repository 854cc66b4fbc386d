/**
 * src/availability.ts: agents' availability in KV (connected keeps another
 * tab's status, the last disconnect deletes it) and its mirror in the
 * original backend's Redis key `user_presence:<id>`, exactly in the
 * backend's JSON shape with a 900 s expiry (a fake mirror records the calls).
 */

import assert from "node:assert/strict";
import { Availability, loggingMirror, type PresenceMirror } from "../src/availability.ts";
import { setLogSink } from "../src/log.ts";
import type { Agent } from "../src/store/mod.ts";

const T0 = Date.UTC(2026, 11, 2, 9, 0, 0);

function agent(id: number, departments: number[]): Agent {
  return {
    kind: "agent",
    id,
    role: "agent",
    authId: null,
    email: `agent${id}@servana.example`,
    roleName: "Agent",
    departments,
    firstName: "A",
    lastName: "B",
    image: null,
    active: true,
  };
}

const JOHN = agent(123, [1]);
const JANE = agent(124, [2]);

type MirrorCall = ["set", string, string, number] | ["del", string];

function fakeMirror(): PresenceMirror & { calls: MirrorCall[] } {
  const calls: MirrorCall[] = [];
  return {
    calls,
    set(key, value, ttlSec) {
      calls.push(["set", key, value, ttlSec]);
      return Promise.resolve();
    },
    del(key) {
      calls.push(["del", key]);
      return Promise.resolve();
    },
  };
}

function clock(start = T0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

Deno.test("Availability: connect, change, another tab, last disconnect", async (t) => {
  const kv = await Deno.openKv(":memory:");
  const c = clock();
  const mirror = fakeMirror();
  const availability = new Availability(kv, { mirror, now: c.now });
  try {
    await t.step("not connected: no entry", async () => {
      assert.equal(await availability.get(123), null);
      assert.deepEqual(await availability.list(), []);
    });

    await t.step("first connection: accepting_chats, mirrored in the backend's shape", async () => {
      const { record, changed } = await availability.connected(JOHN, "tab-1");
      assert.equal(changed, true);
      const expected = {
        userId: 123,
        userPresence: "accepting_chats",
        socketId: "tab-1",
        userType: "agent",
        lastSeen: iso(T0),
        updatedAt: iso(T0),
        deptIds: [1],
      };
      assert.deepEqual(record, expected);
      assert.deepEqual(await availability.get(123), expected);
      assert.deepEqual(mirror.calls, [
        ["set", "user_presence:123", JSON.stringify(expected), 900],
      ]);
      // the exact key order of the backend's JSON
      assert.equal(
        mirror.calls[0][2],
        '{"userId":123,"userPresence":"accepting_chats","socketId":"tab-1","userType":"agent",' +
          `"lastSeen":"${iso(T0)}","updatedAt":"${iso(T0)}","deptIds":[1]}`,
      );
    });

    await t.step("set: the new status, from that socket", async () => {
      c.advance(1000);
      const record = await availability.set(JOHN, "not_accepting_chats", "tab-1");
      assert.equal(record.userPresence, "not_accepting_chats");
      assert.equal(record.updatedAt, iso(T0 + 1000));
      assert.equal(record.lastSeen, iso(T0 + 1000));
      assert.deepEqual(JSON.parse((mirror.calls.at(-1) as string[])[2]), record);
    });

    await t.step("another tab connecting keeps the status the agent chose", async () => {
      c.advance(1000);
      const { record, changed } = await availability.connected(JOHN, "tab-2");
      assert.equal(changed, false);
      assert.deepEqual(record, {
        userId: 123,
        userPresence: "not_accepting_chats",
        socketId: "tab-1",
        userType: "agent",
        lastSeen: iso(T0 + 2000),
        updatedAt: iso(T0 + 1000),
        deptIds: [1],
      });
      assert.deepEqual(mirror.calls.at(-1), [
        "set",
        "user_presence:123",
        JSON.stringify(record),
        900,
      ]);
    });

    await t.step("heartbeat: a fresh lastSeen and current departments, status kept", async () => {
      c.advance(1000);
      const moved = { ...JOHN, departments: [1, 2] };
      const record = await availability.heartbeat(moved);
      assert.equal(record?.userPresence, "not_accepting_chats");
      assert.equal(record?.lastSeen, iso(T0 + 3000));
      assert.equal(record?.updatedAt, iso(T0 + 1000));
      assert.deepEqual(record?.deptIds, [1, 2]);
      assert.deepEqual(mirror.calls.at(-1)?.slice(0, 2), ["set", "user_presence:123"]);
      assert.equal(mirror.calls.at(-1)?.[3], 900);
    });

    await t.step("agents are listed each with their own entry", async () => {
      await availability.connected(JANE, "jane-1");
      assert.deepEqual((await availability.list()).map((r) => [r.userId, r.userPresence]), [
        [123, "not_accepting_chats"],
        [124, "accepting_chats"],
      ]);
    });

    await t.step("the last disconnect deletes the entry and the mirror key", async () => {
      const before = mirror.calls.length;
      await availability.disconnected(123);
      assert.equal(await availability.get(123), null);
      assert.deepEqual(mirror.calls.slice(before), [["del", "user_presence:123"]]);
      assert.deepEqual((await availability.list()).map((r) => r.userId), [124]);
      // a heartbeat after it does not bring the entry back
      assert.equal(await availability.heartbeat(JOHN), null);
      assert.equal(await availability.get(123), null);
      assert.deepEqual(mirror.calls.slice(before), [["del", "user_presence:123"]]);
    });

    await t.step("connecting again starts from accepting_chats (nothing remembered)", async () => {
      const { record, changed } = await availability.connected(JOHN, "tab-3");
      assert.equal(changed, true);
      assert.equal(record.userPresence, "accepting_chats");
      assert.equal(record.socketId, "tab-3");
    });
  } finally {
    kv.close();
  }
});

Deno.test("Availability: rememberMs restores the status of a dropped connection", async (t) => {
  const kv = await Deno.openKv(":memory:");
  const c = clock();
  const availability = new Availability(kv, { rememberMs: 60_000, now: c.now });
  try {
    await availability.connected(JOHN, "tab-1");
    await availability.set(JOHN, "not_accepting_chats", "tab-1");
    await availability.disconnected(123);
    assert.equal(await availability.get(123), null);

    await t.step("within the window: the status comes back", async () => {
      c.advance(59_999);
      const { record, changed } = await availability.connected(JOHN, "tab-2");
      assert.equal(changed, true);
      assert.equal(record.userPresence, "not_accepting_chats");
      assert.equal(record.socketId, "tab-2");
    });

    await t.step("after the window: accepting_chats", async () => {
      await availability.disconnected(123);
      c.advance(60_000);
      const { record } = await availability.connected(JOHN, "tab-3");
      assert.equal(record.userPresence, "accepting_chats");
    });

    await t.step("without a mirror nothing is mirrored and nothing fails", async () => {
      await availability.heartbeat(JOHN);
      await availability.disconnected(123);
      await availability.disconnected(999);
      assert.equal(await availability.get(999), null);
    });
  } finally {
    kv.close();
  }
});

Deno.test("loggingMirror: never rejects, one line when writes fail, one when they work again", async () => {
  const lines: Record<string, unknown>[] = [];
  const previous = setLogSink({ write: (line) => lines.push(JSON.parse(line)) });
  try {
    let down = false;
    const written: string[] = [];
    const mirror = loggingMirror({
      set: (key, value, ttlSec) => {
        if (down) return Promise.reject(new Error("ECONNREFUSED"));
        written.push(`${key}=${value}/${ttlSec}`);
        return Promise.resolve("OK");
      },
      del: (key) => {
        if (down) return Promise.reject(new Error("ECONNREFUSED"));
        written.push(`-${key}`);
        return Promise.resolve(1);
      },
    });
    await mirror.set("user_presence:1", "{}", 900);
    assert.deepEqual(written, ["user_presence:1={}/900"]);
    assert.equal(lines.length, 0);
    down = true;
    await mirror.set("user_presence:1", "{}", 900);
    await mirror.del("user_presence:1");
    await mirror.set("user_presence:2", "{}", 900);
    assert.deepEqual(lines.map((l) => [l.level, l.msg]), [
      ["warn", "redis presence key write failed"],
    ]);
    assert.match(String(lines[0].error), /ECONNREFUSED/);
    down = false;
    await mirror.del("user_presence:1");
    await mirror.set("user_presence:3", "{}", 900);
    assert.deepEqual(lines.map((l) => l.msg), [
      "redis presence key write failed",
      "redis presence keys written again",
    ]);
    assert.deepEqual(written, [
      "user_presence:1={}/900",
      "-user_presence:1",
      "user_presence:3={}/900",
    ]);
  } finally {
    setLogSink(previous);
  }
});
