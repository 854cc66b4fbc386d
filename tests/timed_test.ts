/**
 * src/store/timed.ts: storage calls are observed in
 * `servana_store_duration_seconds` (backend, op) and otherwise behave exactly
 * like the wrapped store, rate limiter and presence.
 */

import assert from "node:assert/strict";
import { Metrics } from "../src/metrics.ts";
import { KvStore } from "../src/store/kv_store.ts";
import type { ChatStore, Fixture } from "../src/store/mod.ts";
import { TimedPresence, TimedRateLimiter, timedStore } from "../src/store/timed.ts";

const AUTH_ID = "00000000-0000-4000-8000-000000000123";

const FIXTURE: Fixture = {
  department: [{ dept_id: 1, dept_name: "Support" }],
  sys_user: [{
    sys_user_id: 123,
    sys_user_email: "john@servana.example",
    supabase_user_id: AUTH_ID,
  }],
  client: [{ client_id: 789, client_country_code: "+63", client_number: "9171234567" }],
  chat_group: [{ chat_group_id: 456, client_id: 789, dept_id: 1, status: "active" }],
};

Deno.test("timedStore: same answers as the store, each call observed by backend and op", async () => {
  const kv = await Deno.openKv(":memory:");
  const metrics = new Metrics();
  const store = timedStore(new KvStore(kv), metrics);
  try {
    assert.equal(store.kind, "kv");
    await store.loadFixture(FIXTURE);
    assert.deepEqual((await store.findAgentsByAuthId(AUTH_ID)).map((a) => a.id), [123]);
    assert.equal((await store.getPerson({ kind: "client", id: 789 }))?.kind, "client");
    assert.equal(await store.getPerson({ kind: "agent", id: 789 }), null);
    assert.deepEqual(
      (await store.getPeople([{ kind: "agent", id: 123 }, { kind: "client", id: 789 }]))
        .map((p) => `${p.kind}:${p.id}`).sort(),
      ["agent:123", "client:789"],
    );
    assert.equal((await store.getConversation(456))?.customer?.id, 789);
    const { message, created } = await store.addMessage({
      chatGroupId: 456,
      sender: { kind: "client", id: 789 },
      body: "hi",
    });
    assert.equal(created, true);
    assert.deepEqual((await store.listMessages(456)).map((m) => m.id), [message.id]);
    assert.deepEqual(await store.countChatGroups(), { total: 1, active: 1 });
    await store.ping();
    const counts = {
      findAgentsByAuthId: 1,
      getPerson: 2,
      getPeople: 1,
      getConversation: 1,
      addMessage: 1,
      listMessages: 1,
      countChatGroups: 1,
      loadFixture: 1,
      ping: 1,
      getChatGroup: 0,
    };
    for (const [op, count] of Object.entries(counts)) {
      assert.equal(metrics.storeLatency.count({ backend: "kv", op }), count, op);
    }
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

Deno.test("timedStore: every method reaches the same method of the store, with its arguments", async () => {
  const methods = [
    "findAgentsByAuthId",
    "getPerson",
    "getPeople",
    "listAgents",
    "getDepartment",
    "listDepartments",
    "getChatGroup",
    "getChatGroups",
    "getConversation",
    "countChatGroups",
    "addMessage",
    "markDelivered",
    "markRead",
    "listMessages",
    "listQueued",
    "activeLoads",
    "assignQueued",
    "loadFixture",
    "ping",
  ] as const;
  const calls: string[] = [];
  const fake: Record<string, unknown> = { kind: "postgres", close: () => Promise.resolve() };
  for (const name of methods) {
    fake[name] = (...args: unknown[]) => {
      calls.push(name);
      return Promise.resolve({ answeredBy: name, args });
    };
  }
  const metrics = new Metrics();
  const store = timedStore(fake as unknown as ChatStore, metrics) as unknown as Record<
    string,
    (...args: unknown[]) => Promise<unknown>
  >;
  for (const name of methods) {
    // as many arguments as the method declares
    const args = [{ name }, 2, { maxActive: 3 }].slice(0, store[name].length);
    assert.deepEqual(await store[name](...args), { answeredBy: name, args }, name);
    assert.equal(metrics.storeLatency.count({ backend: "postgres", op: name }), 1, name);
  }
  assert.deepEqual(calls, [...methods]);
  await (store.close as () => Promise<void>)();
  assert.doesNotMatch(metrics.render(), /op="close"/);
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
    const person = { kind: "agent" as const, id: 7 };
    const entry = { person, userType: "agent" as const, socketId: "s1" };
    assert.equal((await presence.online(entry)).cameOnline, true);
    assert.deepEqual((await presence.list()).map((u) => [u.userId, u.userType]), [[7, "agent"]]);
    assert.equal(await presence.heartbeat(person, "s1"), true);
    assert.equal((await presence.socketClosed(person, "s1")).wentOffline, true);
    assert.deepEqual(await presence.offline(person), { wentOffline: false });
    assert.deepEqual(await presence.sweep(), []);
    const counts = { online: 1, list: 1, heartbeat: 1, socketClosed: 1, offline: 1, sweep: 1 };
    for (const [op, count] of Object.entries(counts)) {
      assert.equal(metrics.storeLatency.count({ backend: "kv", op: `presence.${op}` }), count, op);
    }
  } finally {
    kv.close();
  }
});
