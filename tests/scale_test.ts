/**
 * src/scale.ts against a real `redis-server`: two in-process services share
 * broadcasts through the Redis Streams adapter and close without leaks; the
 * adapter's client fails fast or degrades to "this process only" while Redis
 * is down, the outage is logged once, and a Redis that never answers stops
 * start-up with a clear error. Skipped, with the reason printed, where
 * `redis-server` is absent.
 */

import assert from "node:assert/strict";
import { tokenFor } from "./support/clients.ts";
import type { Socket } from "socket.io-client";
import { setDebug, setLogSink } from "../src/log.ts";
import { redisAdapter, RedisUnavailableError } from "../src/scale.ts";
import { connectClient, freePort, nextEvent, request, WAIT_LIMIT } from "./support/processes.ts";
import { redisAvailable, startRedis } from "./support/redis.ts";
import { startApp } from "./support/server.ts";

const reason = redisAvailable();
if (reason) console.log(`scale_test skipped: ${reason}`);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let waited = 0; waited < WAIT_LIMIT; waited += 20) {
    if (check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test({
  name: "scale: two in-process services share broadcasts through Redis, then close cleanly",
  ignore: reason !== null,
  async fn() {
    const redis = await startRedis();
    const env = { SEED_FILE: "demo/fixture.json", REDIS_URL: redis.url };
    // each has its own in-memory KV with the fixture; only Redis connects them
    const first = await startApp(env);
    const second = await startApp(env);
    const sockets: Socket[] = [];
    try {
      const mint = (who: string) => tokenFor(first, who);
      const agent = await connectClient(first.url, await mint("agent:123"));
      const client = await connectClient(second.url, await mint("client:789"));
      sockets.push(agent, client);
      assert.equal((await request(agent, "joinChatGroup", { groupId: 456 })).ok, true);
      assert.equal((await request(client, "joinChatGroup", { groupId: 456 })).ok, true);
      // a server-side broadcast from the second process reaches the first one's socket
      const got = nextEvent(agent, "ping-through-redis");
      second.app.io.to("456").emit("ping-through-redis", { hello: 1 });
      assert.deepEqual(await got, { hello: 1 });
      const all = await second.app.io.in("456").fetchSockets();
      assert.equal(all.length, 2, "fetchSockets sees both processes");
    } finally {
      for (const s of sockets) s.disconnect();
      await first.close();
      await second.close();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "scale: Redis down: fail fast, this process only, logged once, back by itself",
  ignore: reason !== null,
  async fn() {
    const redis = await startRedis();
    const lines: Record<string, unknown>[] = [];
    const previous = setLogSink({ write: (line) => lines.push(JSON.parse(line)) });
    setDebug(true);
    const states: boolean[] = [];
    const scale = await redisAdapter(redis.url, { onStateChange: (up) => states.push(up) });
    const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
    try {
      const { client } = scale;
      assert.equal(scale.isUp(), true);
      assert.match(await client.xAdd("t", "*", { a: "1" }), /^\d+-\d+$/);
      assert.deepEqual(await client.sendCommand(["PUBSUB", "NUMSUB", "nobody"]), ["nobody", 0]);

      await redis.pause();
      await until("the outage to be noticed", () => !scale.isUp());
      await assert.rejects(client.xAdd("t", "*", { a: "2" }), RedisUnavailableError);
      await assert.rejects(client.xRange("t", "-", "+"), RedisUnavailableError);
      await assert.rejects(client.multi().get("k").del("k").exec(), RedisUnavailableError);
      assert.equal(await client.publish("c", "x"), 0);
      assert.equal(await client.set("k", "v"), null);
      assert.deepEqual(await client.sendCommand(["PUBSUB", "NUMSUB", "servana#/#"]), [
        "servana#/#",
        1,
      ]);
      await until("three reconnection attempts", () => count("redis reconnecting") >= 3);
      assert.equal(
        count("redis unreachable: cross-process delivery paused, serving local sockets"),
        1,
      );

      await redis.resume();
      await until("the reconnection", () => scale.isUp());
      assert.match(await client.xAdd("t", "*", { a: "3" }), /^\d+-\d+$/);
      assert.equal(
        count("redis unreachable: cross-process delivery paused, serving local sockets"),
        1,
      );
      assert.equal(count("redis reachable again: cross-process delivery resumed"), 1);
      assert.deepEqual(states, [false, true]);
    } finally {
      await scale.close();
      await scale.close(); // idempotent
      setDebug(false);
      setLogSink(previous);
      await redis.stop();
    }
  },
});

Deno.test({
  name: "scale: a Redis that never answers stops start-up with a clear error",
  ignore: reason !== null,
  async fn() {
    const port = freePort(); // nothing listens there
    await assert.rejects(
      redisAdapter(`redis://127.0.0.1:${port}`, { connectTimeoutMs: 300 }),
      /did not answer within 300 ms/,
    );
  },
});
