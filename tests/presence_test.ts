import assert from "node:assert/strict";
import { Presence } from "../src/presence.ts";
import { RateLimiter } from "../src/rate_limit.ts";

const TTL = 60_000;
const T0 = Date.UTC(2024, 0, 15, 10, 30, 0);

/** A settable clock. */
function clock(start: number): { now: () => number; set: (t: number) => void } {
  let t = start;
  return {
    now: () => t,
    set: (next: number) => {
      t = next;
    },
  };
}

async function listKeys(kv: Deno.Kv, prefix: Deno.KvKey): Promise<Deno.KvKey[]> {
  const keys: Deno.KvKey[] = [];
  for await (const entry of kv.list({ prefix })) keys.push(entry.key);
  return keys;
}

/** Two KV handles on one temporary file: two server processes sharing one KV. */
async function sharedKv(): Promise<{ a: Deno.Kv; b: Deno.Kv; close: () => Promise<void> }> {
  const path = await Deno.makeTempFile({ suffix: ".sqlite" });
  const a = await Deno.openKv(path);
  const b = await Deno.openKv(path);
  return {
    a,
    b,
    close: async () => {
      a.close();
      b.close();
      await Deno.remove(path);
    },
  };
}

Deno.test("Presence: a user with two sockets stays online until the last one closes", async (t) => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const presence = new Presence(kv, { ttlMs: TTL, now: c.now });

    await t.step("first socket: came online; second socket: no new announcement", async () => {
      assert.deepEqual(
        await presence.online({ userId: 1, userType: "agent", socketId: "laptop" }),
        {
          cameOnline: true,
        },
      );
      c.set(T0 + 1000);
      assert.deepEqual(await presence.online({ userId: 1, userType: "agent", socketId: "phone" }), {
        cameOnline: false,
      });
      assert.deepEqual(await presence.list(), [
        { userId: 1, userType: "agent", lastSeen: new Date(T0 + 1000).toISOString() },
      ]);
      assert.equal(await presence.isOnline(1), true);
    });

    await t.step("closing one socket keeps the user online", async () => {
      c.set(T0 + 2000);
      assert.deepEqual(await presence.socketClosed(1, "phone"), { wentOffline: false });
      assert.equal(await presence.isOnline(1), true);
      // lastSeen is now the remaining socket's.
      assert.deepEqual(await presence.list(), [
        { userId: 1, userType: "agent", lastSeen: new Date(T0).toISOString() },
      ]);
      // Closing it again changes nothing.
      assert.deepEqual(await presence.socketClosed(1, "phone"), { wentOffline: false });
    });

    await t.step("closing the last socket: went offline, nothing left", async () => {
      assert.deepEqual(await presence.socketClosed(1, "laptop"), { wentOffline: true });
      assert.equal(await presence.isOnline(1), false);
      assert.deepEqual(await presence.list(), []);
      assert.deepEqual(await listKeys(kv, ["presence"]), []);
      assert.deepEqual(await presence.socketClosed(1, "laptop"), { wentOffline: false });
    });

    await t.step("coming back after that is announced again", async () => {
      assert.deepEqual(await presence.online({ userId: 1, userType: "agent", socketId: "tab" }), {
        cameOnline: true,
      });
    });
  } finally {
    kv.close();
  }
});

Deno.test("Presence: heartbeat keeps a socket alive, stale entries are ignored", async (t) => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const presence = new Presence(kv, { ttlMs: TTL, now: c.now });
    await presence.online({ userId: 1, userType: "agent", socketId: "a1" });
    await presence.online({ userId: 2, userType: "client", socketId: "c2" });

    await t.step("heartbeat refreshes lastSeen", async () => {
      c.set(T0 + 50_000);
      assert.equal(await presence.heartbeat(1, "a1"), true);
      assert.deepEqual(await presence.list(), [
        { userId: 1, userType: "agent", lastSeen: new Date(T0 + 50_000).toISOString() },
        { userId: 2, userType: "client", lastSeen: new Date(T0).toISOString() },
      ]);
    });

    await t.step("an entry older than ttl is left out although KV still holds it", async () => {
      c.set(T0 + TTL);
      assert.deepEqual(await presence.list(), [
        { userId: 1, userType: "agent", lastSeen: new Date(T0 + 50_000).toISOString() },
      ]);
      assert.equal(await presence.isOnline(2), false);
      assert.equal(await presence.isOnline(1), true);
      // Still stored (expiry is lazy), only the clock says it is stale.
      assert.equal((await listKeys(kv, ["presence", "users"])).length, 2);
    });

    await t.step("heartbeat of a stale or unknown socket is refused", async () => {
      assert.equal(await presence.heartbeat(2, "c2"), false);
      assert.equal(await presence.heartbeat(1, "nope"), false);
      assert.equal(await presence.heartbeat(3, "c3"), false);
      assert.equal(await presence.isOnline(2), false);
    });

    await t.step("online() again after going stale is announced again", async () => {
      assert.deepEqual(await presence.online({ userId: 2, userType: "client", socketId: "c2" }), {
        cameOnline: true,
      });
    });
  } finally {
    kv.close();
  }
});

Deno.test("Presence: offline() removes the user and every socket", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const presence = new Presence(kv, { ttlMs: TTL, now: () => T0 });
    await presence.online({ userId: 7, userType: "agent", socketId: "s1" });
    await presence.online({ userId: 7, userType: "agent", socketId: "s2" });
    await presence.online({ userId: 8, userType: "admin", socketId: "s3" });
    assert.deepEqual(await presence.offline(7), { wentOffline: true });
    assert.deepEqual(await presence.offline(7), { wentOffline: false });
    assert.deepEqual((await presence.list()).map((u) => u.userId), [8]);
    assert.equal(await presence.heartbeat(7, "s1"), false);
    assert.deepEqual(await presence.socketClosed(7, "s2"), { wentOffline: false });
    assert.deepEqual(await listKeys(kv, ["presence"]), [
      ["presence", "sockets", 8, "s3"],
      ["presence", "users", 8],
    ]);
  } finally {
    kv.close();
  }
});

Deno.test("Presence: invalid input is refused", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    assert.throws(() => new Presence(kv, { ttlMs: 0 }), RangeError);
    const presence = new Presence(kv, { ttlMs: TTL });
    await assert.rejects(
      presence.online({ userId: 1.5, userType: "agent", socketId: "s" }),
      RangeError,
    );
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      presence.online({ userId: 1, userType: "root" as any, socketId: "s" }),
      RangeError,
    );
    await assert.rejects(
      presence.online({ userId: 1, userType: "agent", socketId: "" }),
      RangeError,
    );
    await assert.rejects(presence.heartbeat(Number.NaN, "s"), RangeError);
    assert.deepEqual(await listKeys(kv, []), []);
  } finally {
    kv.close();
  }
});

Deno.test("Presence: two processes on one KV file", async (t) => {
  const shared = await sharedKv();
  try {
    const c = clock(T0);
    const a = new Presence(shared.a, { ttlMs: TTL, now: c.now });
    const b = new Presence(shared.b, { ttlMs: TTL, now: c.now });
    const users = Array.from({ length: 20 }, (_, i) => 100 + i);

    await t.step(
      "concurrent online() of two sockets: announced exactly once per user",
      async () => {
        const results = await Promise.all(users.flatMap((userId) => [
          a.online({ userId, userType: "client", socketId: `a-${userId}` }),
          b.online({ userId, userType: "client", socketId: `b-${userId}` }),
        ]));
        for (let i = 0; i < users.length; i++) {
          const announced = [results[2 * i], results[2 * i + 1]].filter((r) => r.cameOnline);
          assert.equal(announced.length, 1, `user ${users[i]}`);
        }
        assert.equal((await b.list()).length, 20);
      },
    );

    await t.step("concurrent close of both sockets: offline announced exactly once", async () => {
      const closing = users.slice(0, 10);
      const results = await Promise.all(closing.flatMap((userId) => [
        a.socketClosed(userId, `a-${userId}`),
        b.socketClosed(userId, `b-${userId}`),
      ]));
      for (let i = 0; i < closing.length; i++) {
        const announced = [results[2 * i], results[2 * i + 1]].filter((r) => r.wentOffline);
        assert.equal(announced.length, 1, `user ${closing[i]}`);
      }
      assert.deepEqual((await a.list()).map((u) => u.userId), users.slice(10));
    });

    await t.step("concurrent sweeps return each stale user exactly once", async () => {
      // User 115 keeps heartbeating through process b; the other 9 go silent.
      c.set(T0 + 30_000);
      assert.equal(await b.heartbeat(115, "b-115"), true);
      c.set(T0 + TTL + 1);
      const [fromA, fromB] = await Promise.all([a.sweep(), b.sweep()]);
      const swept = [...fromA, ...fromB].sort((x, y) => x - y);
      assert.deepEqual(swept, users.slice(10).filter((u) => u !== 115));
      assert.deepEqual(await a.sweep(), []);
      assert.deepEqual((await b.list()).map((u) => u.userId), [115]);
    });

    await t.step("the last user goes stale and is swept; nothing is left", async () => {
      c.set(T0 + 30_000 + TTL);
      assert.deepEqual(await a.sweep(), [115]);
      assert.deepEqual(await b.sweep(), []);
      assert.deepEqual(await listKeys(shared.a, ["presence"]), []);
    });
  } finally {
    await shared.close();
  }
});

Deno.test("Presence and rate limits leave nothing behind", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const presence = new Presence(kv, { ttlMs: TTL, now: c.now });
    const limiter = new RateLimiter(kv, { now: c.now });
    const status = { limit: 10, windowMs: 60_000 };
    const count = 2000;
    for (let userId = 0; userId < count; userId++) {
      await presence.online({ userId, userType: "client", socketId: `s${userId}` });
      await limiter.consume(["status", userId], status);
    }
    assert.equal((await listKeys(kv, ["presence"])).length, 2 * count);

    // A third disconnect, a third explicit userOffline, a third just vanish.
    for (let userId = 0; userId < count; userId++) {
      if (userId % 3 === 0) await presence.socketClosed(userId, `s${userId}`);
      if (userId % 3 === 1) await presence.offline(userId);
    }
    c.set(T0 + TTL);
    const swept = await presence.sweep();
    assert.equal(swept.length, Math.floor(count / 3));
    assert.deepEqual(await listKeys(kv, ["presence"]), []);

    // After the window each key used again still has exactly one entry: the
    // rate limit state does not grow with time or calls. Every write sets
    // expireIn = windowMs, so KV deletes the entry a window after the last call.
    for (let userId = 0; userId < count; userId += 100) {
      await limiter.consume(["status", userId], status);
    }
    assert.equal((await listKeys(kv, ["ratelimit"])).length, count);
  } finally {
    kv.close();
  }
});
