/**
 * End-to-end tests of the admin events (src/handlers/admin.ts) with real
 * socket.io-client sockets: `getRoomStats` → `roomStatsUpdate`, the periodic
 * push to admins, and `disconnectUser { userId, userType }` (customers and
 * agents have separate ids); non-admins get ACCESS_DENIED.
 */

import assert from "node:assert/strict";
import type { Socket } from "socket.io-client";
import { setLogSink } from "../src/log.ts";
import { connectSocketAs, disconnectAll, eventually, Recorder } from "./support/clients.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const FIXTURE = "demo/fixture.json";
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface Stats {
  totalRooms: number;
  activeRooms: number;
  totalUsers: number;
  timestamp: string;
}

/**
 * Waits until the queued group 459 (department 2) has been assigned: the
 * first connection of a department-2 agent (the admin is in both
 * departments) drains the queue in the background.
 */
async function queueDrained(running: RunningApp): Promise<void> {
  await eventually(async () => {
    const group = await running.app.services.store.getChatGroup(459);
    return group?.status === "active" && group.agentId !== null;
  }, "queued group 459 assigned");
}

function assertStats(stats: Stats, expected: Omit<Stats, "timestamp">): void {
  assert.deepEqual(Object.keys(stats).sort(), [
    "activeRooms",
    "timestamp",
    "totalRooms",
    "totalUsers",
  ]);
  const { timestamp, ...numbers } = stats;
  assert.deepEqual(numbers, expected);
  assert.match(timestamp, ISO);
}

Deno.test("admin: getRoomStats", async (t) => {
  const running = await startApp({ SEED_FILE: FIXTURE });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const agent = await connectSocketAs(running, "agent:123", sockets);
    const agent2 = await connectSocketAs(running, "agent:124", sockets);
    const client = await connectSocketAs(running, "client:789", sockets);
    for (
      const [socket, userId, userType] of [
        [admin, 1, "admin"],
        [agent, 123, "agent"],
        [client, 789, "client"],
      ] as const
    ) {
      assert.equal((await socket.emitWithAck("userOnline", { userId, userType })).ok, true);
    }

    await t.step("an admin gets roomStatsUpdate with the fixture's numbers", async () => {
      await queueDrained(running);
      const updates = new Recorder<Stats>(admin, "roomStatsUpdate");
      const ack = await admin.emitWithAck("getRoomStats");
      assert.equal(ack.ok, true, JSON.stringify(ack));
      const stats = await updates.waitFor(() => true);
      // 4 chat groups: 456 and 457 active, 458 resolved, 459 active since it
      // left the queue; admin, agent 123 and client 789 online
      assertStats(stats, { totalRooms: 4, activeRooms: 3, totalUsers: 3 });
      assert.deepEqual(ack.stats, stats);
    });

    await t.step("totalUsers follows presence", async () => {
      assert.equal(
        (await agent2.emitWithAck("userOnline", { userId: 124, userType: "agent" })).ok,
        true,
      );
      const ack = await admin.emitWithAck("getRoomStats");
      assertStats(ack.stats, { totalRooms: 4, activeRooms: 3, totalUsers: 4 });
    });

    await t.step("customer 1 online beside the admin agent 1 counts as one more user", async () => {
      const pia = await connectSocketAs(running, "client:1", sockets);
      assert.equal(
        (await pia.emitWithAck("userOnline", { userId: 1, userType: "client" })).ok,
        true,
      );
      const ack = await admin.emitWithAck("getRoomStats");
      assertStats(ack.stats, { totalRooms: 4, activeRooms: 3, totalUsers: 5 });
    });

    await t.step("agents and clients get ACCESS_DENIED and no stats", async () => {
      for (const socket of [agent, client]) {
        const errors = new Recorder<{ code: string; message: string }>(socket, "error");
        const stats = new Recorder<Stats>(socket, "roomStatsUpdate");
        const ack = await socket.emitWithAck("getRoomStats");
        assert.equal(ack.ok, false);
        assert.equal(ack.code, "ACCESS_DENIED");
        assert.equal(typeof ack.message, "string");
        const error = await errors.waitFor(() => true);
        assert.equal(error.code, "ACCESS_DENIED");
        // an answer that comes after the ack and the error would land here
        assert.equal((await socket.emitWithAck("getOnlineUsers")).ok, true);
        assert.deepEqual(stats.events, []);
      }
    });
  } finally {
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("admin: roomStatsUpdate is pushed to admins every ROOM_STATS_INTERVAL, never to others", async () => {
  const running = await startApp({ SEED_FILE: FIXTURE, ROOM_STATS_INTERVAL: "200" });
  const sockets: Socket[] = [];
  try {
    const agent = await connectSocketAs(running, "agent:123", sockets);
    const client = await connectSocketAs(running, "client:789", sockets);
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const agentStats = new Recorder<Stats>(agent, "roomStatsUpdate");
    const clientStats = new Recorder<Stats>(client, "roomStatsUpdate");
    const adminStats = new Recorder<Stats>(admin, "roomStatsUpdate");
    assert.equal(
      (await agent.emitWithAck("userOnline", { userId: 123, userType: "agent" })).ok,
      true,
    );
    await queueDrained(running);
    const mark = adminStats.events.length;
    // three pushes the admin never asked for
    let n = 0;
    await adminStats.waitFor(() => ++n >= 3, mark);
    assert.ok(adminStats.events.length - mark >= 3);
    assertStats(adminStats.events.at(-1)!, { totalRooms: 4, activeRooms: 3, totalUsers: 1 });
    const timestamps = adminStats.events.map((s) => s.timestamp);
    assert.equal(new Set(timestamps).size, timestamps.length, "each push is a fresh reading");
    assert.deepEqual(agentStats.events, []);
    assert.deepEqual(clientStats.events, []);
  } finally {
    disconnectAll(sockets);
    await running.close();
  }
});

Deno.test("admin: disconnectUser", async (t) => {
  const lines: Record<string, unknown>[] = [];
  const previousSink = setLogSink({ write: (line) => lines.push(JSON.parse(line)) });
  const securityEvents = (event: string) =>
    lines.filter((l) => l.msg === "security" && l.event === event);
  const running = await startApp({ SEED_FILE: FIXTURE });
  const sockets: Socket[] = [];
  try {
    const admin = await connectSocketAs(running, "agent:1", sockets);
    const agent = await connectSocketAs(running, "agent:123", sockets);
    const laptop = await connectSocketAs(running, "client:789", sockets);
    const phone = await connectSocketAs(running, "client:789", sockets);
    const other = await connectSocketAs(running, "client:790", sockets);
    const pia = await connectSocketAs(running, "client:1", sockets);
    for (const socket of [laptop, phone]) {
      assert.equal(
        (await socket.emitWithAck("userOnline", { userId: 789, userType: "client" })).ok,
        true,
      );
    }

    await t.step("non-admins get ACCESS_DENIED and nobody is disconnected", async () => {
      for (const socket of [agent, other]) {
        const errors = new Recorder<{ code: string }>(socket, "error");
        const ack = await socket.emitWithAck("disconnectUser", { userId: 789, userType: "client" });
        assert.equal(ack.ok, false);
        assert.equal(ack.code, "ACCESS_DENIED");
        assert.equal((await errors.waitFor(() => true)).code, "ACCESS_DENIED");
      }
      const denied = securityEvents("access_denied").filter((l) =>
        l.socketEvent === "disconnectUser"
      );
      assert.deepEqual(denied.map((l) => [l.kind, l.userId, l.reason]), [
        ["agent", 123, "admin_only"],
        ["client", 790, "admin_only"],
      ]);
      // still connected: they answer
      for (const socket of [laptop, phone]) {
        assert.equal((await socket.emitWithAck("getOnlineUsers")).ok, true);
      }
    });

    await t.step("an admin disconnects every socket of the user", async () => {
      const seen = new Map<Socket, string[]>();
      const reasons = new Map<Socket, Promise<string>>();
      for (const socket of [laptop, phone]) {
        const log: string[] = [];
        seen.set(socket, log);
        socket.on("forcedDisconnect", (payload: { reason: string }) => {
          log.push(`forcedDisconnect:${payload.reason}`);
        });
        reasons.set(
          socket,
          new Promise((resolve) =>
            socket.once("disconnect", (reason) => {
              log.push(`disconnect:${reason}`);
              resolve(reason);
            })
          ),
        );
      }
      const ack = await admin.emitWithAck("disconnectUser", {
        userId: 789,
        userType: "client",
        reason: "Account under review",
      });
      assert.deepEqual(ack, { ok: true, userId: 789, userType: "client", disconnected: 2 });
      for (const socket of [laptop, phone]) {
        assert.equal(await reasons.get(socket), "io server disconnect");
        assert.deepEqual(seen.get(socket), [
          "forcedDisconnect:Account under review",
          "disconnect:io server disconnect",
        ]);
        assert.equal(socket.connected, false);
      }
      const logged = securityEvents("forced_disconnect");
      assert.equal(logged.length, 1);
      assert.equal(logged[0].adminId, 1);
      assert.equal(logged[0].kind, "client");
      assert.equal(logged[0].userId, 789);
      assert.equal(logged[0].sockets, 2);
      assert.equal(logged[0].reason, "Account under review");
      // the others stay connected
      for (const socket of [admin, agent, other, pia]) {
        assert.equal(socket.connected, true);
        assert.equal((await socket.emitWithAck("getOnlineUsers")).ok, true);
      }
      // and the user is offline
      await eventually(async () => {
        const list = await admin.emitWithAck("getOnlineUsers");
        return list.onlineUsers.length === 0;
      }, "789 offline after the forced disconnect");
      await eventually(
        () => !running.app.io.of("/").adapter.rooms.has("client_789"),
        "789's client room emptied",
      );
    });

    await t.step("customer 1 is disconnected, the admin agent 1 is not", async () => {
      const reason = new Promise<string>((resolve) => pia.once("disconnect", resolve));
      const forced = new Recorder<{ reason: string; by: number }>(pia, "forcedDisconnect");
      const adminForced = new Recorder<unknown>(admin, "forcedDisconnect");
      const ack = await admin.emitWithAck("disconnectUser", { userId: 1, userType: "client" });
      assert.deepEqual(ack, { ok: true, userId: 1, userType: "client", disconnected: 1 });
      assert.equal(await reason, "io server disconnect");
      assert.deepEqual(forced.events, [{ reason: "Disconnected by an administrator", by: 1 }]);
      assert.equal(admin.connected, true);
      assert.equal((await admin.emitWithAck("getOnlineUsers")).ok, true);
      assert.deepEqual(adminForced.events, []);
    });

    await t.step("a user with no socket: ok, disconnected 0", async () => {
      const ack = await admin.emitWithAck("disconnectUser", { userId: 789, userType: "client" });
      assert.deepEqual(ack, { ok: true, userId: 789, userType: "client", disconnected: 0 });
      // agent 789 does not exist: nobody is named by a number alone
      const agent789 = await admin.emitWithAck("disconnectUser", {
        userId: 789,
        userType: "agent",
      });
      assert.deepEqual(agent789, { ok: true, userId: 789, userType: "agent", disconnected: 0 });
    });

    await t.step(
      "a bad userId, or no userType, is INVALID_DATA and disconnects nobody",
      async () => {
        for (
          const [payload, field] of [
            [{ userId: "790", userType: "client" }, "userId"],
            [{ userId: 790 }, "userType"],
            [{ userId: 790, userType: "customer" }, "userType"],
          ] as const
        ) {
          const ack = await admin.emitWithAck("disconnectUser", payload);
          assert.equal(ack.ok, false);
          assert.equal(ack.code, "INVALID_DATA");
          assert.deepEqual(ack.details.issues.map((i: { field: string }) => i.field), [field]);
        }
        assert.equal(other.connected, true);
        assert.equal((await other.emitWithAck("getOnlineUsers")).ok, true);
      },
    );
  } finally {
    disconnectAll(sockets);
    await running.close();
    setLogSink(previousSink);
  }
});
