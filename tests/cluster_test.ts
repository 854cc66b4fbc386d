/**
 * Two server processes on one machine, sharing one Deno KV file and one real
 * Redis (socket.io's Redis Streams adapter): chat, presence, rate limits,
 * forced disconnects and connection state recovery work across them.
 * Skipped, with the reason printed, where `redis-server` is absent.
 */

import assert from "node:assert/strict";
import { createClient } from "redis";
import { io as connect, type Socket } from "socket.io-client";
import { testSecrets, tokenForPerson } from "./support/people.ts";
import {
  type Ack,
  clusterEnv,
  connectAsUser,
  nextEvent,
  request,
  type ServerProcess,
  spawnServer,
  stopAll,
} from "./support/processes.ts";
import { redisAvailable, startRedis } from "./support/redis.ts";

const reason = redisAvailable();
if (reason) console.log(`cluster_test skipped: ${reason}`);

const SECRET = "cluster-test-secret-0123456789abcdef";

/**
 * Every value Redis holds, as text: strings, hashes, lists, sets and every
 * stream entry, each also base64-decoded (the adapter stores msgpack in
 * base64), keyed by the Redis key.
 */
async function dumpRedis(url: string): Promise<{ key: string; text: string }[]> {
  const client = createClient({ url });
  await client.connect();
  const out: { key: string; text: string }[] = [];
  try {
    let cursor = "0";
    do {
      const [next, keys] = await client.sendCommand(["SCAN", cursor, "COUNT", "1000"]) as [
        string,
        string[],
      ];
      cursor = next;
      for (const key of keys) {
        const type = String(await client.sendCommand(["TYPE", key]));
        const command = {
          string: ["GET", key],
          hash: ["HGETALL", key],
          list: ["LRANGE", key, "0", "-1"],
          set: ["SMEMBERS", key],
          zset: ["ZRANGE", key, "0", "-1"],
          stream: ["XRANGE", key, "-", "+"],
        }[type];
        if (command === undefined) continue;
        const raw = JSON.stringify(await client.sendCommand(command));
        const decoded = (raw.match(/[A-Za-z0-9+/]{16,}={0,2}/g) ?? []).map((chunk) => {
          try {
            return new TextDecoder().decode(Uint8Array.from(atob(chunk), (c) => c.charCodeAt(0)));
          } catch {
            return "";
          }
        });
        out.push({ key, text: [raw, ...decoded].join("\n") });
      }
    } while (cursor !== "0");
  } finally {
    await client.close();
  }
  return out;
}

/**
 * Records every message published on any Redis channel (the adapter's
 * requests and responses, such as `fetchSockets` answers, go by pub/sub and
 * are never stored), as text.
 */
async function recordPublished(
  url: string,
): Promise<{ stop(): Promise<{ key: string; text: string }[]> }> {
  const client = createClient({ url });
  await client.connect();
  const seen: { key: string; text: string }[] = [];
  await client.pSubscribe("*", (message: Buffer, channel: Buffer) => {
    seen.push({ key: `channel ${channel}`, text: new TextDecoder().decode(message) });
  }, true);
  return {
    async stop() {
      await client.pUnsubscribe();
      await client.close();
      return seen;
    },
  };
}

interface OnlineUser {
  userId: number;
  userType: string;
}

Deno.test({
  name: "cluster: two processes, one KV file, one Redis",
  ignore: reason !== null,
  async fn(t) {
    const redis = await startRedis();
    const cwd = await Deno.makeTempDir({ prefix: "servana-cluster-" });
    const env = {
      ...clusterEnv(SECRET, redis.url),
      RATE_LIMIT_MESSAGES: "5",
      RATE_LIMIT_WINDOW: "600000",
    };
    const servers: ServerProcess[] = [];
    const sockets: Socket[] = [];
    function as(server: ServerProcess, authId: string, reconnection = false): Promise<Socket> {
      return connectAsUser(server, authId, { secret: SECRET, sockets, reconnection });
    }
    try {
      // one after the other: both load the fixture into the same KV file
      const a = await spawnServer(cwd, env);
      servers.push(a);
      const b = await spawnServer(cwd, env);
      servers.push(b);

      const agent = await as(a, "agent:123");
      const client = await as(b, "client:789");

      await t.step("an agent on A and a client on B chat both ways", async () => {
        assert.equal((await request(agent, "joinChatGroup", { groupId: 456 })).ok, true);
        const joined = nextEvent(agent, "userJoined", (p) => p.userId === 789);
        const join = await request(client, "joinChatGroup", { groupId: 456 });
        assert.equal(join.ok, true);
        // membership is counted across both processes
        assert.equal(join.memberCount, 2);
        assert.equal((await joined).chatGroupId, 456);

        const atAgent = nextEvent(agent, "receiveMessage", (p) => p.chat_message === "from B");
        const atClientOwn = nextEvent(client, "receiveMessage", (p) => p.chat_message === "from B");
        const sent = await request(client, "sendMessage", {
          message: "from B",
          chatGroupId: 456,
          clientId: 789,
        });
        assert.equal(sent.ok, true, JSON.stringify(sent));
        assert.equal((await atAgent).chat_id, sent.chat_id);
        assert.equal((await atClientOwn).chat_id, sent.chat_id);

        const atClient = nextEvent(client, "receiveMessage", (p) => p.chat_message === "from A");
        const reply = await request(agent, "sendMessage", {
          message: "from A",
          chatGroupId: 456,
          clientId: 789,
        });
        assert.equal(reply.ok, true, JSON.stringify(reply));
        const got = await atClient;
        assert.equal(got.chat_id, reply.chat_id);
        assert.deepEqual((got.sender as { userId: number }).userId, 123);
      });

      await t.step("presence is the same from both processes", async () => {
        assert.equal(
          (await request(agent, "userOnline", { userId: 123, userType: "agent" })).ok,
          true,
        );
        assert.equal(
          (await request(client, "userOnline", { userId: 789, userType: "client" })).ok,
          true,
        );
        const staffOnA = await as(a, "agent:1");
        const staffOnB = await as(b, "agent:124");
        const fromA = (await request(staffOnA, "getOnlineUsers")).onlineUsers as OnlineUser[];
        const fromB = (await request(staffOnB, "getOnlineUsers")).onlineUsers as OnlineUser[];
        const ids = (list: OnlineUser[]) => list.map((u) => u.userId).sort((x, y) => x - y);
        assert.deepEqual(ids(fromA), [123, 789]);
        assert.deepEqual(ids(fromB), ids(fromA));
      });

      await t.step("the message rate limit counts across both processes", async () => {
        const onA = await as(a, "client:790");
        const onB = await as(b, "client:790");
        for (const s of [onA, onB]) {
          assert.equal((await request(s, "joinChatGroup", { groupId: 457 })).ok, true);
        }
        const replies: Ack[] = [];
        for (const [s, n] of [[onA, 3], [onB, 3]] as const) {
          for (let i = 0; i < n; i++) {
            replies.push(
              await request(s, "sendMessage", {
                message: `burst ${replies.length + 1}`,
                chatGroupId: 457,
                clientId: 790,
              }),
            );
          }
        }
        assert.deepEqual(replies.map((r) => r.ok), [true, true, true, true, true, false]);
        assert.equal(replies[5].code, "RATE_LIMIT_EXCEEDED");
      });

      await t.step(
        "connection state recovery through Redis after a dropped transport",
        async () => {
          const watcher = await as(a, "agent:124");
          const dropped = await as(b, "client:790", true);
          assert.equal((await request(watcher, "joinChatGroup", { groupId: 457 })).ok, true);
          assert.equal((await request(dropped, "joinChatGroup", { groupId: 457 })).ok, true);
          // a first broadcast gives the client an offset to resume from
          const first = nextEvent(dropped, "receiveMessage", (p) => p.chat_message === "before");
          const ack1 = await request(watcher, "sendMessage", {
            message: "before",
            chatGroupId: 457,
            clientId: 790,
          });
          assert.equal(ack1.ok, true, JSON.stringify(ack1));
          await first;

          const back = new Promise<void>((resolve) => dropped.once("connect", () => resolve()));
          const missed = nextEvent(
            dropped,
            "receiveMessage",
            (p) => p.chat_message === "while away",
          );
          dropped.io.engine.close(); // abrupt transport close; the client reconnects by itself
          const ack2 = await request(watcher, "sendMessage", {
            message: "while away",
            chatGroupId: 457,
            clientId: 790,
          });
          assert.equal(ack2.ok, true, JSON.stringify(ack2));
          await back;
          assert.equal(dropped.recovered, true, "session recovered");
          assert.equal((await missed).chat_id, ack2.chat_id);
        },
      );

      await t.step("disconnectUser from an admin on A disconnects the user on B", async () => {
        const admin = await as(a, "agent:1");
        const forced = nextEvent(client, "forcedDisconnect");
        const gone = new Promise<string>((resolve) => client.once("disconnect", resolve));
        const ack = await request(admin, "disconnectUser", {
          userId: 789,
          userType: "client",
          reason: "cluster test",
        });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        assert.equal(ack.disconnected, 1);
        assert.equal((await forced).reason, "cluster test");
        assert.equal(await gone, "io server disconnect");
        assert.equal(agent.connected, true, "others stay connected");
      });

      await t.step(
        "no credential reaches Redis: no token, cookie or Authorization in any key or stream entry",
        async () => {
          // a customer with all three token sources, on B: joins, chats, drops (a recovery
          // session is saved in Redis), comes back, and is disconnected by the admin on A
          const published = await recordPublished(redis.url);
          const token = await tokenForPerson("client:1", testSecrets(SECRET));
          const signature = token.split(".")[2];
          const customer = connect(b.url, {
            forceNew: true,
            transports: ["polling"],
            reconnectionDelay: 50,
            auth: { token },
            extraHeaders: { Authorization: `Bearer ${token}`, Cookie: `access_token=${token}` },
          });
          sockets.push(customer);
          await new Promise<void>((resolve, reject) => {
            customer.once("connect", () => resolve());
            customer.once("connect_error", reject);
          });
          const watcher = await as(a, "agent:124");
          assert.equal((await request(watcher, "joinChatGroup", { groupId: 459 })).ok, true);
          assert.equal((await request(customer, "joinChatGroup", { groupId: 459 })).ok, true);
          const seen = nextEvent(customer, "receiveMessage", (p) => p.chat_message === "hello");
          await request(watcher, "sendMessage", {
            message: "hello",
            chatGroupId: 459,
            clientId: 1,
          });
          await seen;
          const back = new Promise<void>((resolve) => customer.once("connect", () => resolve()));
          customer.io.engine.close();
          await back;
          assert.equal(customer.recovered, true);
          const admin = await as(a, "agent:1");
          const ack = await request(admin, "disconnectUser", { userId: 1, userType: "client" });
          assert.equal(ack.disconnected, 1, JSON.stringify(ack));

          const dump = [...await dumpRedis(redis.url), ...await published.stop()];
          // the dump reads what went over the stream: the message text is there
          assert.ok(dump.some((entry) => entry.text.includes("hello")), "the stream is read");
          for (const needle of [signature, "Bearer ", "access_token="]) {
            const found = dump.filter((entry) => entry.text.includes(needle));
            assert.deepEqual(found.map((f) => f.key), [], `${needle.slice(0, 12)}… on Redis`);
          }
        },
      );

      await t.step("both processes stop cleanly on SIGTERM", async () => {
        for (const s of sockets) s.disconnect();
        for (const server of servers) {
          const status = await server.stop("SIGTERM");
          assert.equal(status.code, 0, server.stderr().slice(-2000));
        }
      });
    } finally {
      await stopAll(sockets, servers);
      for (const server of servers) {
        const stderr = server.stderr();
        assert.ok(!stderr.includes("NotCapable") && !stderr.includes("PermissionDenied"), stderr);
      }
      await redis.stop();
      await Deno.remove(cwd, { recursive: true });
    }
  },
});
