/**
 * src/store/timed.ts: storage calls are observed in
 * `servana_store_duration_seconds` (backend, op) and otherwise behave exactly
 * like the wrapped store, rate limiter and presence.
 */

import assert from "node:assert/strict";
import { Metrics } from "../src/metrics.ts";
import { KvStore } from "../src/store/kv_store.ts";
import type { ChatStore } from "../src/store/mod.ts";
import { TimedPresence, TimedRateLimiter, timedStore } from "../src/store/timed.ts";

const FIXTURE = {
  departments: [{ id: 1, name: "Support" }],
  users: [
    {
      id: 789,
      authId: "client-789",
      role: "client" as const,
      departments: [],
      firstName: "C",
      lastName: "L",
    },
  ],
  chatGroups: [
    { id: 456, clientId: 789, departmentId: 1, agentId: null, status: "active" as const },
  ],
};

Deno.test("timedStore: same answers as the store, each call observed by backend and op", async () => {
  const kv = await Deno.openKv(":memory:");
  const metrics = new Metrics();
  const store = timedStore(new KvStore(kv), metrics);
  try {
    assert.equal(store.kind, "kv");
    await store.loadFixture(FIXTURE);
    assert.equal((await store.getUserByAuthId("client-789"))?.id, 789);
    assert.equal(await store.getUser(1), null);
    const { message, created } = await store.addMessage({
      chatGroupId: 456,
      senderId: 789,
      senderType: "client",
      message: "hi",
    });
    assert.equal(created, true);
    assert.deepEqual((await store.listMessages(456)).map((m) => m.id), [message.id]);
    await store.ping();
    assert.equal(metrics.storeLatency.count({ backend: "kv", op: "getUser" }), 1);
    assert.equal(metrics.storeLatency.count({ backend: "kv", op: "getUserByAuthId" }), 1);
    assert.equal(metrics.storeLatency.count({ backend: "kv", op: "addMessage" }), 1);
    assert.equal(metrics.storeLatency.count({ backend: "kv", op: "listMessages" }), 1);
    assert.equal(metrics.storeLatency.count({ backend: "kv", op: "loadFixture" }), 1);
    assert.equal(metrics.storeLatency.count({ backend: "kv", op: "ping" }), 1);
    assert.match(
      metrics.render(),
      /servana_store_duration_seconds_bucket\{backend="kv",op="addMessage",le="\+Inf"\} 1/,
    );
  } finally {
    await store.close();
    try {
      kv.close();
    } catch {
      // closed by the store
    }
  }
});

Deno.test("timedStore: a failing call is observed and its error passes through unchanged", async () => {
  const metrics = new Metrics();
  const failure = new Error("connection refused");
  const broken = {
    kind: "postgres",
    getChatGroup: () => Promise.reject(failure),
    close: () => Promise.resolve(),
  } as unknown as ChatStore;
  const store = timedStore(broken, metrics);
  await assert.rejects(store.getChatGroup(1), (error) => error === failure);
  assert.equal(metrics.storeLatency.count({ backend: "postgres", op: "getChatGroup" }), 1);
});

Deno.test("TimedRateLimiter and TimedPresence: KV calls observed, results unchanged", async () => {
  const kv = await Deno.openKv(":memory:");
  const metrics = new Metrics();
  try {
    const limiter = new TimedRateLimiter(kv, metrics);
    const rule = { limit: 1, windowMs: 60_000 };
    assert.equal((await limiter.consume(["message", 1], rule)).allowed, true);
    assert.equal((await limiter.consume(["message", 1], rule)).allowed, false);
    assert.equal(metrics.storeLatency.count({ backend: "kv", op: "rate_limit.consume" }), 2);

    const presence = new TimedPresence(kv, metrics, { ttlMs: 60_000 });
    const entry = { userId: 7, userType: "agent" as const, socketId: "s1" };
    assert.equal((await presence.online(entry)).cameOnline, true);
    assert.deepEqual((await presence.list()).map((u) => u.userId), [7]);
    assert.equal(await presence.heartbeat(7, "s1"), true);
    assert.equal((await presence.socketClosed(7, "s1")).wentOffline, true);
    assert.deepEqual(await presence.sweep(), []);
    for (const op of ["online", "list", "heartbeat", "socketClosed", "sweep"]) {
      assert.ok(metrics.storeLatency.count({ backend: "kv", op: `presence.${op}` }) >= 1, op);
    }
  } finally {
    kv.close();
  }
});
