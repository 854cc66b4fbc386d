/**
 * The seed's "Memory Management": 2,000 sockets connect, go online, join
 * their chat group, type, and disconnect (in batches, over WebSocket); then
 * the process's own maps are back at their starting size: Engine.IO
 * sessions, socket.io sockets, adapter rooms and socket ids, typing
 * throttles, presence entries in KV (and rate-limit windows stay one per
 * user, not per socket).
 *
 * A few real users share many sockets (several tabs), and every tenth socket
 * closes without waiting for its answers, while its events are in flight.
 */

import assert from "node:assert/strict";
import { io as connect, type Socket } from "socket.io-client";
import { PRESENCE_PREFIX } from "../src/presence.ts";
import { RATE_LIMIT_PREFIX } from "../src/rate_limit.ts";
import { setLogSink } from "../src/log.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const SOCKETS = 2000;
const BATCH = 100;
const CLIENTS = 50;
const AGENTS = 5;
const CLIENT_BASE = 5000;
const GROUP_BASE = 6000;
const AGENT_BASE = 4000;

interface TestUser {
  id: number;
  authId: string;
  role: "client" | "agent";
  /** The chat group this user may join. */
  groupId: number;
}

function fixture(): { json: string; users: TestUser[] } {
  const users: TestUser[] = [];
  const chatGroups = [];
  const fixtureUsers: Record<string, unknown>[] = [
    { id: 1, authId: "admin-1", role: "admin", departments: [1] },
  ];
  for (let i = 0; i < CLIENTS; i++) {
    const id = CLIENT_BASE + i;
    fixtureUsers.push({ id, authId: `mem-client-${i}`, role: "client" });
    chatGroups.push({ id: GROUP_BASE + i, clientId: id, departmentId: 1, status: "active" });
    users.push({ id, authId: `mem-client-${i}`, role: "client", groupId: GROUP_BASE + i });
  }
  for (let j = 0; j < AGENTS; j++) {
    const id = AGENT_BASE + j;
    fixtureUsers.push({ id, authId: `mem-agent-${j}`, role: "agent", departments: [1] });
    // an agent of department 1 may join every department-1 group
    users.push({ id, authId: `mem-agent-${j}`, role: "agent", groupId: GROUP_BASE + j * 7 });
  }
  const json = JSON.stringify({
    departments: [{ id: 1, name: "Support" }],
    users: fixtureUsers,
    chatGroups,
  });
  return { json, users };
}

interface Sizes {
  engineClients: number;
  sockets: number;
  rooms: number;
  sids: number;
  typing: number;
  presence: number;
  sessions: number;
}

async function countKeys(kv: Deno.Kv, prefix: Deno.KvKey): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix })) n++;
  return n;
}

async function sizes(running: RunningApp, kv: Deno.Kv): Promise<Sizes> {
  const { app } = running;
  const nsp = app.io.of("/");
  const adapter = nsp.adapter as typeof nsp.adapter & { sessions?: Map<string, unknown> };
  return {
    engineClients: app.engine.clientsCount,
    sockets: nsp.sockets.size,
    rooms: adapter.rooms.size,
    sids: adapter.sids.size,
    typing: app.services.typing.size,
    presence: await countKeys(kv, [PRESENCE_PREFIX]),
    // sessions kept for connection state recovery: a clean disconnect keeps none
    sessions: adapter.sessions?.size ?? 0,
  };
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

function open(url: string, token: string): Promise<Socket> {
  const socket = connect(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    auth: { token },
  });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => {
      socket.disconnect();
      reject(err);
    });
  });
}

/** One socket's life: online, join its group, type, stop typing, then close. */
async function life(socket: Socket, user: TestUser, waitForAnswers: boolean): Promise<void> {
  const online = { userId: user.id, userType: user.role };
  const join = { groupId: user.groupId, userId: user.id, userType: user.role };
  const typing = { chatGroupId: user.groupId, userId: user.id, userType: user.role };
  if (!waitForAnswers) {
    // a tab closed while its events are in flight
    socket.emit("userOnline", online);
    socket.emit("joinChatGroup", join);
    socket.emit("typing", typing);
    await sleep(1);
    socket.disconnect();
    return;
  }
  const acks = [
    await socket.emitWithAck("userOnline", online),
    await socket.emitWithAck("joinChatGroup", join),
    await socket.emitWithAck("typing", typing),
    await socket.emitWithAck("userHeartbeat", { userId: user.id }),
  ];
  for (const ack of acks) assert.equal(ack.ok, true, JSON.stringify(ack));
  socket.disconnect();
}

Deno.test({
  name: "memory: 2,000 sockets come and go, and the process's maps are back at their start",
  async fn() {
    const { json, users } = fixture();
    const file = await Deno.makeTempFile({ suffix: ".json" });
    await Deno.writeTextFile(file, json);
    // 2,000 auth_success lines would drown the output: keep warnings and errors only
    const previousSink = setLogSink({
      write(line) {
        if (!line.includes('"level":"info"')) console.error(line);
      },
    });
    const kv = await Deno.openKv(":memory:");
    const running = await startApp({
      SEED_FILE: file,
      RATE_LIMIT_STATUS: "4000",
      TYPING_THROTTLE: "60000",
      // batches of 100 handshakes at once, all from 127.0.0.1
      SOCKET_PENDING_PER_ADDRESS: String(BATCH),
    }, { kv });
    const sockets: Socket[] = [];
    try {
      const tokens = new Map<number, string>();
      for (const user of users) tokens.set(user.id, await running.app.mintDevToken!(user.authId));

      // an admin watches the whole time, so every broadcast has a receiver
      const observer = await open(running.url, await running.app.mintDevToken!("admin-1"));
      sockets.push(observer);
      let updates = 0;
      observer.on("onlineUsersUpdate", () => updates++);
      assert.equal(
        (await observer.emitWithAck("userOnline", { userId: 1, userType: "admin" })).ok,
        true,
      );
      const start = await sizes(running, kv);
      assert.equal(start.sockets, 1);
      assert.equal(start.presence, 2, "the observer's user key and socket key");

      for (let first = 0; first < SOCKETS; first += BATCH) {
        const batch = Array.from({ length: BATCH }, (_, k) => first + k);
        await Promise.all(batch.map(async (n) => {
          const user = users[n % users.length];
          const socket = await open(running.url, tokens.get(user.id)!);
          sockets.push(socket);
          await life(socket, user, n % 10 !== 0);
        }));
        // keep the client side's list from growing: closed sockets are done with
        sockets.splice(1);
      }

      // the server handles the last closes asynchronously: wait until they are done
      const deadline = Date.now() + 15_000;
      let now = await sizes(running, kv);
      while (JSON.stringify(now) !== JSON.stringify(start) && Date.now() < deadline) {
        await sleep(100);
        now = await sizes(running, kv);
      }
      assert.deepEqual(now, start);

      // rate-limit windows: one entry per user (and kind), never one per socket
      const windows = await countKeys(kv, [RATE_LIMIT_PREFIX]);
      assert.ok(windows <= users.length + 1, `${windows} rate-limit entries`);
      // presence churn was announced, coalesced
      assert.ok(updates > 0);
      // the observer is still served
      const list = await observer.emitWithAck("getOnlineUsers");
      assert.deepEqual(list.onlineUsers.map((u: { userId: number }) => u.userId), [1]);
    } finally {
      for (const s of sockets) s.disconnect();
      await running.close();
      setLogSink(previousSink);
      await Deno.remove(file);
    }
  },
});
