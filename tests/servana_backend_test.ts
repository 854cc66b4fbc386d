/**
 * The service beside Servana's Node backend (its REST side), two service
 * processes on one KV file and one real Redis:
 *
 * - the REST side's `io.to(room).emit(...)`, from a real Node process with
 *   npm `socket.io`, `@socket.io/redis-streams-adapter` and `redis`
 *   (tests/support/servana_backend.mjs), reach the apps' sockets on both
 *   processes through Servana's room names (`chat_<id>`, `agent_<id>`,
 *   `user_<id>`, `department_<id>`);
 * - agents' presence is in Redis as the backend's automatic assignment reads
 *   it (`user_presence:<sys_user_id>`, its JSON shape, 900 s expiry);
 * - two processes draining one queue at once never assign a conversation twice.
 *
 * Skipped, with the reason printed, where `redis-server` or `node` is absent.
 */

import assert from "node:assert/strict";
import { createClient } from "redis";
import type { Socket } from "socket.io-client";
import { mobileAppSocket, webAppSocket } from "./support/app_clients.ts";
import type { TestClient } from "./support/clients.ts";
import { testSecrets, tokenForPerson } from "./support/people.ts";
import {
  clusterEnv,
  ROOT_PATH,
  type ServerProcess,
  spawnServer,
  stopAll,
} from "./support/processes.ts";
import { redisAvailable, startRedis } from "./support/redis.ts";

function nodeAvailable(): string | null {
  try {
    const result = new Deno.Command("node", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return result.success ? null : "`node --version` failed";
  } catch {
    return "`node` (Node.js, playing Servana's backend) is not installed";
  }
}

const reason = redisAvailable() ?? nodeAvailable();
if (reason) console.log(`servana_backend_test skipped: ${reason}`);

const SECRET = "servana-backend-test-secret-0123456789";
const secrets = testSecrets(SECRET);

/** Runs tests/support/servana_backend.mjs with node; returns its JSON line. */
async function backend(args: string[]): Promise<unknown> {
  const result = await new Deno.Command("node", {
    args: [`${ROOT_PATH}tests/support/servana_backend.mjs`, ...args],
    cwd: `${ROOT_PATH}tests/support`,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(result.stdout);
  const err = new TextDecoder().decode(result.stderr);
  assert.ok(result.success, `servana_backend.mjs failed: ${err}`);
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

function closeClients(clients: (TestClient | undefined)[]): void {
  for (const client of clients) client?.close();
}

Deno.test({
  name: "Servana's REST side emits through Redis to the apps on two processes",
  ignore: reason !== null,
  async fn(t) {
    const redis = await startRedis();
    const cwd = await Deno.makeTempDir({ prefix: "servana-backend-" });
    const servers: ServerProcess[] = [];
    const clients: (TestClient | undefined)[] = [];
    try {
      const env = clusterEnv(SECRET, redis.url);
      const a = await spawnServer(cwd, env);
      servers.push(a);
      const b = await spawnServer(cwd, env);
      servers.push(b);
      const web = await webAppSocket(a.url, {
        token: await tokenForPerson("agent:123", secrets),
        sysUserId: 123,
      });
      clients.push(web);
      const mobile = await mobileAppSocket(b.url, {
        token: await tokenForPerson("client:789", secrets),
      });
      clients.push(mobile);
      // the agent is in the room before the customer joins (on the other process), so the
      // customer's join is announced to the agent
      web.socket.emit("chat:join", { chatGroupId: 456, userType: "agent", userId: 123 });
      await web.next("joinedRoom");
      mobile.socket.emit("chat:join", { chatGroupId: 456, userType: "client", userId: 789 });
      await web.next("userJoined");

      await t.step(
        "chat:resolved to chat_456 reaches the agent on A and the customer on B",
        async () => {
          const resolved = {
            chat_group_id: "456",
            status: "resolved",
            resolved_at: new Date().toISOString(),
            resolved_by_type: "agent",
            resolved_by_id: 123,
            system_message: {
              chat_id: `system_${Date.now()}`,
              chat_body: "Chat ended by agent",
              chat_group_id: "456",
              chat_created_at: new Date().toISOString(),
              sys_user_id: null,
              client_id: null,
              sender_type: "system",
            },
          };
          const marks = [web.mark(), mobile.mark()];
          await backend([
            "emit",
            redis.url,
            "servana",
            JSON.stringify([["chat_456", "chat:resolved", resolved]]),
          ]);
          assert.deepEqual(await web.next("chat:resolved", marks[0]), resolved);
          assert.deepEqual(await mobile.next("chat:resolved", marks[1]), resolved);
        },
      );

      await t.step(
        "customerListUpdate to agent_123 and to the repaired user_123, department_1; chatTransferred",
        async () => {
          const mark = web.mark();
          const mobileMark = mobile.mark();
          const update = {
            type: "move_to_top",
            data: { customer: { chat_group_id: 456 } },
            timestamp: "t",
          };
          await backend([
            "emit",
            redis.url,
            "servana",
            JSON.stringify([
              ["agent_123", "customerListUpdate", { ...update, via: "agent room" }],
              ["user_123", "customerListUpdate", { ...update, via: "user room" }],
              ["department_1", "customerListUpdate", {
                type: "new_queued_chat",
                via: "department",
              }],
              ["chat_456", "chatTransferred", { chat_group_id: "456", transfer_type: "manual" }],
            ]),
          ]);
          const transferred = await mobile.next("chatTransferred", mobileMark);
          assert.deepEqual(transferred, { chat_group_id: "456", transfer_type: "manual" });
          await web.next("chatTransferred", mark);
          const vias = web.received.slice(mark).filter((r) => r.event === "customerListUpdate")
            .map((r) => (r.args[0] as { via: string }).via).sort();
          assert.deepEqual(vias, ["agent room", "department", "user room"]);
          assert.ok(
            !mobile.received.slice(mobileMark).some((r) => r.event === "customerListUpdate"),
            "the customer is in none of those rooms",
          );
        },
      );
    } finally {
      closeClients(clients);
      await stopAll([], servers);
      await redis.stop();
      await Deno.remove(cwd, { recursive: true }).catch(() => {});
    }
  },
});

interface PresenceEntry {
  key: string;
  ttl: number;
  value: Record<string, unknown>;
}

Deno.test({
  name: "agents' presence in Redis as the backend's automatic assignment reads it",
  ignore: reason !== null,
  async fn(t) {
    const redis = await startRedis();
    const cwd = await Deno.makeTempDir({ prefix: "servana-presence-" });
    const servers: ServerProcess[] = [];
    const clients: (TestClient | undefined)[] = [];
    try {
      const env = clusterEnv(SECRET, redis.url);
      const a = await spawnServer(cwd, env);
      servers.push(a);
      const b = await spawnServer(cwd, env);
      servers.push(b);
      const presence = () => backend(["presence", redis.url]) as Promise<PresenceEntry[]>;

      const tabA = await webAppSocket(a.url, {
        token: await tokenForPerson("agent:123", secrets),
        sysUserId: 123,
      });
      clients.push(tabA);

      await t.step("connecting writes user_presence:123, accepting_chats, 900 s", async () => {
        const entries = await presence();
        assert.equal(entries.length, 1);
        const [entry] = entries;
        assert.equal(entry.key, "user_presence:123");
        assert.ok(entry.ttl > 890 && entry.ttl <= 900, `ttl ${entry.ttl}`);
        assert.deepEqual(Object.keys(entry.value).sort(), [
          "deptIds",
          "lastSeen",
          "socketId",
          "updatedAt",
          "userId",
          "userPresence",
          "userType",
        ]);
        assert.equal(entry.value.userId, 123);
        assert.equal(entry.value.userPresence, "accepting_chats");
        assert.equal(entry.value.userType, "agent");
        assert.deepEqual(entry.value.deptIds, [1]);
      });

      await t.step("presence:update is written, from any process", async () => {
        const tabB = await webAppSocket(b.url, {
          token: await tokenForPerson("agent:123", secrets),
          sysUserId: 123,
        });
        clients.push(tabB);
        const mark = tabA.mark();
        tabB.socket.emit("presence:update", { status: "not_accepting_chats" });
        await tabA.next("presence:change", mark);
        const [entry] = await presence();
        assert.equal(entry.value.userPresence, "not_accepting_chats");
        // one tab (on B) closing leaves the agent connected on A
        tabB.close();
        await tabA.sync();
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal((await presence()).length, 1, "still there with a tab open");
      });

      await t.step("the last tab closing deletes the key", async () => {
        tabA.close();
        let entries = await presence();
        for (let i = 0; i < 50 && entries.length > 0; i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          entries = await presence();
        }
        assert.deepEqual(entries, []);
      });

      await t.step("customers never appear", async () => {
        const mobile = await mobileAppSocket(a.url, {
          token: await tokenForPerson("client:1", secrets),
        });
        clients.push(mobile);
        await mobile.sync();
        assert.deepEqual(await presence(), [], "client 1 is not agent 1");
      });
    } finally {
      closeClients(clients);
      await stopAll([], servers);
      await redis.stop();
      await Deno.remove(cwd, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "two processes draining one queue at once never assign a conversation twice",
  ignore: reason !== null,
  async fn() {
    const redis = await startRedis();
    const cwd = await Deno.makeTempDir({ prefix: "servana-queue-" });
    const servers: ServerProcess[] = [];
    const sockets: Socket[] = [];
    const clients: (TestClient | undefined)[] = [];
    try {
      // twelve queued conversations in department 2 (and 459 from the demo fixture)
      const queued = Array.from({ length: 12 }, (_, i) => ({
        chat_group_id: 600 + i,
        client_id: 790,
        dept_id: 2,
        sys_user_id: null,
        status: "queued",
        created_at: new Date(Date.UTC(2026, 11, 1, 8, i)).toISOString(),
      }));
      const seed = JSON.parse(await Deno.readTextFile(`${ROOT_PATH}demo/fixture.json`));
      seed.chat_group.push(...queued);
      await Deno.writeTextFile(`${cwd}/seed.json`, JSON.stringify(seed));
      const env = { ...clusterEnv(SECRET, redis.url), SEED_FILE: `${cwd}/seed.json` };
      const a = await spawnServer(cwd, env);
      servers.push(a);
      const b = await spawnServer(cwd, env);
      servers.push(b);
      // the admin (departments 1 and 2) on A and Jane (department 2) on B connect at once
      const [admin, jane] = await Promise.all([
        webAppSocket(a.url, { token: await tokenForPerson("agent:1", secrets), sysUserId: 1 }),
        webAppSocket(b.url, { token: await tokenForPerson("agent:124", secrets), sysUserId: 124 }),
      ]);
      clients.push(admin, jane);
      // both drained; each assignment was announced to the agent who got it
      const assignedTo = new Map<number, number[]>();
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        assignedTo.clear();
        for (const [agent, client] of [[1, admin], [124, jane]] as const) {
          for (const payload of client.payloads("customerListUpdate")) {
            const p = payload as { type: string; data: { chat_group_id: number } };
            if (p.type !== "assigned") continue;
            assignedTo.set(p.data.chat_group_id, [
              ...(assignedTo.get(p.data.chat_group_id) ?? []),
              agent,
            ]);
          }
        }
        if (assignedTo.size >= 9) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      for (const [group, agents] of assignedTo) {
        assert.equal(agents.length, 1, `conversation ${group} assigned to ${agents}`);
      }
      // at most 5 active each (Jane already held 457): 4 more for her, 5 for the admin
      const counts = [1, 124].map((agent) =>
        [...assignedTo.values()].filter((agents) => agents[0] === agent).length
      );
      assert.deepEqual(counts, [5, 4], `assignments ${JSON.stringify([...assignedTo])}`);
    } finally {
      closeClients(clients);
      await stopAll(sockets, servers);
      await redis.stop();
      await Deno.remove(cwd, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "the REST side's Redis cache: keys the service's writes make stale are deleted",
  ignore: reason !== null,
  async fn(t) {
    const redis = await startRedis();
    const cwd = await Deno.makeTempDir({ prefix: "servana-cache-" });
    const servers: ServerProcess[] = [];
    const clients: (TestClient | undefined)[] = [];
    const cache = createClient({ url: redis.url });
    await cache.connect();
    // what the backend's cache service holds: history for two hours, agents' lists five minutes
    const cached = ["chat_messages:456", "chat_messages:457"];
    const lists = ["chat_group:user_chat_groups_123", "chat_group:user_chat_groups_124"];
    for (const key of cached) await cache.set(key, "[]", { EX: 7200 });
    for (const key of lists) await cache.set(key, "[]", { EX: 300 });
    const present = async (keys: string[]) => {
      const found: string[] = [];
      for (const key of keys) if (await cache.exists(key)) found.push(key);
      return found;
    };
    async function until(check: () => Promise<boolean>): Promise<void> {
      for (let i = 0; i < 100 && !await check(); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    try {
      const server = await spawnServer(cwd, clusterEnv(SECRET, redis.url));
      servers.push(server);

      await t.step("a message stored: that conversation's history key goes", async () => {
        const customer = await mobileAppSocket(server.url, {
          token: await tokenForPerson("client:789", secrets),
        });
        clients.push(customer);
        await customer.expectOk("chat:join", { chatGroupId: 456 });
        await customer.expectOk("sendMessage", { chat_body: "hi", chat_group_id: 456 });
        await until(async () => (await present(cached)).length < 2);
        assert.deepEqual(await present(cached), ["chat_messages:457"]);
      });

      await t.step("a queued conversation assigned: that agent's list key goes", async () => {
        // agent 124 (department 2) coming online drains queued 459
        const agent = await webAppSocket(server.url, {
          token: await tokenForPerson("agent:124", secrets),
          sysUserId: 124,
        });
        clients.push(agent);
        await agent.next("customerListUpdate");
        await until(async () => (await present(lists)).length < 2);
        assert.deepEqual(await present(lists), ["chat_group:user_chat_groups_123"]);
      });
    } finally {
      closeClients(clients);
      await cache.close();
      await stopAll([], servers);
      await redis.stop();
      await Deno.remove(cwd, { recursive: true }).catch(() => {});
    }
  },
});
