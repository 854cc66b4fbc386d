/**
 * `GET /metrics` after a real chat exchange: what an operator scraping the
 * service sees (Prometheus text format).
 */

import assert from "node:assert/strict";
import { io as connect, type Socket } from "socket.io-client";
import { tokenFor } from "./support/clients.ts";
import { connectClient, nextEvent, request } from "./support/processes.ts";
import { startApp } from "./support/server.ts";

/** Parses exposition text into `name{labels}` → value (labels as rendered). */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** Samples of `name` whose labels include every `want` pair. */
function find(
  samples: Map<string, number>,
  name: string,
  want: Record<string, string> = {},
): number[] {
  const found: number[] = [];
  for (const [key, value] of samples) {
    const brace = key.indexOf("{");
    const metric = brace < 0 ? key : key.slice(0, brace);
    if (metric !== name) continue;
    const labels = brace < 0 ? "" : key.slice(brace + 1, -1);
    if (Object.entries(want).every(([k, v]) => labels.includes(`${k}="${v}"`))) found.push(value);
  }
  return found;
}

function refusedHandshake(url: string, auth: Record<string, string>): Promise<string> {
  const socket: Socket = connect(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    auth,
  });
  return new Promise((resolve) => {
    socket.once("connect_error", (error: Error) => {
      socket.disconnect();
      resolve(error.message);
    });
  });
}

Deno.test("metrics: /metrics after a chat exchange", async (t) => {
  const running = await startApp({
    SEED_FILE: "demo/fixture.json",
    RATE_LIMIT_MESSAGES: "2",
    RATE_LIMIT_WINDOW: "600000",
    METRICS_TOKEN: "scrape-me",
  });
  const sockets: Socket[] = [];
  try {
    const agent = await connectClient(running.url, await tokenFor(running, "agent:123"));
    const client = await connectClient(running.url, await tokenFor(running, "client:789"));
    sockets.push(agent, client);
    for (const s of [agent, client]) {
      assert.equal((await request(s, "joinChatGroup", { groupId: 456 })).ok, true);
    }
    assert.equal(
      (await request(client, "userOnline", { userId: 789, userType: "client" })).ok,
      true,
    );
    const msg = { chatGroupId: 456, clientId: 789 };
    for (const text of ["one", "two"]) {
      const got = nextEvent(agent, "receiveMessage", (p) => p.chat_message === text);
      assert.equal((await request(client, "sendMessage", { ...msg, message: text })).ok, true);
      await got;
    }
    const refused = await request(client, "sendMessage", { ...msg, message: "three" });
    assert.equal(refused.code, "RATE_LIMIT_EXCEEDED");
    assert.equal(await refusedHandshake(running.url, {}), "AUTH_REQUIRED");
    await refusedHandshake(running.url, { token: "not-a-jwt" });

    await t.step("protected by METRICS_TOKEN", async () => {
      const res = await fetch(`${running.url}/metrics`);
      await res.body?.cancel();
      assert.equal(res.status, 401);
    });

    const res = await fetch(`${running.url}/metrics`, {
      headers: { authorization: "Bearer scrape-me" },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const samples = parse(text);

    await t.step("connected sockets by role and transport", () => {
      assert.deepEqual(
        find(samples, "servana_sockets", { role: "agent", transport: "websocket" }),
        [
          1,
        ],
      );
      assert.deepEqual(
        find(samples, "servana_sockets", { role: "client", transport: "websocket" }),
        [1],
      );
      assert.ok(find(samples, "servana_rooms")[0] >= 1);
    });

    await t.step("events in, messages out", () => {
      assert.deepEqual(find(samples, "servana_events_in_total", { event: "sendMessage" }), [3]);
      assert.deepEqual(find(samples, "servana_events_in_total", { event: "joinChatGroup" }), [2]);
      assert.deepEqual(find(samples, "servana_messages_out_total"), [2]);
    });

    await t.step("event handling latency histogram", () => {
      const buckets = find(samples, "servana_event_duration_seconds_bucket", {
        event: "sendMessage",
      });
      assert.ok(buckets.length >= 2, text);
      assert.deepEqual(
        find(samples, "servana_event_duration_seconds_bucket", {
          event: "sendMessage",
          le: "+Inf",
        }),
        [3],
      );
      assert.deepEqual(
        find(samples, "servana_event_duration_seconds_count", { event: "sendMessage" }),
        [
          3,
        ],
      );
    });

    await t.step("store and KV latency by backend and operation", () => {
      // two messages stored; the third was refused before the store
      assert.deepEqual(
        find(samples, "servana_store_duration_seconds_count", { backend: "kv", op: "addMessage" }),
        [2],
      );
      // the two joins read the group; each send reads the conversation (group,
      // customer, department) before its rate limit
      assert.deepEqual(
        find(samples, "servana_store_duration_seconds_count", {
          backend: "kv",
          op: "getChatGroup",
        }),
        [2],
      );
      assert.deepEqual(
        find(samples, "servana_store_duration_seconds_count", {
          backend: "kv",
          op: "getConversation",
        }),
        [3],
      );
      // two joins (the read budget), three sends and one userOnline
      assert.deepEqual(
        find(samples, "servana_store_duration_seconds_count", {
          backend: "kv",
          op: "rate_limit.consume",
        }),
        [6],
      );
      assert.deepEqual(
        find(samples, "servana_store_duration_seconds_count", {
          backend: "kv",
          op: "presence.online",
        }),
        [1],
      );
      assert.ok(
        find(samples, "servana_store_duration_seconds_bucket", {
          backend: "kv",
          op: "addMessage",
          le: "+Inf",
        }).length === 1,
      );
    });

    await t.step("rate-limit hits by event and errors by code", () => {
      assert.deepEqual(find(samples, "servana_rate_limit_hits_total", { event: "sendMessage" }), [
        1,
      ]);
      assert.deepEqual(find(samples, "servana_errors_total", { code: "RATE_LIMIT_EXCEEDED" }), [1]);
    });

    await t.step("auth failures by reason", () => {
      assert.deepEqual(find(samples, "servana_auth_failures_total", { reason: "missing_token" }), [
        1,
      ]);
      const all = find(samples, "servana_auth_failures_total");
      assert.equal(all.reduce((a, b) => a + b, 0), 2, text);
      assert.equal(all.length, 2, "two distinct reasons");
    });
  } finally {
    for (const s of sockets) s.disconnect();
    await running.close();
  }
});
