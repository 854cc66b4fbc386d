import assert from "node:assert/strict";
import type { Server } from "socket.io";
import { Presence } from "../src/presence.ts";
import { PresenceFeed, visibleTo } from "../src/presence_feed.ts";

interface Sent {
  room: string;
  event: string;
  payload: { onlineUsers: { userId: number; userType: string; lastSeen: string }[] };
}

/**
 * Records what the feed broadcasts, per room. `nextBroadcast()` resolves once
 * the next broadcast has reached both audiences (the feed emits to staff, then
 * to clients, in one synchronous step).
 */
function fakeIo(): { io: Server; sent: Sent[]; nextBroadcast: () => Promise<void> } {
  const sent: Sent[] = [];
  let waiter: (() => void) | undefined;
  const io = {
    to(room: string) {
      return {
        emit(event: string, payload: Sent["payload"]) {
          sent.push({ room, event, payload });
          if (room === "clients") {
            const resolve = waiter;
            waiter = undefined;
            resolve?.();
          }
          return true;
        },
      };
    },
  } as unknown as Server;
  return {
    io,
    sent,
    nextBroadcast: () => new Promise<void>((resolve) => (waiter = resolve)),
  };
}

Deno.test("visibleTo: customers see agents only; staff see everyone", () => {
  const users = [
    { userId: 1, userType: "admin" as const, lastSeen: "" },
    { userId: 2, userType: "agent" as const, lastSeen: "" },
    { userId: 3, userType: "client" as const, lastSeen: "" },
    { userId: 2, userType: "client" as const, lastSeen: "" },
  ];
  assert.deepEqual(visibleTo("client", users), [users[1]]);
  assert.deepEqual(visibleTo("agent", users), users);
  assert.deepEqual(visibleTo("admin", users), users);
});

Deno.test("a burst of changes costs one read and one broadcast per audience", async () => {
  const kv = await Deno.openKv(":memory:");
  const { io, sent, nextBroadcast } = fakeIo();
  const presence = new Presence(kv, { ttlMs: 60_000 });
  const feed = new PresenceFeed(io, presence, { intervalMs: 50 });
  try {
    // Agents and customers 1..10 share their numbers: 20 people.
    await Promise.all(
      Array.from({ length: 20 }, (_, k) => {
        const kind = k % 2 ? "agent" : "client";
        return presence.online({
          person: { kind, id: Math.floor(k / 2) + 1 },
          userType: kind,
          socketId: `s${k}`,
        });
      }),
    );
    const first = nextBroadcast();
    for (let i = 0; i < 20; i++) feed.changed();
    await first;
    assert.equal(feed.broadcasts, 1);
    assert.deepEqual(sent.map((s) => [s.room, s.event]), [
      ["staff", "onlineUsersUpdate"],
      ["clients", "onlineUsersUpdate"],
    ]);
    const staffList = sent[0].payload.onlineUsers;
    assert.equal(staffList.length, 20);
    assert.deepEqual(
      staffList.filter((u) => u.userId === 1).map((u) => u.userType),
      ["agent", "client"],
    );
    const clientList = sent[1].payload.onlineUsers;
    assert.deepEqual(clientList, staffList.filter((u) => u.userType === "agent"));
    assert.equal(clientList.length, 10);

    // a later change is announced again
    await presence.online({ person: { kind: "agent", id: 99 }, userType: "agent", socketId: "x" });
    const second = nextBroadcast();
    feed.changed();
    await second;
    assert.equal(feed.broadcasts, 2);
    assert.equal(sent.length, 4);
  } finally {
    await feed.close();
    kv.close();
  }
});

Deno.test("sweep announces expired people once, by kind", async () => {
  const kv = await Deno.openKv(":memory:");
  let now = 1_000_000;
  const { io, sent, nextBroadcast } = fakeIo();
  const presence = new Presence(kv, { ttlMs: 1000, now: () => now });
  const feed = new PresenceFeed(io, presence, { intervalMs: 0 });
  try {
    await presence.online({ person: { kind: "agent", id: 7 }, userType: "agent", socketId: "a" });
    now += 500;
    await presence.online({
      person: { kind: "client", id: 7 },
      userType: "client",
      socketId: "c",
    });
    now += 600; // the agent is 1100 ms old (stale), the customer 600 ms (live)
    const announced = nextBroadcast();
    assert.deepEqual(await feed.sweep(), [{ kind: "agent", id: 7 }]);
    assert.deepEqual(await feed.sweep(), []);
    await announced;
    assert.equal(feed.broadcasts, 1);
    assert.deepEqual(sent[0].payload.onlineUsers, [
      { userId: 7, userType: "client", lastSeen: new Date(1_000_500).toISOString() },
    ]);
    assert.deepEqual(sent[1].payload.onlineUsers, []);
  } finally {
    await feed.close();
    kv.close();
  }
});

Deno.test("a sweep that finds nobody announces nothing", async () => {
  const kv = await Deno.openKv(":memory:");
  const { io, sent } = fakeIo();
  const presence = new Presence(kv, { ttlMs: 1000 });
  const feed = new PresenceFeed(io, presence, { intervalMs: 0 });
  try {
    await presence.online({ person: { kind: "agent", id: 1 }, userType: "admin", socketId: "a" });
    assert.deepEqual(await feed.sweep(), []);
    // A broadcast scheduled by the sweep would wait 0 ms (intervalMs 0, no
    // earlier flush): its timer fires before this one, and close() below
    // waits for the flush it starts.
    await new Promise((resolve) => setTimeout(resolve, 0));
  } finally {
    await feed.close();
    kv.close();
  }
  assert.equal(feed.broadcasts, 0);
  assert.deepEqual(sent, []);
});

Deno.test("the same people as last announced are not announced again, across processes", async (t) => {
  const kv = await Deno.openKv(":memory:");
  let now = 1_000_000;
  const a = fakeIo();
  const b = fakeIo();
  const presence = new Presence(kv, { ttlMs: 60_000, now: () => now });
  // two processes sharing one KV
  const feedA = new PresenceFeed(a.io, presence, { intervalMs: 0, kv });
  const feedB = new PresenceFeed(b.io, presence, { intervalMs: 0, kv });
  const agent = { person: { kind: "agent" as const, id: 5 }, userType: "agent" as const };
  try {
    await t.step("a change is announced", async () => {
      await presence.online({ ...agent, socketId: "s1" });
      await feedA.flush();
      assert.equal(feedA.broadcasts, 1);
    });
    await t.step("a heartbeat (only lastSeen moved) is not", async () => {
      now += 5_000;
      assert.equal(await presence.heartbeat(agent.person, "s1"), true);
      await feedA.flush();
      await feedB.flush();
      assert.equal(feedA.broadcasts + feedB.broadcasts, 1);
    });
    await t.step("a reload (offline, then online again) is not", async () => {
      await presence.offline(agent.person);
      await presence.online({ ...agent, socketId: "s2" });
      await feedB.flush();
      assert.equal(feedB.broadcasts, 0);
    });
    await t.step(
      "what another process announced counts: A may not skip B's change back",
      async () => {
        await presence.online({
          person: { kind: "client", id: 5 },
          userType: "client",
          socketId: "c",
        });
        await feedB.flush(); // B announces agent 5 + customer 5
        await presence.offline({ kind: "client", id: 5 });
        await feedA.flush(); // back to what A announced first: A must announce it again
        assert.equal(feedB.broadcasts, 1);
        assert.equal(feedA.broadcasts, 2);
        assert.deepEqual(
          a.sent.at(-2)?.payload.onlineUsers.map((u) => [u.userType, u.userId]),
          [["agent", 5]],
        );
      },
    );
  } finally {
    await feedA.close();
    await feedB.close();
    kv.close();
  }
});

Deno.test("a slow read does not announce its older list after a newer one", async () => {
  const kv = await Deno.openKv(":memory:");
  const { io, sent } = fakeIo();
  const presence = new Presence(kv, { ttlMs: 60_000 });
  // the first read of the list takes longer than the coalescing interval
  const list = presence.list.bind(presence);
  let reads = 0;
  presence.list = async () => {
    const users = await list();
    if (++reads === 1) await new Promise((resolve) => setTimeout(resolve, 120));
    return users;
  };
  const feed = new PresenceFeed(io, presence, { intervalMs: 20, kv });
  try {
    await presence.online({ person: { kind: "agent", id: 1 }, userType: "agent", socketId: "a" });
    feed.changed(); // its read is slow
    await new Promise((resolve) => setTimeout(resolve, 40));
    await presence.online({ person: { kind: "agent", id: 2 }, userType: "agent", socketId: "b" });
    feed.changed(); // comes after, reads both
    // both reads and both announcements are over well within this
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(reads, 2);
    const staff = sent.filter((s) => s.room === "staff").map((s) =>
      s.payload.onlineUsers.map((u) => u.userId)
    );
    assert.deepEqual(staff.at(-1), [1, 2], "the last list announced is the newest");
  } finally {
    await feed.close();
    kv.close();
  }
});
