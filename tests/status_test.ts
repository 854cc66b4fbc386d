/**
 * End-to-end tests of the user status events (src/handlers/status.ts,
 * src/presence.ts, src/presence_feed.ts) with real socket.io-client sockets
 * against the whole service: userOnline / userHeartbeat / userOffline /
 * getOnlineUsers, who sees whom, several sockets of one user, expiry and the
 * sweep, coalescing of `onlineUsersUpdate`, and presence across two server
 * processes sharing one KV file. People are (kind, id): an entry's `userType`
 * is the role (`admin`, `agent`, `client`), so customer 1 and the admin agent
 * 1 are two entries.
 */

import assert from "node:assert/strict";
import type { Socket } from "socket.io-client";
import { PRESENCE_PREFIX } from "../src/presence.ts";
import { connectSocketAs, disconnectAll, eventually, Recorder } from "./support/clients.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const FIXTURE = "demo/fixture.json";
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const STAFF_SEES = ["admin:1", "agent:123", "agent:124", "client:789", "client:790"];
const CLIENT_SEES = ["agent:123", "agent:124"];

interface OnlineEntry {
  userId: number;
  userType: string;
  lastSeen: string;
}

/** The entries as sorted `role:id` keys (`admin:1`, `client:1`). */
function keys(users: readonly OnlineEntry[]): string[] {
  return users.map((u) => `${u.userType}:${u.userId}`).sort();
}

function sameKeys(expected: string[]): (value: { onlineUsers: OnlineEntry[] }) => boolean {
  const want = JSON.stringify([...expected].sort());
  return (value) => JSON.stringify(keys(value.onlineUsers)) === want;
}

function assertEntries(users: readonly OnlineEntry[]): void {
  for (const user of users) {
    assert.deepEqual(Object.keys(user).sort(), ["lastSeen", "userId", "userType"]);
    assert.ok(["admin", "agent", "client"].includes(user.userType), JSON.stringify(user));
    assert.equal(typeof user.userId, "number");
    assert.match(user.lastSeen, ISO);
  }
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

async function socketKeys(kv: Deno.Kv, person: string): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: [PRESENCE_PREFIX, "sockets", person] })) n++;
  return n;
}

/** `getOnlineUsers` on a plain socket: the `onlineUsersList` it answers with, as keys. */
async function listed(socket: Socket): Promise<string[]> {
  const list = new Recorder<OnlineEntry[]>(socket, "onlineUsersList");
  try {
    const ack = await socket.emitWithAck("getOnlineUsers");
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const users = await list.waitFor(() => true);
    assert.ok(Array.isArray(users));
    assertEntries(users);
    assert.deepEqual(keys(ack.onlineUsers), keys(users), "the ack carries the same list");
    return keys(users);
  } finally {
    socket.off("onlineUsersList");
  }
}

/** `userOnline` for a plain socket, asserting the ack. */
async function goOnline(socket: Socket, userId: number, userType: string): Promise<void> {
  const ack = await socket.emitWithAck("userOnline", { userId, userType });
  assert.equal(ack.ok, true, JSON.stringify(ack));
}

Deno.test("status: userOnline, and who sees whom in onlineUsersUpdate and getOnlineUsers", async (t) => {
  const running = await startApp({ SEED_FILE: FIXTURE });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const agent = await connectSocketAs(running, "agent:123", sockets);
    const agent2 = await connectSocketAs(running, "agent:124", sockets);
    const client = await connectSocketAs(running, "client:789", sockets);
    const client2 = await connectSocketAs(running, "client:790", sockets);
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
      "userOnline → userStatusUpdated { userId, userType, status, timestamp } to the sender",
      async () => {
        for (const { socket, userId, userType } of all) {
          await goOnline(socket, userId, userType);
          const status = await statuses.get(socket)!.waitFor(() => true);
          assert.deepEqual(Object.keys(status).sort(), [
            "status",
            "timestamp",
            "userId",
            "userType",
          ]);
          assert.equal(status.userId, userId);
          // the role: the admin is "admin"
          assert.equal(status.userType, userType);
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
        const update = await updates.get(socket)!.waitFor(sameKeys(STAFF_SEES));
        assertEntries(update.onlineUsers);
      }
    });

    await t.step("a client sees only the online agents, never customers or admins", async () => {
      for (const socket of [client, client2]) {
        const update = await updates.get(socket)!.waitFor(sameKeys(CLIENT_SEES));
        assertEntries(update.onlineUsers);
        for (const seen of updates.get(socket)!.events) {
          for (const u of seen.onlineUsers) assert.equal(u.userType, "agent", JSON.stringify(seen));
        }
      }
    });

    await t.step("getOnlineUsers → onlineUsersList (an array) filtered the same way", async () => {
      for (const { socket, userType } of all) {
        assert.deepEqual(
          await listed(socket),
          userType === "client" ? CLIENT_SEES : STAFF_SEES,
          userType,
        );
      }
    });

    await t.step("claiming another identity is refused and changes nothing", async () => {
      const ack = await client.emitWithAck("userOnline", { userId: 790, userType: "client" });
      assert.equal(ack.ok, false);
      assert.equal(ack.code, "ACCESS_DENIED");
      const ack2 = await client.emitWithAck("userOffline", { userId: 123 });
      assert.equal(ack2.code, "ACCESS_DENIED");
      assert.deepEqual(await listed(admin), STAFF_SEES);
    });
  } finally {
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("status: customer 1 and the admin agent 1 online at once are two entries", async (t) => {
  const kv = await Deno.openKv(":memory:");
  const running = await startApp({ SEED_FILE: FIXTURE }, { kv });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const pia = await connectSocketAs(running, "client:1", sockets);
    const agent = await connectSocketAs(running, "agent:123", sockets);
    const carla = await connectSocketAs(running, "client:789", sockets);
    const agentUpdates = new Recorder<{ onlineUsers: OnlineEntry[] }>(agent, "onlineUsersUpdate");
    const carlaUpdates = new Recorder<{ onlineUsers: OnlineEntry[] }>(carla, "onlineUsersUpdate");
    const piaStatus = new Recorder<Record<string, unknown>>(pia, "userStatusUpdated");
    const adminStatus = new Recorder<Record<string, unknown>>(admin, "userStatusUpdated");
    await goOnline(admin, 1, "admin");
    await goOnline(pia, 1, "client");

    await t.step("each gets their own confirmation, with their own role", async () => {
      const mine = await piaStatus.waitFor(() => true);
      assert.equal(mine.userId, 1);
      assert.equal(mine.userType, "client");
      const theirs = await adminStatus.waitFor(() => true);
      assert.equal(theirs.userId, 1);
      assert.equal(theirs.userType, "admin");
      assert.equal(piaStatus.events.length, 1);
      assert.equal(adminStatus.events.length, 1);
    });

    await t.step("staff see both entries of id 1; customers see neither", async () => {
      const update = await agentUpdates.waitFor(sameKeys(["admin:1", "client:1"]));
      assertEntries(update.onlineUsers);
      assert.deepEqual(await listed(agent), ["admin:1", "client:1"]);
      assert.deepEqual(await listed(admin), ["admin:1", "client:1"]);
      assert.equal(await socketKeys(kv, "agent:1"), 1);
      assert.equal(await socketKeys(kv, "client:1"), 1);
      // the admin is not shown to customers, nor are other customers
      assert.deepEqual(await listed(carla), []);
      assert.deepEqual(await listed(pia), []);
      for (const seen of carlaUpdates.events) assert.deepEqual(seen.onlineUsers, []);
    });

    await t.step("the admin's userOffline leaves customer 1 online", async () => {
      const mark = agentUpdates.events.length;
      const ack = await admin.emitWithAck("userOffline", { userId: 1 });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      await agentUpdates.waitFor(sameKeys(["client:1"]), mark);
      assert.deepEqual(await listed(agent), ["client:1"]);
      assert.equal(await socketKeys(kv, "client:1"), 1);
    });

    await t.step("customer 1's disconnect leaves the admin online", async () => {
      await goOnline(admin, 1, "admin");
      await agentUpdates.waitFor(sameKeys(["admin:1", "client:1"]));
      const mark = agentUpdates.events.length;
      pia.disconnect();
      await agentUpdates.waitFor(sameKeys(["admin:1"]), mark);
      assert.deepEqual(await listed(agent), ["admin:1"]);
      assert.equal(await socketKeys(kv, "client:1"), 0);
      assert.equal(await socketKeys(kv, "agent:1"), 1);
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
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const client = await connectSocketAs(running, "client:789", sockets);
    const adminUpdates = new Recorder<{ onlineUsers: OnlineEntry[] }>(admin, "onlineUsersUpdate");
    const clientUpdates = new Recorder<{ onlineUsers: OnlineEntry[] }>(client, "onlineUsersUpdate");
    const laptop = await connectSocketAs(running, "agent:123", sockets);
    const phone = await connectSocketAs(running, "agent:123", sockets);
    await goOnline(laptop, 123, "agent");
    await goOnline(phone, 123, "agent");
    await adminUpdates.waitFor(sameKeys(["agent:123"]));
    await clientUpdates.waitFor(sameKeys(["agent:123"]));
    assert.equal(await socketKeys(kv, "agent:123"), 2);

    const mark = adminUpdates.events.length;
    const clientMark = clientUpdates.events.length;
    laptop.disconnect();
    await eventually(
      async () => (await socketKeys(kv, "agent:123")) === 1,
      "laptop's presence removed",
    );
    for (const socket of [admin, client]) {
      assert.deepEqual(await listed(socket), ["agent:123"], "still online");
    }
    // no update announced him gone
    for (const u of adminUpdates.events.slice(mark)) {
      assert.ok(keys(u.onlineUsers).includes("agent:123"));
    }
    for (const u of clientUpdates.events.slice(clientMark)) {
      assert.ok(keys(u.onlineUsers).includes("agent:123"));
    }

    phone.disconnect();
    await adminUpdates.waitFor(sameKeys([]), mark);
    await clientUpdates.waitFor(sameKeys([]), clientMark);
    assert.deepEqual(await listed(admin), []);
    assert.equal(await socketKeys(kv, "agent:123"), 0);
  } finally {
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("status: userOffline takes the user offline for everyone", async () => {
  const running = await startApp({ SEED_FILE: FIXTURE });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const agent = await connectSocketAs(running, "agent:123", sockets);
    const agent2 = await connectSocketAs(running, "agent:124", sockets);
    const client = await connectSocketAs(running, "client:789", sockets);
    const observers = [admin, agent2, client];
    const recorders = observers.map((s) =>
      new Recorder<{ onlineUsers: OnlineEntry[] }>(s, "onlineUsersUpdate")
    );
    const status = new Recorder<Record<string, unknown>>(agent, "userStatusUpdated");
    await goOnline(agent, 123, "agent");
    await goOnline(agent2, 124, "agent");
    for (const r of recorders) await r.waitFor(sameKeys(["agent:123", "agent:124"]));
    const marks = recorders.map((r) => r.events.length);

    const ack = await agent.emitWithAck("userOffline", { userId: 123 });
    assert.equal(ack.ok, true);
    const offline = await status.waitFor((s) => s.status === "offline");
    assert.equal(offline.userId, 123);
    assert.equal(offline.userType, "agent");
    assert.match(String(offline.timestamp), ISO);
    for (const [i, r] of recorders.entries()) await r.waitFor(sameKeys(["agent:124"]), marks[i]);
    for (const socket of observers) assert.deepEqual(await listed(socket), ["agent:124"]);
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
    // times scaled down with the TTL: announcements at most every 100 ms
    PRESENCE_BROADCAST_INTERVAL: "100",
  });
  const sockets: Socket[] = [];
  let beat: ReturnType<typeof setInterval> | undefined;
  try {
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const silent = await connectSocketAs(running, "agent:123", sockets);
    const alive = await connectSocketAs(running, "agent:124", sockets);
    const updates = new Recorder<{ onlineUsers: OnlineEntry[] }>(admin, "onlineUsersUpdate");
    const beats: Promise<{ ok: boolean }>[] = [];
    await goOnline(silent, 123, "agent");
    await goOnline(alive, 124, "agent");
    beat = setInterval(() => {
      beats.push(alive.emitWithAck("userHeartbeat", { userId: 124, timestamp: Date.now() }));
    }, TTL / 6);
    await updates.waitFor(sameKeys(["agent:123", "agent:124"]));
    const mark = updates.events.length;

    // the announcement comes from the sweep, within ttl + sweep interval + coalescing
    const gone = await updates.waitFor(sameKeys(["agent:124"]), mark, 10_000);
    assertEntries(gone.onlineUsers);
    assert.deepEqual(await listed(admin), ["agent:124"]);
    // the silent user's socket is still connected: only presence expired
    assert.equal(silent.connected, true);

    // a heartbeat of the expired socket brings him back, announced
    const back = updates.events.length;
    assert.equal(
      (await silent.emitWithAck("userHeartbeat", { userId: 123, timestamp: Date.now() })).ok,
      true,
    );
    await updates.waitFor(sameKeys(["agent:123", "agent:124"]), back);

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
  const running = await startApp({ SEED_FILE: FIXTURE, RATE_LIMIT_STATUS: "1000" });
  const sockets: Socket[] = [];
  try {
    // 30 more customers (client rows), ids 2000…2029
    await running.app.services.store.loadFixture({
      client: Array.from({ length: N }, (_, i) => ({
        client_id: 2000 + i,
        client_country_code: "+63",
        client_number: `92000000${String(i).padStart(2, "0")}`,
        client_is_active: true,
      })),
    });
    const admin = await connectSocketAs(running, "agent:1", sockets);
    // listening before going online: the first broadcast may come before userOnline's ack
    const updates = new Recorder<{ onlineUsers: OnlineEntry[] }>(admin, "onlineUsersUpdate");
    await goOnline(admin, 1, "admin");
    await updates.waitFor(sameKeys(["admin:1"]));
    const burst = await Promise.all(
      Array.from({ length: N }, (_, i) => connectSocketAs(running, `client:${2000 + i}`, sockets)),
    );
    const mark = updates.events.length;
    const started = Date.now();
    const acks = await Promise.all(
      burst.map((s, i) => s.emitWithAck("userOnline", { userId: 2000 + i, userType: "client" })),
    );
    for (const ack of acks) assert.equal(ack.ok, true);
    const everyone = ["admin:1", ...Array.from({ length: N }, (_, i) => `client:${2000 + i}`)];
    await updates.waitFor(sameKeys(everyone), mark);
    const elapsed = Date.now() - started;
    const received = updates.events.length - mark;
    // at most one broadcast per interval, plus one that may have started before the burst
    const bound = Math.floor(elapsed / INTERVAL) + 2;
    assert.ok(received <= bound, `${received} updates in ${elapsed} ms (bound ${bound})`);
    assert.ok(received < N, `${received} updates for ${N} logins`);
    // the last one lists all of them
    assert.deepEqual(keys(updates.events.at(-1)!.onlineUsers), [...everyone].sort());
  } finally {
    disconnectAll(sockets);
    await running.close();
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
    const agentOnA = await connectSocketAs(a, "agent:123", sockets);
    const adminOnB = await connectSocketAs(b, "agent:1", sockets);
    const clientOnB = await connectSocketAs(b, "client:789", sockets);
    await goOnline(agentOnA, 123, "agent");
    await goOnline(clientOnB, 789, "client");
    assert.deepEqual(await listed(adminOnB), ["agent:123", "client:789"]);
    assert.deepEqual(await listed(clientOnB), ["agent:123"]);

    // his disconnect on A takes him offline for B too
    agentOnA.disconnect();
    await eventually(async () => {
      const ack = await adminOnB.emitWithAck("getOnlineUsers");
      return JSON.stringify(keys(ack.onlineUsers)) === JSON.stringify(["client:789"]);
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
      const socket = await connectSocketAs(running, "agent:123", sockets);
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
