import assert from "node:assert/strict";
import type { Server } from "socket.io";
import { Presence } from "../src/presence.ts";
import { PresenceFeed, visibleTo } from "../src/presence_feed.ts";

interface Sent {
  room: string;
  event: string;
  payload: { onlineUsers: { userId: number; userType: string }[] };
}

/** Records what the feed broadcasts, per room. */
function fakeIo(sent: Sent[]): Server {
  return {
    to(room: string) {
      return {
        emit(event: string, payload: Sent["payload"]) {
          sent.push({ room, event, payload });
          return true;
        },
      };
    },
  } as unknown as Server;
}

Deno.test("clients see agents only; staff see everyone", () => {
  const users = [
    { userId: 1, userType: "admin" as const, lastSeen: "" },
    { userId: 2, userType: "agent" as const, lastSeen: "" },
    { userId: 3, userType: "client" as const, lastSeen: "" },
  ];
  assert.deepEqual(visibleTo("client", users).map((u) => u.userId), [2]);
  assert.deepEqual(visibleTo("agent", users).map((u) => u.userId), [1, 2, 3]);
  assert.deepEqual(visibleTo("admin", users).map((u) => u.userId), [1, 2, 3]);
});

Deno.test("a burst of changes costs one read and one broadcast per audience", async () => {
  const kv = await Deno.openKv(":memory:");
  const sent: Sent[] = [];
  const presence = new Presence(kv, { ttlMs: 60_000 });
  const feed = new PresenceFeed(fakeIo(sent), presence, { intervalMs: 50 });
  try {
    await Promise.all(
      Array.from(
        { length: 20 },
        (_, k) =>
          presence.online({
            userId: k + 1,
            userType: k % 2 ? "agent" : "client",
            socketId: `s${k}`,
          }),
      ),
    );
    for (let i = 0; i < 20; i++) feed.changed();
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(feed.broadcasts, 1);
    assert.deepEqual(sent.map((s) => [s.room, s.event]), [
      ["staff", "onlineUsersUpdate"],
      ["clients", "onlineUsersUpdate"],
    ]);
    assert.equal(sent[0].payload.onlineUsers.length, 20);
    assert.ok(sent[1].payload.onlineUsers.every((u) => u.userType === "agent"));
    assert.equal(sent[1].payload.onlineUsers.length, 10);
    // a later change is announced again
    feed.changed();
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(feed.broadcasts, 2);
  } finally {
    await feed.close();
    kv.close();
  }
});

Deno.test("sweep announces expired users once", async () => {
  const kv = await Deno.openKv(":memory:");
  let now = 1_000_000;
  const sent: Sent[] = [];
  const presence = new Presence(kv, { ttlMs: 1000, now: () => now });
  const feed = new PresenceFeed(fakeIo(sent), presence, { intervalMs: 0 });
  try {
    await presence.online({ userId: 7, userType: "agent", socketId: "a" });
    now += 5000;
    assert.deepEqual(await feed.sweep(), [7]);
    assert.deepEqual(await feed.sweep(), []);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(feed.broadcasts, 1);
    assert.deepEqual(sent[0].payload.onlineUsers, []);
  } finally {
    await feed.close();
    kv.close();
  }
});
