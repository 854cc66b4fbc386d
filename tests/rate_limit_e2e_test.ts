/**
 * End to end: rate limits through the real server with socket.io-client
 * sockets, with a 2 s window (`RATE_LIMIT_WINDOW=2000`) instead of a minute.
 * Limits per user: `sendMessage` 30, status updates 10, typing unlimited.
 */

import assert from "node:assert/strict";
import { setLogSink } from "../src/log.ts";
import { closeAll, connectAs, type ErrorPayload, type TestClient } from "./support/clients.ts";
import { startApp } from "./support/server.ts";

const WINDOW_MS = 2000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Security lines about rate limits, parsed. */
function rateLimitLines(lines: string[], kind: string): Record<string, unknown>[] {
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((l) => l.msg === "security" && l.event === "rate_limit" && l.kind === kind);
}

function retryAfterOf(error: ErrorPayload): number {
  const details = error.details as { retryAfterMs?: unknown };
  assert.deepEqual(Object.keys(details), ["retryAfterMs"]);
  const ms = details.retryAfterMs;
  assert.equal(typeof ms, "number");
  assert.ok(Number.isInteger(ms) && (ms as number) > 0 && (ms as number) <= WINDOW_MS, `${ms}`);
  return ms as number;
}

Deno.test("rate limits: 30 messages, 10 status updates per window; typing unlimited", async (t) => {
  const lines: string[] = [];
  const previous = setLogSink({ write: (line) => void lines.push(line) });
  const running = await startApp({ SEED_FILE: "demo/fixture.json", RATE_LIMIT_WINDOW: "2000" });
  const clients: (TestClient | undefined)[] = [];
  try {
    const agent = await connectAs(running, "agent-123");
    clients.push(agent);
    const agentPhone = await connectAs(running, "agent-123");
    clients.push(agentPhone);
    const client = await connectAs(running, "client-789");
    clients.push(client);
    await agent.join(456);
    await agentPhone.join(456);
    await client.join(456);
    const send = (c: TestClient, i: number) =>
      c.request("sendMessage", { message: `message ${i}`, chatGroupId: 456, clientId: 789 });

    let retryAfterMs = 0;
    await t.step("30 messages accepted, the 31st refused with retryAfterMs", async () => {
      const acks = await Promise.all(Array.from({ length: 30 }, (_, i) => send(agent, i)));
      assert.deepEqual(acks.filter((a) => a.ok !== true), []);
      assert.equal(new Set(acks.map((a) => a.chat_id)).size, 30);

      const { error, ack } = await agent.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
        message: "one too many",
        chatGroupId: 456,
        clientId: 789,
      });
      retryAfterMs = retryAfterOf(error);
      assert.deepEqual(ack, {
        ok: false,
        code: "RATE_LIMIT_EXCEEDED",
        message: error.message,
        details: { retryAfterMs },
      });
      // the limit is the user's, not the socket's
      const fromPhone = await agentPhone.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
        message: "from my phone",
        chatGroupId: 456,
        clientId: 789,
      });
      retryAfterMs = retryAfterOf(fromPhone.error);
      // another user is not affected
      await client.expectOk("sendMessage", { message: "hello", chatGroupId: 456, clientId: 789 });

      await client.sync();
      const texts = client.payloads("receiveMessage").map((m) =>
        (m as { chat_message: string }).chat_message
      );
      assert.equal(texts.length, 31);
      assert.ok(!texts.includes("one too many") && !texts.includes("from my phone"));
    });

    await t.step("the violation is logged once per window", () => {
      const logged = rateLimitLines(lines, "message");
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0].userId, 123);
      assert.equal(logged[0].socketEvent, "sendMessage");
      assert.equal(logged[0].level, "warn");
    });

    await t.step("typing is never rate-limited: 40 alternating events all relayed", async () => {
      const mark = client.mark();
      for (let i = 0; i < 40; i++) {
        const event = i % 2 === 0 ? "typing" : "stopTyping";
        const ack = await agent.expectOk(event, {
          chatGroupId: 456,
          userType: "agent",
          userId: 123,
        });
        assert.deepEqual(ack, { ok: true, relayed: true });
      }
      await client.sync();
      const relayed = client.received.slice(mark).filter((r) =>
        r.event === "typing" || r.event === "stopTyping"
      );
      assert.equal(relayed.length, 40);
      assert.deepEqual(
        relayed.map((r) => (r.args[0] as { isTyping: boolean }).isTyping),
        Array.from({ length: 40 }, (_, i) => i % 2 === 0),
      );
    });

    await t.step("after retryAfterMs a message is accepted again", async () => {
      await delay(retryAfterMs + 25);
      const ack = await agent.expectOk("sendMessage", {
        message: "back again",
        chatGroupId: 456,
        clientId: 789,
      });
      assert.equal(typeof ack.chat_id, "number");
    });

    await t.step("a new window: 30 again, then refused and logged once more", async () => {
      await delay(WINDOW_MS + 25);
      const acks = await Promise.all(Array.from({ length: 30 }, (_, i) => send(agent, 100 + i)));
      assert.deepEqual(acks.filter((a) => a.ok !== true), []);
      await agent.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
        message: "too many again",
        chatGroupId: 456,
        clientId: 789,
      });
      await agent.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
        message: "and again",
        chatGroupId: 456,
        clientId: 789,
      });
      assert.equal(rateLimitLines(lines, "message").length, 2);
    });

    await t.step("status updates: 10 per window, the 11th userHeartbeat refused", async () => {
      for (let i = 0; i < 10; i++) {
        await client.expectOk("userHeartbeat", { userId: 789, timestamp: Date.now() });
      }
      const { error } = await client.expectError("RATE_LIMIT_EXCEEDED", "userHeartbeat", {
        userId: 789,
        timestamp: Date.now(),
      });
      retryAfterOf(error);
      // userOnline and userOffline count against the same limit
      await client.expectError("RATE_LIMIT_EXCEEDED", "userOnline", {
        userId: 789,
        userType: "client",
      });
      await client.expectError("RATE_LIMIT_EXCEEDED", "userOffline", { userId: 789 });
      const logged = rateLimitLines(lines, "status");
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0].userId, 789);
      // messages are a separate limit
      await client.expectOk("sendMessage", {
        message: "still here",
        chatGroupId: 456,
        clientId: 789,
      });
    });
  } finally {
    await closeAll(running, clients);
    setLogSink(previous);
  }
});

Deno.test("read requests: a per-socket budget, other sockets unaffected", async () => {
  // 60 per minute: a burst of 15, then one per second
  const running = await startApp({ SEED_FILE: "demo/fixture.json", RATE_LIMIT_READS: "60" });
  const clients: (TestClient | undefined)[] = [];
  try {
    const agent = await connectAs(running, "agent-123");
    clients.push(agent);
    const other = await connectAs(running, "agent-123");
    clients.push(other);
    const acks = [];
    for (let i = 0; i < 15; i++) acks.push(await agent.request("getOnlineUsers"));
    assert.deepEqual(acks.filter((a) => a.ok !== true), []);
    const { error } = await agent.expectError("RATE_LIMIT_EXCEEDED", "getMessages", {
      chatGroupId: 456,
    });
    const wait = (error.details as { retryAfterMs: number }).retryAfterMs;
    assert.ok(wait > 0 && wait <= 1000, String(wait));
    await agent.expectError("RATE_LIMIT_EXCEEDED", "joinChatGroup", { groupId: 456 });
    // the user's other socket has its own budget
    await other.expectOk("getOnlineUsers");
    await delay(wait + 50);
    await agent.expectOk("joinChatGroup", { groupId: 456 });
  } finally {
    await closeAll(running, clients);
  }
});
