/**
 * End-to-end tests of the user status events (src/handlers/status.ts,
 * src/presence.ts, src/presence_feed.ts) with real socket.io-client sockets
 * against the whole service: userOnline / userHeartbeat / userOffline /
 * getOnlineUsers, who sees whom, several sockets of one user, expiry and the
 * sweep, coalescing of `onlineUsersUpdate`, and presence across two server
 * processes sharing one KV file.
 */

import assert from "node:assert/strict";
import type { Socket } from "socket.io-client";
import { PRESENCE_PREFIX } from "../src/presence.ts";
import { connectSocketAs, disconnectAll, eventually, Recorder } from "./support/clients.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const FIXTURE = "demo/fixture.json";
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const STAFF_SEES = [1, 123, 124, 789, 790];
const CLIENT_SEES = [123, 124];

interface OnlineEntry {
  userId: number;
  userType: string;
  lastSeen: string;
}

function ids(users: readonly OnlineEntry[]): number[] {
  return users.map((u) => u.userId).sort((a, b) => a - b);
}

function sameIds(expected: number[]): (value: { onlineUsers: OnlineEntry[] }) => boolean {
  return (value) => JSON.stringify(ids(value.onlineUsers)) === JSON.stringify(expected);
}

function assertEntries(users: readonly OnlineEntry[], roles: Record<number, string>): void {
  for (const user of users) {
    assert.deepEqual(Object.keys(user).sort(), ["lastSeen", "userId", "userType"]);
    assert.equal(user.userType, roles[user.userId], `userType of ${user.userId}`);
    assert.match(user.lastSeen, ISO);
  }
}

const ROLES: Record<number, string> = {
  1: "admin",
  123: "agent",
  124: "agent",
  789: "client",
  790: "client",
};

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

async function socketKeys(kv: Deno.Kv, userId: number): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: [PRESENCE_PREFIX, "sockets", userId] })) n++;
  return n;
}

Deno.test("status: userOnline, and who sees whom in onlineUsersUpdate and getOnlineUsers", async (t) => {
  const running = await startApp({ SEED_FILE: FIXTURE });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "admin-1", sockets);
    const agent = await connectSocketAs(running, "agent-123", sockets);
    const agent2 = await connectSocketAs(running, "agent-124", sockets);
    const client = await connectSocketAs(running, "client-789", sockets);
    const client2 = await connectSocketAs(running, "client-790", sockets);
    const all = [
      { socket: admin, userId: 1, userType: "admin" },
      { socket: agent, userId: 123, userType: "agent" },
      { socket: agent2, userId: 124, userType: "agent" },
      { socket: client, userId: 789, userType: "client" },
      { socket: client2, userId: 790, userType: "client" },
    ];
    const updates = new Map(
      all.map(({ socket }) => [
        socket,
        new Recorder<{ onlineUsers: OnlineEntry[] }>(socket, "onlineUsersUpdate"),
      ]),
    );
    const statuses = new Map(
      all.map((
        { socket },
      ) => [socket, new Recorder<Record<string, unknown>>(socket, "userStatusUpdated")]),
    );

    await t.step(
      "userOnline → userStatusUpdated { userId, status, timestamp } to the sender",
      async () => {
        for (const { socket, userId, userType } of all) {
          const ack = await socket.emitWithAck("userOnline", { userId, userType });
          assert.equal(ack.ok, true, JSON.stringify(ack));
          const status = await statuses.get(socket)!.waitFor(() => true);
          assert.deepEqual(Object.keys(status).sort(), ["status", "timestamp", "userId"]);
          assert.equal(status.userId, userId);
          assert.equal(status.status, "online");
          assert.match(String(status.timestamp), ISO);
        }
        // nobody got anyone else's confirmation
        for (const { socket, userId } of all) {
          assert.deepEqual(statuses.get(socket)!.events.map((s) => s.userId), [userId]);
        }
      },
    );

    await t.step("agents and admins see everyone online", async () => {
      for (const socket of [admin, agent, agent2]) {
        const update = await updates.get(socket)!.waitFor(sameIds(STAFF_SEES));
        assertEntries(update.onlineUsers, ROLES);
      }
    });

    await t.step("a client sees only the online agents, never customers or admins", async () => {
      for (const socket of [client, client2]) {
        const update = await updates.get(socket)!.waitFor(sameIds(CLIENT_SEES));
        assertEntries(update.onlineUsers, ROLES);
        for (const seen of updates.get(socket)!.events) {
          for (const u of seen.onlineUsers) assert.equal(u.userType, "agent", JSON.stringify(seen));
        }
      }
    });

    await t.step("getOnlineUsers → onlineUsersList (an array) filtered the same way", async () => {
      for (const { socket, userType } of all) {
        const list = new Recorder<OnlineEntry[]>(socket, "onlineUsersList");
        const ack = await socket.emitWithAck("getOnlineUsers");
        assert.equal(ack.ok, true);
        const users = await list.waitFor(() => true);
        assert.ok(Array.isArray(users));
        assertEntries(users, ROLES);
        assert.deepEqual(ids(users), userType === "client" ? CLIENT_SEES : STAFF_SEES, userType);
        socket.off("onlineUsersList");
      }
    });

    await t.step("claiming another identity is refused and changes nothing", async () => {
      const ack = await client.emitWithAck("userOnline", { userId: 790, userType: "client" });
      assert.equal(ack.ok, false);
      assert.equal(ack.code, "ACCESS_DENIED");
      const ack2 = await client.emitWithAck("userOffline", { userId: 123 });
      assert.equal(ack2.code, "ACCESS_DENIED");
      const list = new Recorder<OnlineEntry[]>(admin, "onlineUsersList");
      await admin.emitWithAck("getOnlineUsers");
      assert.deepEqual(ids(await list.waitFor(() => true)), STAFF_SEES);
    });
  } finally {
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("status: a user with two sockets stays online until the last one closes", async () => {
  const kv = await Deno.openKv(":memory:");
  const running = await startApp({ SEED_FILE: FIXTURE }, { kv });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "admin-1", sockets);
    const client = await connectSocketAs(running, "client-789", sockets);
    const adminUpdates = new Recorder<{ onlineUsers: OnlineEntry[] }>(admin, "onlineUsersUpdate");
    const clientUpdates = new Recorder<{ onlineUsers: OnlineEntry[] }>(client, "onlineUsersUpdate");
    const laptop = await connectSocketAs(running, "agent-123", sockets);
    const phone = await connectSocketAs(running, "agent-123", sockets);
    assert.equal(
      (await laptop.emitWithAck("userOnline", { userId: 123, userType: "agent" })).ok,
      true,
    );
    assert.equal(
      (await phone.emitWithAck("userOnline", { userId: 123, userType: "agent" })).ok,
      true,
    );
    await adminUpdates.waitFor(sameIds([123]));
    await clientUpdates.waitFor(sameIds([123]));
    assert.equal(await socketKeys(kv, 123), 2);

    const mark = adminUpdates.events.length;
    const clientMark = clientUpdates.events.length;
    laptop.disconnect();
    await eventually(async () => (await socketKeys(kv, 123)) === 1, "laptop's presence removed");
    for (const socket of [admin, client]) {
      const list = new Recorder<OnlineEntry[]>(socket, "onlineUsersList");
      await socket.emitWithAck("getOnlineUsers");
      assert.deepEqual(ids(await list.waitFor(() => true)), [123], "still online");
      socket.off("onlineUsersList");
    }
    // no update announced him gone
    for (const u of adminUpdates.events.slice(mark)) assert.ok(ids(u.onlineUsers).includes(123));
    for (const u of clientUpdates.events.slice(clientMark)) {
      assert.ok(ids(u.onlineUsers).includes(123));
    }

    phone.disconnect();
    await adminUpdates.waitFor(sameIds([]), mark);
    await clientUpdates.waitFor(sameIds([]), clientMark);
    const list = new Recorder<OnlineEntry[]>(admin, "onlineUsersList");
    await admin.emitWithAck("getOnlineUsers");
    assert.deepEqual(await list.waitFor(() => true), []);
    assert.equal(await socketKeys(kv, 123), 0);
  } finally {
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("status: userOffline takes the user offline for everyone", async () => {
  const running = await startApp({ SEED_FILE: FIXTURE });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "admin-1", sockets);
    const agent = await connectSocketAs(running, "agent-123", sockets);
    const agent2 = await connectSocketAs(running, "agent-124", sockets);
    const client = await connectSocketAs(running, "client-789", sockets);
    const observers = [admin, agent2, client];
    const recorders = observers.map((s) =>
      new Recorder<{ onlineUsers: OnlineEntry[] }>(s, "onlineUsersUpdate")
    );
    const status = new Recorder<Record<string, unknown>>(agent, "userStatusUpdated");
    assert.equal(
      (await agent.emitWithAck("userOnline", { userId: 123, userType: "agent" })).ok,
      true,
    );
    assert.equal(
      (await agent2.emitWithAck("userOnline", { userId: 124, userType: "agent" })).ok,
      true,
    );
    for (const r of recorders) await r.waitFor(sameIds([123, 124]));
    const marks = recorders.map((r) => r.events.length);

    const ack = await agent.emitWithAck("userOffline", { userId: 123 });
    assert.equal(ack.ok, true);
    const offline = await status.waitFor((s) => s.status === "offline");
    assert.equal(offline.userId, 123);
    assert.match(String(offline.timestamp), ISO);
    for (const [i, r] of recorders.entries()) await r.waitFor(sameIds([124]), marks[i]);
    for (const socket of observers) {
      const list = new Recorder<OnlineEntry[]>(socket, "onlineUsersList");
      await socket.emitWithAck("getOnlineUsers");
      assert.deepEqual(ids(await list.waitFor(() => true)), [124]);
      socket.off("onlineUsersList");
    }
    // the socket itself is still connected and usable
    assert.equal(agent.connected, true);
    assert.equal((await agent.emitWithAck("getOnlineUsers")).ok, true);
  } finally {
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("status: without userHeartbeat a user expires and the sweep announces it", async () => {
  const TTL = 600;
  const running = await startApp({
    SEED_FILE: FIXTURE,
    SOCKET_HEARTBEAT_TIMEOUT: String(TTL),
    RATE_LIMIT_STATUS: "1000",
  });
  const sockets: Socket[] = [];
  let beat: ReturnType<typeof setInterval> | undefined;
  try {
    const admin = await connectSocketAs(running, "admin-1", sockets);
    const silent = await connectSocketAs(running, "agent-123", sockets);
    const alive = await connectSocketAs(running, "agent-124", sockets);
    const updates = new Recorder<{ onlineUsers: OnlineEntry[] }>(admin, "onlineUsersUpdate");
    const beats: Promise<{ ok: boolean }>[] = [];
    assert.equal(
      (await silent.emitWithAck("userOnline", { userId: 123, userType: "agent" })).ok,
      true,
    );
    assert.equal(
      (await alive.emitWithAck("userOnline", { userId: 124, userType: "agent" })).ok,
      true,
    );
    beat = setInterval(() => {
      beats.push(alive.emitWithAck("userHeartbeat", { userId: 124, timestamp: Date.now() }));
    }, TTL / 6);
    await updates.waitFor(sameIds([123, 124]));
    const mark = updates.events.length;

    // the announcement comes from the sweep, within ttl + sweep interval + coalescing
    const gone = await updates.waitFor(sameIds([124]), mark, 10_000);
    assertEntries(gone.onlineUsers, ROLES);
    const list = new Recorder<OnlineEntry[]>(admin, "onlineUsersList");
    await admin.emitWithAck("getOnlineUsers");
    assert.deepEqual(ids(await list.waitFor(() => true)), [124]);
    // the silent user's socket is still connected: only presence expired
    assert.equal(silent.connected, true);

    // a heartbeat of the expired socket brings him back, announced
    const back = updates.events.length;
    assert.equal(
      (await silent.emitWithAck("userHeartbeat", { userId: 123, timestamp: Date.now() })).ok,
      true,
    );
    await updates.waitFor(sameIds([123, 124]), back);

    clearInterval(beat);
    beat = undefined;
    for (const reply of await Promise.all(beats)) assert.equal(reply.ok, true);
    assert.ok(beats.length > 0);
  } finally {
    clearInterval(beat);
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("status: a burst of 30 logins costs far fewer than 30 onlineUsersUpdate", async () => {
  const N = 30;
  const INTERVAL = 250; // PresenceFeed's coalescing interval
  const fixture = JSON.parse(await Deno.readTextFile(FIXTURE));
  for (let i = 0; i < N; i++) {
    fixture.users.push({ id: 2000 + i, authId: `burst-${i}`, role: "client" });
  }
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(fixture));
  const running = await startApp({ SEED_FILE: file, RATE_LIMIT_STATUS: "1000" });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "admin-1", sockets);
    assert.equal(
      (await admin.emitWithAck("userOnline", { userId: 1, userType: "admin" })).ok,
      true,
    );
    const updates = new Recorder<{ onlineUsers: OnlineEntry[] }>(admin, "onlineUsersUpdate");
    await updates.waitFor(sameIds([1]));
    const burst = await Promise.all(
      Array.from({ length: N }, (_, i) => connectSocketAs(running, `burst-${i}`, sockets)),
    );
    const mark = updates.events.length;
    const started = Date.now();
    const acks = await Promise.all(
      burst.map((s, i) => s.emitWithAck("userOnline", { userId: 2000 + i, userType: "client" })),
    );
    for (const ack of acks) assert.equal(ack.ok, true);
    const everyone = [1, ...Array.from({ length: N }, (_, i) => 2000 + i)];
    await updates.waitFor(sameIds(everyone), mark);
    const elapsed = Date.now() - started;
    const received = updates.events.length - mark;
    // at most one broadcast per interval, plus one that may have started before the burst
    const bound = Math.floor(elapsed / INTERVAL) + 2;
    assert.ok(received <= bound, `${received} updates in ${elapsed} ms (bound ${bound})`);
    assert.ok(received < N, `${received} updates for ${N} logins`);
    // the last one lists all of them
    assert.deepEqual(ids(updates.events.at(-1)!.onlineUsers), everyone);
  } finally {
    disconnectAll(sockets);
    await running.close();
    await Deno.remove(file);
  }
});

Deno.test("status: presence holds across two processes sharing one KV", async () => {
  const dir = await Deno.makeTempDir({ prefix: "servana-presence-" });
  const env = { SEED_FILE: FIXTURE, KV_PATH: `${dir}/shared.kv` };
  const a = await startApp(env);
  let b: RunningApp | undefined;
  const sockets: Socket[] = [];
  try {
    b = await startApp(env);
    const agentOnA = await connectSocketAs(a, "agent-123", sockets);
    const adminOnB = await connectSocketAs(b, "admin-1", sockets);
    const clientOnB = await connectSocketAs(b, "client-789", sockets);
    assert.equal(
      (await agentOnA.emitWithAck("userOnline", { userId: 123, userType: "agent" })).ok,
      true,
    );
    assert.equal(
      (await clientOnB.emitWithAck("userOnline", { userId: 789, userType: "client" })).ok,
      true,
    );
    const adminAck = await adminOnB.emitWithAck("getOnlineUsers");
    assert.equal(adminAck.ok, true);
    assert.deepEqual(ids(adminAck.onlineUsers), [123, 789]);
    const list = new Recorder<OnlineEntry[]>(clientOnB, "onlineUsersList");
    await clientOnB.emitWithAck("getOnlineUsers");
    assert.deepEqual(ids(await list.waitFor(() => true)), [123]);

    // his disconnect on A takes him offline for B too
    agentOnA.disconnect();
    await eventually(async () => {
      const ack = await adminOnB.emitWithAck("getOnlineUsers");
      return JSON.stringify(ids(ack.onlineUsers)) === JSON.stringify([789]);
    }, "agent offline as seen from B");
  } finally {
    disconnectAll(sockets);
    await b?.close();
    await a.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status: a socket closed while its userOnline or userHeartbeat is in flight leaves no ghost", async () => {
  const dir = await Deno.makeTempDir({ prefix: "servana-ghost-" });
  const path = `${dir}/presence.kv`;
  const running = await startApp({ SEED_FILE: FIXTURE, KV_PATH: path, RATE_LIMIT_STATUS: "1000" });
  const sockets: Socket[] = [];
  let closed = false;
  try {
    // close at various moments while the status write is in flight
    for (let i = 0; i < 40; i++) {
      const socket = await connectSocketAs(running, "agent-123", sockets);
      socket.emit(i % 2 ? "userHeartbeat" : "userOnline", { userId: 123, userType: "agent" });
      await sleep(i % 8);
      socket.disconnect();
    }
    await eventually(() => running.app.io.of("/").sockets.size === 0, "sockets closed");
    // close() waits for every handler and disconnect clean-up in flight
    await running.close();
    closed = true;
    const adapter = running.app.io.of("/").adapter;
    assert.equal(adapter.sids.size, 0, "no closed socket left in the adapter");
    assert.equal(adapter.rooms.size, 0, "no room left in the adapter");
    const kv = await Deno.openKv(path);
    try {
      const left = [];
      for await (const e of kv.list({ prefix: [PRESENCE_PREFIX] })) left.push(e.key);
      assert.deepEqual(left, [], "nobody is online once every socket is closed");
    } finally {
      kv.close();
    }
  } finally {
    disconnectAll(sockets);
    if (!closed) await running.close();
    await Deno.remove(dir, { recursive: true });
  }
});
