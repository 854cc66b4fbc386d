/**
 * Processes that share Redis but not KV are told so: unit tests of the
 * comparison, and real processes on one Redis, with a KV each or one KV
 * (skipped, with the reason printed, where `redis-server` is absent).
 */

import assert from "node:assert/strict";
import { SHARED_MESSAGE, SPLIT_MESSAGE, startSharedKvCheck } from "../src/shared_kv.ts";
import { captureLog } from "./support/log_capture.ts";
import { clusterEnv, type ServerProcess, spawnServer, stopAll } from "./support/processes.ts";
import { redisAvailable, startRedis } from "./support/redis.ts";

const reason = redisAvailable();
if (reason) console.log(`shared_kv_test (processes) skipped: ${reason}`);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("shared KV check: a warning when Redis sees more processes than KV, info when they match", async () => {
  const counts = { redis: 1, kv: 1 };
  const log = captureLog();
  const stop = startSharedKvCheck({
    redisServers: () => Promise.resolve(counts.redis),
    kvProcesses: () => Promise.resolve(counts.kv),
  }, { everyMs: 10, kvPath: "./data/servana.kv" });
  const said = (message: string) => log.lines().filter((l) => l.msg === message);
  try {
    await sleep(50);
    assert.equal(log.lines().length, 0, "one process alone: nothing to say");
    counts.redis = 2;
    counts.kv = 2;
    await sleep(50);
    assert.equal(said(SHARED_MESSAGE).length, 1, "two processes sharing the KV, said once");
    assert.equal(said(SHARED_MESSAGE)[0].level, "info");
    assert.equal(said(SPLIT_MESSAGE).length, 0);
    counts.redis = 3; // a third process on Redis with a KV of its own
    await sleep(80);
    const warned = said(SPLIT_MESSAGE);
    assert.equal(warned.length, 1, "warned once, not every check");
    assert.deepEqual(
      [warned[0].level, warned[0].redisServers, warned[0].kvProcesses, warned[0].kvPath],
      ["warn", 3, 2, "./data/servana.kv"],
    );
    counts.redis = 2; // it went away
    await sleep(50);
    assert.equal(said(SHARED_MESSAGE).length, 2);
    counts.kv = 3; // one that shares the KV but is not on Redis yet: not a split
    await sleep(50);
    assert.equal(said(SPLIT_MESSAGE).length, 1);
  } finally {
    stop();
    log.restore();
  }
});

/** Starts one process per directory on one Redis; resolves once `message` was logged by each. */
async function clusterSays(dirs: string[], message: string): Promise<ServerProcess[]> {
  const redis = await startRedis();
  const servers: ServerProcess[] = [];
  try {
    // KV_PATH is ./data/servana.kv, relative to each process's own directory
    const env = clusterEnv("shared-kv-test-secret-0123456789abcd", redis.url);
    for (const dir of dirs) servers.push(await spawnServer(dir, env));
    const saidBy = () =>
      servers.filter((s) => s.stderr().split("\n").some((line) => line.includes(message)));
    // the adapter learns of the other server from its heartbeat (5 s); the check runs every 5 s
    for (let waited = 0; waited < 20_000 && saidBy().length < servers.length; waited += 250) {
      await sleep(250);
    }
    return servers;
  } finally {
    await stopAll([], servers);
    await redis.stop();
  }
}

function logged(server: ServerProcess, message: string): Record<string, unknown>[] {
  return server.stderr().split("\n").filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.msg === message);
}

Deno.test({
  name: "shared KV check: two processes on one Redis, each with its own KV file, warn",
  ignore: reason !== null,
  async fn() {
    const dirs = [
      await Deno.makeTempDir({ prefix: "servana-kv-a-" }),
      await Deno.makeTempDir({ prefix: "servana-kv-b-" }),
    ];
    try {
      const servers = await clusterSays(dirs, SPLIT_MESSAGE);
      for (const server of servers) {
        const lines = logged(server, SPLIT_MESSAGE);
        assert.equal(lines.length, 1, server.stderr().slice(-1500));
        assert.deepEqual([lines[0].level, lines[0].redisServers, lines[0].kvProcesses], [
          "warn",
          2,
          1,
        ]);
      }
    } finally {
      for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "shared KV check: two processes on one Redis and one KV file do not warn",
  ignore: reason !== null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "servana-kv-shared-" });
    try {
      const servers = await clusterSays([dir, dir], SHARED_MESSAGE);
      for (const server of servers) {
        assert.equal(logged(server, SHARED_MESSAGE).length, 1, server.stderr().slice(-1500));
        assert.equal(logged(server, SPLIT_MESSAGE).length, 0);
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
