import assert from "node:assert/strict";
import { Presence } from "../src/presence.ts";
import { RateLimiter } from "../src/rate_limit.ts";
import { personKey, type PersonRef } from "../src/store/mod.ts";

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

function agent(id: number): PersonRef {
  return { kind: "agent", id };
}

function client(id: number): PersonRef {
  return { kind: "client", id };
}

async function listKeys(kv: Deno.Kv, prefix: Deno.KvKey): Promise<Deno.KvKey[]> {
  const keys: Deno.KvKey[] = [];
  for await (const entry of kv.list({ prefix })) keys.push(entry.key);
  return keys;
}

/** Sweep results in a stable order, as person keys. */
function keysOf(refs: PersonRef[]): string[] {
  return refs.map(personKey).sort();
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

Deno.test("Presence: a person with two sockets stays online until the last one closes", async (t) => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const presence = new Presence(kv, { ttlMs: TTL, now: c.now });
    const ada = agent(1);

    await t.step("first socket: came online; second socket: no new announcement", async () => {
      assert.deepEqual(
        await presence.online({ person: ada, userType: "agent", socketId: "laptop" }),
        { cameOnline: true },
      );
      c.set(T0 + 1000);
      assert.deepEqual(
        await presence.online({ person: ada, userType: "agent", socketId: "phone" }),
        { cameOnline: false },
      );
      assert.deepEqual(await presence.list(), [
        { userId: 1, userType: "agent", lastSeen: new Date(T0 + 1000).toISOString() },
      ]);
      assert.equal(await presence.isOnline(ada), true);
    });

    await t.step("closing one socket keeps the person online", async () => {
      c.set(T0 + 2000);
      assert.deepEqual(await presence.socketClosed(ada, "phone"), { wentOffline: false });
      assert.equal(await presence.isOnline(ada), true);
      // lastSeen is now the remaining socket's.
      assert.deepEqual(await presence.list(), [
        { userId: 1, userType: "agent", lastSeen: new Date(T0).toISOString() },
      ]);
      // Closing it again changes nothing.
      assert.deepEqual(await presence.socketClosed(ada, "phone"), { wentOffline: false });
    });

    await t.step("closing the last socket: went offline, nothing left", async () => {
      assert.deepEqual(await presence.socketClosed(ada, "laptop"), { wentOffline: true });
      assert.equal(await presence.isOnline(ada), false);
      assert.deepEqual(await presence.list(), []);
      assert.deepEqual(await listKeys(kv, ["presence"]), []);
      assert.deepEqual(await presence.socketClosed(ada, "laptop"), { wentOffline: false });
    });

    await t.step("coming back after that is announced again", async () => {
      assert.deepEqual(
        await presence.online({ person: ada, userType: "agent", socketId: "tab" }),
        { cameOnline: true },
      );
    });
  } finally {
    kv.close();
  }
});

Deno.test("Presence: agent 5 and customer 5 are two people", async (t) => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const presence = new Presence(kv, { ttlMs: TTL, now: c.now });

    await t.step("both come online; each is announced", async () => {
      assert.deepEqual(
        await presence.online({ person: agent(5), userType: "agent", socketId: "a5" }),
        { cameOnline: true },
      );
      c.set(T0 + 1000);
      assert.deepEqual(
        await presence.online({ person: client(5), userType: "client", socketId: "c5" }),
        { cameOnline: true },
      );
      assert.deepEqual(await presence.list(), [
        { userId: 5, userType: "agent", lastSeen: new Date(T0).toISOString() },
        { userId: 5, userType: "client", lastSeen: new Date(T0 + 1000).toISOString() },
      ]);
    });

    await t.step(
      "a heartbeat names the person: the other kind's socket id is unknown",
      async () => {
        c.set(T0 + 2000);
        assert.equal(await presence.heartbeat(client(5), "a5"), false);
        assert.equal(await presence.heartbeat(agent(5), "c5"), false);
        assert.equal(await presence.heartbeat(agent(5), "a5"), true);
        assert.deepEqual((await presence.list()).map((u) => u.lastSeen), [
          new Date(T0 + 2000).toISOString(),
          new Date(T0 + 1000).toISOString(),
        ]);
      },
    );

    await t.step("the customer closing leaves the agent online", async () => {
      assert.deepEqual(await presence.socketClosed(client(5), "c5"), { wentOffline: true });
      assert.equal(await presence.isOnline(client(5)), false);
      assert.equal(await presence.isOnline(agent(5)), true);
      assert.deepEqual(await presence.list(), [
        { userId: 5, userType: "agent", lastSeen: new Date(T0 + 2000).toISOString() },
      ]);
    });

    await t.step("offline() of the customer does not touch the agent", async () => {
      await presence.online({ person: client(5), userType: "client", socketId: "c5" });
      assert.deepEqual(await presence.offline(client(5)), { wentOffline: true });
      assert.equal(await presence.isOnline(agent(5)), true);
      assert.deepEqual(await listKeys(kv, ["presence"]), [
        ["presence", "sockets", "agent:5", "a5"],
        ["presence", "users", "agent:5"],
      ]);
    });

    await t.step("sweep returns the kind of whoever went stale", async () => {
      c.set(T0 + 3000);
      await presence.online({ person: client(5), userType: "client", socketId: "c5" });
      c.set(T0 + 2000 + TTL);
      // the agent's newest heartbeat (T0 + 2000) is TTL old; the customer's is newer
      assert.deepEqual(await presence.sweep(), [agent(5)]);
      assert.equal(await presence.isOnline(client(5)), true);
      c.set(T0 + 3000 + TTL);
      assert.deepEqual(await presence.sweep(), [client(5)]);
      assert.deepEqual(await listKeys(kv, ["presence"]), []);
    });
  } finally {
    kv.close();
  }
});

Deno.test("Presence: list() entries carry the role as userType, agents before customers", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const presence = new Presence(kv, { ttlMs: TTL, now: () => T0 });
    await presence.online({ person: client(2), userType: "client", socketId: "c2" });
    await presence.online({ person: agent(3), userType: "agent", socketId: "a3" });
    await presence.online({ person: agent(1), userType: "admin", socketId: "a1" });
    await presence.online({ person: client(1), userType: "client", socketId: "c1" });
    const lastSeen = new Date(T0).toISOString();
    assert.deepEqual(await presence.list(), [
      { userId: 1, userType: "admin", lastSeen },
      { userId: 3, userType: "agent", lastSeen },
      { userId: 1, userType: "client", lastSeen },
      { userId: 2, userType: "client", lastSeen },
    ]);
  } finally {
    kv.close();
  }
});

Deno.test("Presence: heartbeat keeps a socket alive, stale entries are ignored", async (t) => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const presence = new Presence(kv, { ttlMs: TTL, now: c.now });
    await presence.online({ person: agent(1), userType: "agent", socketId: "a1" });
    await presence.online({ person: client(2), userType: "client", socketId: "c2" });

    await t.step("heartbeat refreshes lastSeen", async () => {
      c.set(T0 + 50_000);
      assert.equal(await presence.heartbeat(agent(1), "a1"), true);
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
      assert.equal(await presence.isOnline(client(2)), false);
      assert.equal(await presence.isOnline(agent(1)), true);
      // Still stored (expiry is lazy), only the clock says it is stale.
      assert.equal((await listKeys(kv, ["presence", "users"])).length, 2);
    });

    await t.step("heartbeat of a stale or unknown socket is refused", async () => {
      assert.equal(await presence.heartbeat(client(2), "c2"), false);
      assert.equal(await presence.heartbeat(agent(1), "nope"), false);
      assert.equal(await presence.heartbeat(client(3), "c3"), false);
      assert.equal(await presence.isOnline(client(2)), false);
    });

    await t.step("online() again after going stale is announced again", async () => {
      assert.deepEqual(
        await presence.online({ person: client(2), userType: "client", socketId: "c2" }),
        { cameOnline: true },
      );
    });
  } finally {
    kv.close();
  }
});

Deno.test("Presence: offline() removes the person and every socket", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const presence = new Presence(kv, { ttlMs: TTL, now: () => T0 });
    await presence.online({ person: agent(7), userType: "agent", socketId: "s1" });
    await presence.online({ person: agent(7), userType: "agent", socketId: "s2" });
    await presence.online({ person: agent(8), userType: "admin", socketId: "s3" });
    assert.deepEqual(await presence.offline(agent(7)), { wentOffline: true });
    assert.deepEqual(await presence.offline(agent(7)), { wentOffline: false });
    assert.deepEqual((await presence.list()).map((u) => u.userId), [8]);
    assert.equal(await presence.heartbeat(agent(7), "s1"), false);
    assert.deepEqual(await presence.socketClosed(agent(7), "s2"), { wentOffline: false });
    assert.deepEqual(await listKeys(kv, ["presence"]), [
      ["presence", "sockets", "agent:8", "s3"],
      ["presence", "users", "agent:8"],
    ]);
  } finally {
    kv.close();
  }
});

Deno.test("Presence: invalid input is refused", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    assert.throws(() => new Presence(kv, { ttlMs: 0 }), RangeError);
    assert.throws(() => new Presence(kv, { ttlMs: TTL, userKeyExpireMs: TTL }), RangeError);
    const presence = new Presence(kv, { ttlMs: TTL });
    await assert.rejects(
      presence.online({ person: agent(1.5), userType: "agent", socketId: "s" }),
      RangeError,
    );
    await assert.rejects(
      presence.online({
        // deno-lint-ignore no-explicit-any
        person: { kind: "user" as any, id: 1 },
        userType: "agent",
        socketId: "s",
      }),
      RangeError,
    );
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      presence.online({ person: undefined as any, userType: "agent", socketId: "s" }),
      RangeError,
    );
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      presence.online({ person: agent(1), userType: "root" as any, socketId: "s" }),
      RangeError,
    );
    await assert.rejects(
      presence.online({ person: agent(1), userType: "agent", socketId: "" }),
      RangeError,
    );
    await assert.rejects(presence.heartbeat(client(Number.NaN), "s"), RangeError);
    await assert.rejects(presence.socketClosed(client(1), ""), RangeError);
    // deno-lint-ignore no-explicit-any
    await assert.rejects(presence.offline({ kind: "admin" as any, id: 1 }), RangeError);
    await assert.rejects(presence.isOnline(agent(Number.POSITIVE_INFINITY)), RangeError);
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
    // Ids of one digit count, so that person-key order is numeric order.
    const ids = Array.from({ length: 20 }, (_, i) => 100 + i);

    await t.step(
      "concurrent online() of two sockets: announced exactly once per person",
      async () => {
        const results = await Promise.all(ids.flatMap((id) => [
          a.online({ person: client(id), userType: "client", socketId: `a-${id}` }),
          b.online({ person: client(id), userType: "client", socketId: `b-${id}` }),
        ]));
        for (let i = 0; i < ids.length; i++) {
          const announced = [results[2 * i], results[2 * i + 1]].filter((r) => r.cameOnline);
          assert.equal(announced.length, 1, `client ${ids[i]}`);
        }
        assert.equal((await b.list()).length, 20);
      },
    );

    await t.step("concurrent close of both sockets: offline announced exactly once", async () => {
      const closing = ids.slice(0, 10);
      const results = await Promise.all(closing.flatMap((id) => [
        a.socketClosed(client(id), `a-${id}`),
        b.socketClosed(client(id), `b-${id}`),
      ]));
      for (let i = 0; i < closing.length; i++) {
        const announced = [results[2 * i], results[2 * i + 1]].filter((r) => r.wentOffline);
        assert.equal(announced.length, 1, `client ${closing[i]}`);
      }
      assert.deepEqual((await a.list()).map((u) => u.userId), ids.slice(10));
    });

    await t.step("concurrent sweeps return each stale person exactly once", async () => {
      // Client 115 keeps heartbeating through process b; the other 9 go silent.
      c.set(T0 + 30_000);
      assert.equal(await b.heartbeat(client(115), "b-115"), true);
      c.set(T0 + TTL + 1);
      const [fromA, fromB] = await Promise.all([a.sweep(), b.sweep()]);
      assert.deepEqual(
        keysOf([...fromA, ...fromB]),
        ids.slice(10).filter((id) => id !== 115).map((id) => `client:${id}`),
      );
      assert.deepEqual(await a.sweep(), []);
      assert.deepEqual((await b.list()).map((u) => u.userId), [115]);
    });

    await t.step("the last person goes stale and is swept; nothing is left", async () => {
      c.set(T0 + 30_000 + TTL);
      assert.deepEqual(await a.sweep(), [client(115)]);
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
    // Half agents, half customers, with the same numbers.
    const people = Array.from({ length: count }, (_, i) => ({
      kind: i % 2 === 0 ? "agent" : "client",
      id: Math.floor(i / 2) + 1,
    } as PersonRef));
    for (const [i, person] of people.entries()) {
      const userType = person.kind === "agent" ? "agent" : "client";
      await presence.online({ person, userType, socketId: `s${i}` });
      await limiter.consume(["status", personKey(person)], status);
    }
    assert.equal((await listKeys(kv, ["presence"])).length, 2 * count);

    // A third disconnect, a third explicit userOffline, a third just vanish.
    for (const [i, person] of people.entries()) {
      if (i % 3 === 0) await presence.socketClosed(person, `s${i}`);
      if (i % 3 === 1) await presence.offline(person);
    }
    c.set(T0 + TTL);
    const swept = await presence.sweep();
    assert.deepEqual(
      keysOf(swept),
      people.filter((_, i) => i % 3 === 2).map(personKey).sort(),
    );
    assert.deepEqual(await listKeys(kv, ["presence"]), []);

    // After the window each key used again still has exactly one entry: the
    // rate limit state does not grow with time or calls. Every write sets
    // expireIn = windowMs, so KV deletes the entry a window after the last call.
    for (let i = 0; i < count; i += 100) {
      await limiter.consume(["status", personKey(people[i])], status);
    }
    assert.equal((await listKeys(kv, ["ratelimit"])).length, count);
  } finally {
    kv.close();
  }
});
