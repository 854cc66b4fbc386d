/**
 * Faults: Redis goes away (two processes keep serving their own sockets, log
 * the outage once, and resume cross-process delivery when Redis is back),
 * and the database goes away (sends fail with SERVER_ERROR, /readyz answers
 * 503, nothing unstored is broadcast or acked, and it recovers by itself).
 * Each part is skipped, with the reason printed, where its server binary
 * (`redis-server`, PostgreSQL) is absent.
 */

import assert from "node:assert/strict";
import { tokenFor } from "./support/clients.ts";
import postgres from "postgres";
import type { Socket } from "socket.io-client";
import { migrate } from "../src/store/migrate.ts";
import { postgresAvailable, startPostgres } from "./support/postgres.ts";
import {
  type Ack,
  clusterEnv,
  connectAsUser,
  connectClient,
  nextEvent,
  request,
  type ServerProcess,
  spawnServer,
  stopAll,
  WAIT_LIMIT,
} from "./support/processes.ts";
import { redisAvailable, startRedis } from "./support/redis.ts";
import { captureLog } from "./support/log_capture.ts";
import { startApp } from "./support/server.ts";

const redisReason = redisAvailable();
if (redisReason) console.log(`faults_test (Redis part) skipped: ${redisReason}`);
const pgReason = postgresAvailable();
if (pgReason) console.log(`faults_test (database part) skipped: ${pgReason}`);

const SECRET = "faults-test-secret-0123456789abcdef";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Log lines of a process with this `msg`. */
function logLines(server: ServerProcess, msg: string): Record<string, unknown>[] {
  return server.stderr().split("\n").filter((line) => line.startsWith("{")).map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return {};
    }
  }).filter((entry) => entry.msg === msg);
}

/** Waits (bounded) until a process has logged `msg` at least `count` times. */
async function waitForLog(server: ServerProcess, msg: string, count = 1): Promise<void> {
  for (let waited = 0; waited < WAIT_LIMIT; waited += 50) {
    if (logLines(server, msg).length >= count) return;
    await sleep(50);
  }
  throw new Error(`"${msg}" not logged:\n${server.stderr().slice(-3000)}`);
}

/** Sends and resolves whether `receiver` got the message (bounded wait). */
async function delivered(sender: Socket, receiver: Socket, payload: {
  message: string;
  chatGroupId: number;
  clientId: number;
}, limitMs: number): Promise<boolean> {
  let listener: ((p: { chat_message: string }) => void) | undefined;
  const arrived = new Promise<boolean>((resolve) => {
    listener = (p) => {
      if (p.chat_message === payload.message) resolve(true);
    };
    receiver.on("receiveMessage", listener);
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), limitMs));
  try {
    const ack = await request(sender, "sendMessage", payload);
    assert.equal(ack.ok, true, JSON.stringify(ack));
    return await Promise.race([arrived, late]);
  } finally {
    clearTimeout(timer);
    receiver.off("receiveMessage", listener);
  }
}

async function readyStatus(url: string): Promise<number> {
  const res = await fetch(`${url}/readyz`);
  await res.body?.cancel();
  return res.status;
}

Deno.test({
  name: "faults: Redis goes away and comes back",
  ignore: redisReason !== null,
  async fn(t) {
    const redis = await startRedis();
    const cwd = await Deno.makeTempDir({ prefix: "servana-faults-" });
    const env = {
      ...clusterEnv(SECRET, redis.url),
      SOCKET_DEBUG: "true", // shows each reconnection attempt (debug lines)
    };
    const servers: ServerProcess[] = [];
    const sockets: Socket[] = [];
    function as(server: ServerProcess, authId: string): Promise<Socket> {
      return connectAsUser(server, authId, { secret: SECRET, sockets });
    }
    async function join(socket: Socket, groupId: number) {
      const ack = await request(socket, "joinChatGroup", { groupId });
      assert.equal(ack.ok, true, JSON.stringify(ack));
    }
    try {
      const a = await spawnServer(cwd, env);
      servers.push(a);
      const b = await spawnServer(cwd, env);
      servers.push(b);
      // group 456 lives on A only; group 457 spans A (client) and B (agent)
      const agentA = await as(a, "agent:123");
      const clientA = await as(a, "client:789");
      const clientA2 = await as(a, "client:790");
      const agentB = await as(b, "agent:124");
      for (
        const [s, g] of [[agentA, 456], [clientA, 456], [clientA2, 457], [agentB, 457]] as const
      ) {
        await join(s, g);
      }
      const m457 = { chatGroupId: 457, clientId: 790 };

      await t.step("before: cross-process delivery works", async () => {
        assert.equal(
          await delivered(clientA2, agentB, { ...m457, message: "before" }, WAIT_LIMIT),
          true,
        );
      });

      await redis.pause();

      await t.step("while Redis is down, A serves its own sockets", async () => {
        await waitForLog(
          a,
          "redis unreachable: cross-process delivery paused, serving local sockets",
        );
        const got = nextEvent(
          agentA,
          "receiveMessage",
          (p) => p.chat_message === "local while down",
        );
        const ack = await request(clientA, "sendMessage", {
          message: "local while down",
          chatGroupId: 456,
          clientId: 789,
        });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        assert.equal((await got).chat_id, ack.chat_id);

        // a new connection and a join (fetchSockets) work too
        const late = await as(a, "agent:123");
        const joined = await request(late, "joinChatGroup", { groupId: 456 });
        assert.equal(joined.ok, true, JSON.stringify(joined));
        const back = nextEvent(late, "receiveMessage", (p) => p.chat_message === "to the newcomer");
        const ack2: Ack = await request(clientA, "sendMessage", {
          message: "to the newcomer",
          chatGroupId: 456,
          clientId: 789,
        });
        assert.equal(ack2.ok, true);
        await back;
      });

      await t.step("the outage is logged once, not once per reconnection attempt", async () => {
        await waitForLog(a, "redis reconnecting", 3);
        assert.equal(
          logLines(a, "redis unreachable: cross-process delivery paused, serving local sockets")
            .length,
          1,
        );
      });

      await redis.resume();

      await t.step(
        "Redis back: reconnects by itself and cross-process delivery resumes",
        async () => {
          for (const server of [a, b]) {
            await waitForLog(server, "redis reachable again: cross-process delivery resumed");
          }
          // the adapter's stream reader reconnects on its own schedule: a few tries
          let ok = false;
          let tries = 0;
          while (tries < 10 && !ok) {
            ok = await delivered(clientA2, agentB, { ...m457, message: `after ${tries++}` }, 1000);
          }
          console.log(`cross-process delivery back after ${tries} send(s)`);
          for (const line of logLines(a, "redis reachable again: cross-process delivery resumed")) {
            console.log(`A was cut off from Redis for ${line.downMs} ms`);
          }
          assert.equal(ok, true, "a message from A reached B after Redis came back");
          const fromB = nextEvent(clientA2, "receiveMessage", (p) => p.chat_message === "B to A");
          const ack = await request(agentB, "sendMessage", { ...m457, message: "B to A" });
          assert.equal(ack.ok, true, JSON.stringify(ack));
          assert.equal((await fromB).chat_id, ack.chat_id);
          for (const server of [a, b]) {
            assert.equal(
              logLines(
                server,
                "redis unreachable: cross-process delivery paused, serving local sockets",
              )
                .length,
              1,
            );
          }
        },
      );

      await t.step("both stop cleanly", async () => {
        for (const s of sockets) s.disconnect();
        for (const server of servers) {
          assert.equal((await server.stop("SIGTERM")).code, 0, server.stderr().slice(-2000));
        }
      });
    } finally {
      await stopAll(sockets, servers);
      await redis.stop();
      await Deno.remove(cwd, { recursive: true });
    }
  },
});

Deno.test({
  name: "faults: the database goes away and comes back",
  ignore: pgReason !== null,
  async fn(t) {
    const pg = await startPostgres();
    const sockets: Socket[] = [];
    let app: Awaited<ReturnType<typeof startApp>> | null = null;
    try {
      const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
      try {
        await migrate(sql);
      } finally {
        await sql.end({ timeout: 5 });
      }
      app = await startApp({ DATABASE_URL: pg.url, SEED_FILE: "demo/fixture.json" });
      const running = app;
      const mint = (who: string) => tokenFor(running, who);
      const agent = await connectClient(running.url, await mint("agent:123"));
      const client = await connectClient(running.url, await mint("client:789"));
      sockets.push(agent, client);
      const seen: string[] = [];
      agent.on("receiveMessage", (p: { chat_message: string }) => seen.push(p.chat_message));
      for (const s of [agent, client]) {
        assert.equal((await request(s, "joinChatGroup", { groupId: 456 })).ok, true);
      }
      const msg = { chatGroupId: 456, clientId: 789 };
      const readyz = () => readyStatus(running.url);

      await t.step("database up: send, broadcast, ready", async () => {
        const got = nextEvent(agent, "receiveMessage", (p) => p.chat_message === "first");
        assert.equal((await request(client, "sendMessage", { ...msg, message: "first" })).ok, true);
        await got;
        assert.equal(await readyz(), 200);
      });

      await t.step(
        "the insert fails: SERVER_ERROR, nothing broadcast, the cause logged",
        async () => {
          const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
          try {
            await admin`alter table chat add constraint faults_probe
            check (chat_body <> 'refused by the database') not valid`;
          } finally {
            await admin.end({ timeout: 5 });
          }
          const log = captureLog();
          let ack;
          try {
            ack = await request(client, "sendMessage", {
              ...msg,
              message: "refused by the database",
            });
          } finally {
            log.restore();
          }
          assert.equal(ack.code, "SERVER_ERROR");
          // the operator sees why: one error line carrying the database's own error
          const failed = log.lines().filter((l) => l.msg === "handler failed");
          assert.equal(failed.length, 1, JSON.stringify(log.lines()));
          assert.equal(failed[0].level, "error");
          assert.equal(failed[0].event, "sendMessage");
          assert.match(String(failed[0].error), /faults_probe/);
          await request(agent, "getOnlineUsers");
          assert.deepEqual(seen, ["first"]);
        },
      );

      await pg.pause();

      await t.step("database down: SERVER_ERROR, 503, nothing broadcast or acked", async () => {
        const errorEvent = nextEvent(client, "error");
        const started = performance.now();
        const ack = await request(client, "sendMessage", { ...msg, message: "lost" });
        const failedAfterMs = Math.round(performance.now() - started);
        console.log(`send with the database down failed after ${failedAfterMs} ms`);
        assert.equal(ack.ok, false);
        assert.equal(ack.code, "SERVER_ERROR");
        assert.equal((await errorEvent).code, "SERVER_ERROR");
        assert.equal(await readyz(), 503);
        // a round trip on the agent's own connection: anything broadcast to it
        // before has arrived by now (the server writes to a connection in order)
        await request(agent, "getOnlineUsers");
        assert.deepEqual(seen, ["first"]);
      });

      await pg.resume();

      await t.step("database back: recovers by itself", async () => {
        let status = 0;
        for (let waited = 0; waited < WAIT_LIMIT && status !== 200; waited += 100) {
          status = await readyz();
          if (status !== 200) await sleep(100);
        }
        assert.equal(status, 200);
        const got = nextEvent(agent, "receiveMessage", (p) => p.chat_message === "after");
        const ack = await request(client, "sendMessage", { ...msg, message: "after" });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        await got;
        const history = await request(agent, "getMessages", { chatGroupId: 456 });
        const texts = (history.messages as { chat_message: string }[]).map((m) => m.chat_message);
        assert.deepEqual(texts, ["first", "after"], "stored: exactly the acked messages");
        assert.deepEqual(seen, ["first", "after"]);
      });
    } finally {
      for (const s of sockets) s.disconnect();
      await app?.close();
      await pg.stop();
    }
  },
});
