/**
 * The seed's "Memory Management": 2,000 sockets connect, go online, join
 * their chat group, type, and disconnect (in batches, over WebSocket); then
 * the process's own maps are back at their starting size: Engine.IO
 * sessions, socket.io sockets, adapter rooms and socket ids, typing
 * throttles, security-log throttles, presence, membership and availability
 * entries in KV (and rate-limit windows stay one per person, not per socket).
 *
 * A few real people share many sockets (several tabs); every tenth socket
 * closes without waiting for its answers, while its events are in flight, and
 * every tenth loses its transport without a disconnect packet (a dropped
 * network), which leaves exactly one recovery session.
 */

import assert from "node:assert/strict";
import { io as connect, type Socket } from "socket.io-client";
import { PRESENCE_PREFIX } from "../src/presence.ts";
import { RATE_LIMIT_PREFIX } from "../src/rate_limit.ts";
import { setLogSink } from "../src/log.ts";
import { tokenFor } from "./support/clients.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const SOCKETS = 2000;
const BATCH = 100;
const CLIENTS = 50;
const AGENTS = 5;
const CLIENT_BASE = 5000;
const GROUP_BASE = 6000;
const AGENT_BASE = 4000;

interface TestUser {
  /** `agent:4000`, `client:5000`. */
  who: string;
  id: number;
  role: "client" | "agent";
  /** The chat group this person may join. */
  groupId: number;
}

/** A Servana-shaped fixture: 50 customers with a conversation each, 5 agents of department 1. */
function fixture(): { json: string; users: TestUser[] } {
  const users: TestUser[] = [];
  const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
  const data = {
    department: [{ dept_id: 1, dept_name: "Support" }],
    role: [{ role_id: 1, role_name: "Admin" }, { role_id: 2, role_name: "Agent" }],
    profile: [] as Record<string, unknown>[],
    sys_user: [{
      sys_user_id: 1,
      sys_user_email: "admin@example.com",
      supabase_user_id: uuid(1),
      role_id: 1,
    }] as Record<string, unknown>[],
    sys_user_department: [{ sys_user_id: 1, dept_id: 1 }] as Record<string, unknown>[],
    client: [] as Record<string, unknown>[],
    chat_group: [] as Record<string, unknown>[],
  };
  for (let i = 0; i < CLIENTS; i++) {
    const id = CLIENT_BASE + i;
    data.client.push({ client_id: id, client_country_code: "+63", client_number: `917${id}` });
    data.chat_group.push({
      chat_group_id: GROUP_BASE + i,
      client_id: id,
      dept_id: 1,
      status: "active",
    });
    users.push({ who: `client:${id}`, id, role: "client", groupId: GROUP_BASE + i });
  }
  for (let j = 0; j < AGENTS; j++) {
    const id = AGENT_BASE + j;
    data.sys_user.push({
      sys_user_id: id,
      sys_user_email: `agent${j}@example.com`,
      supabase_user_id: uuid(id),
      role_id: 2,
    });
    data.sys_user_department.push({ sys_user_id: id, dept_id: 1 });
    // an agent of department 1 may join every department-1 group
    users.push({ who: `agent:${id}`, id, role: "agent", groupId: GROUP_BASE + j * 7 });
  }
  return { json: JSON.stringify(data), users };
}

interface Sizes {
  engineClients: number;
  sockets: number;
  rooms: number;
  sids: number;
  typing: number;
  securityLog: number;
  presence: number;
  membership: number;
  availability: number;
}

async function countKeys(kv: Deno.Kv, prefix: Deno.KvKey): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix })) n++;
  return n;
}

async function sizes(running: RunningApp, kv: Deno.Kv): Promise<Sizes> {
  const { app } = running;
  const nsp = app.io.of("/");
  const adapter = nsp.adapter;
  return {
    engineClients: app.engine.clientsCount,
    sockets: nsp.sockets.size,
    rooms: adapter.rooms.size,
    sids: adapter.sids.size,
    typing: app.services.typing.size,
    securityLog: app.services.securityLog.size,
    presence: await countKeys(kv, [PRESENCE_PREFIX]),
    membership: await countKeys(kv, ["m"]),
    availability: await countKeys(kv, ["availability"]),
  };
}

/** Sessions kept for connection state recovery (a clean disconnect keeps none). */
function sessions(running: RunningApp): number {
  const adapter = running.app.io.of("/").adapter as unknown as { sessions?: Map<string, unknown> };
  return adapter.sessions?.size ?? 0;
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

/** How a socket's life ends. */
type Ending = "clean" | "in flight" | "dropped";

/**
 * One socket's life: online, join its group, type, then close: cleanly, with
 * its events still in flight, or by a dropped transport (no disconnect packet).
 */
async function life(socket: Socket, user: TestUser, ending: Ending): Promise<void> {
  const online = { userId: user.id, userType: user.role };
  const join = { groupId: user.groupId, userId: user.id, userType: user.role };
  const typing = { chatGroupId: user.groupId, userId: user.id, userType: user.role };
  if (ending === "in flight") {
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
  if (ending === "dropped") {
    // the network goes away: the server sees a transport close and keeps a recovery session
    socket.io.opts.reconnection = false;
    socket.io.engine.close();
    return;
  }
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
      RATE_LIMIT_READS: "4000",
      TYPING_THROTTLE: "60000",
      MAX_SOCKETS_PER_PERSON: "1000",
      // batches of 100 handshakes at once, all from 127.0.0.1
      SOCKET_PENDING_PER_ADDRESS: String(BATCH),
    }, { kv });
    const sockets: Socket[] = [];
    try {
      const tokens = new Map<string, string>();
      for (const user of users) tokens.set(user.who, await tokenFor(running, user.who));

      // an admin watches the whole time, so every broadcast has a receiver
      const observer = await open(running.url, await tokenFor(running, "agent:1"));
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
      assert.equal(start.availability, 1, "the observer is an agent");
      let dropped = 0;

      for (let first = 0; first < SOCKETS; first += BATCH) {
        const batch = Array.from({ length: BATCH }, (_, k) => first + k);
        await Promise.all(batch.map(async (n) => {
          const user = users[n % users.length];
          const socket = await open(running.url, tokens.get(user.who)!);
          sockets.push(socket);
          const ending: Ending = n % 10 === 0 ? "in flight" : n % 10 === 5 ? "dropped" : "clean";
          if (ending === "dropped") dropped++;
          await life(socket, user, ending);
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
      // the dropped sockets left one recovery session each (expiring with the window), no more
      assert.equal(sessions(running), dropped);
      // an agent's status is remembered for the window: one entry per agent, never per socket
      assert.ok(
        (await countKeys(kv, ["availability_last"])) <= AGENTS,
        "availability tombstones per agent",
      );

      // rate-limit windows: one entry per person and budget, never one per socket
      const windows = await countKeys(kv, [RATE_LIMIT_PREFIX]);
      assert.ok(windows <= (users.length + 1) * 2, `${windows} rate-limit entries`);
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
