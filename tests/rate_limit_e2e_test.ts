/**
 * End to end: rate limits through the real server with socket.io-client
 * sockets, with a 2 s window (`RATE_LIMIT_WINDOW=2000`) instead of a minute
 * where a test waits for one. Every budget is a person's (`agent:1` and
 * `client:1` are two people), shared by all of their sockets: `sendMessage`
 * 30 per window, status updates 10, `refreshToken` its own 10, reads
 * `RATE_LIMIT_READS` per minute (sliding, no burst limit), typing unlimited;
 * `MAX_SOCKETS_PER_PERSON` connections at once.
 */

import assert from "node:assert/strict";
import { decodeJwt } from "jose";
import { DEV_JWT_SECRET, mintToken } from "../src/auth/mod.ts";
import { LogThrottle, setLogSink } from "../src/log.ts";
import {
  closeAll,
  connectAs,
  connectUsers,
  connectWithToken,
  type ErrorPayload,
  eventually,
  refusedConnection,
  type TestClient,
  tokenFor,
} from "./support/clients.ts";
import { startApp } from "./support/server.ts";

const WINDOW_MS = 2000;
const FIXTURE = "demo/fixture.json";

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Security lines about one budget (`message`, `status`, `refresh`, `read`), parsed. */
function rateLimitLines(lines: string[], limitKind: string): Record<string, unknown>[] {
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((l) => l.msg === "security" && l.event === "rate_limit" && l.limitKind === limitKind);
}

function retryAfterOf(error: ErrorPayload, windowMs = WINDOW_MS): number {
  const details = error.details as { retryAfterMs?: unknown };
  assert.deepEqual(Object.keys(details), ["retryAfterMs"]);
  const ms = details.retryAfterMs;
  assert.equal(typeof ms, "number");
  assert.ok(Number.isInteger(ms) && (ms as number) > 0 && (ms as number) <= windowMs, `${ms}`);
  return ms as number;
}

Deno.test("rate limits: 30 messages, 10 status updates per window; typing unlimited", async (t) => {
  const lines: string[] = [];
  const previous = setLogSink({ write: (line) => void lines.push(line) });
  const running = await startApp({ SEED_FILE: FIXTURE, RATE_LIMIT_WINDOW: "2000" });
  // the service's security-line throttle (one line per socket and event per 10 s), on a clock we move
  let now = Date.now();
  running.app.services.securityLog = new LogThrottle({ now: () => now });
  const clients: (TestClient | undefined)[] = [];
  try {
    const [agent, agentPhone, client] = await connectUsers(
      running,
      ["agent:123", "agent:123", "client:789"],
      clients,
    );
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
      // the limit is the person's, not the socket's
      const fromPhone = await agentPhone.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
        message: "from my phone",
        chatGroupId: 456,
        clientId: 789,
      });
      retryAfterMs = retryAfterOf(fromPhone.error);
      // another person is not affected
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
      assert.equal(logged[0].kind, "agent");
      assert.equal(logged[0].userId, 123);
      assert.equal(logged[0].socketEvent, "sendMessage");
      assert.equal(logged[0].limit, 30);
      assert.equal(logged[0].windowMs, WINDOW_MS);
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

    const refuseAgain = async (label: string) => {
      await delay(WINDOW_MS + 25);
      const acks = await Promise.all(Array.from({ length: 30 }, (_, i) => send(agent, 100 + i)));
      assert.deepEqual(acks.filter((a) => a.ok !== true), [], label);
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
    };

    await t.step("a new window: 30 again, then refused; the line is held for 10 s", async () => {
      await refuseAgain("second window");
      // the limiter reports the window's first denial, the socket's line is throttled
      assert.equal(rateLimitLines(lines, "message").length, 1);
    });

    await t.step(
      "once the line's 10 s are over, the next window's line says what was held",
      async () => {
        now += 10_001;
        await refuseAgain("third window");
        const logged = rateLimitLines(lines, "message");
        assert.equal(logged.length, 2);
        assert.equal(logged[1].userId, 123);
        assert.equal(logged[1].suppressed, 1);
      },
    );

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
      assert.equal(logged[0].kind, "client");
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

Deno.test("rate limits: customer 1 and the admin agent 1 have separate message budgets", async () => {
  const running = await startApp({
    SEED_FILE: FIXTURE,
    RATE_LIMIT_MESSAGES: "3",
    RATE_LIMIT_WINDOW: "600000",
  });
  const clients: (TestClient | undefined)[] = [];
  try {
    const [admin, pia] = await connectUsers(running, ["agent:1", "client:1"], clients);
    // 459 is customer 1's conversation; the admin may join any
    await pia.join(459);
    await admin.join(459);
    const say = (c: TestClient, text: string) =>
      c.request("sendMessage", { message: text, chatGroupId: 459, clientId: 1 });

    for (let i = 0; i < 3; i++) assert.equal((await say(admin, `admin ${i}`)).ok, true);
    await admin.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
      message: "admin again",
      chatGroupId: 459,
      clientId: 1,
    });
    // the same number, another person: a full budget
    for (let i = 0; i < 3; i++) assert.equal((await say(pia, `pia ${i}`)).ok, true);
    await pia.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
      message: "pia again",
      chatGroupId: 459,
      clientId: 1,
    });
    await admin.sync();
    const texts = admin.payloads("receiveMessage").map((m) =>
      (m as { chat_message: string }).chat_message
    );
    assert.deepEqual(texts, ["admin 0", "admin 1", "admin 2", "pia 0", "pia 1", "pia 2"]);
  } finally {
    await closeAll(running, clients);
  }
});

Deno.test("read requests: one budget per person, shared by their sockets, no burst limit", async (t) => {
  // 60 per minute, sliding: all 60 may come at once
  const running = await startApp({ SEED_FILE: FIXTURE, RATE_LIMIT_READS: "60" });
  const clients: (TestClient | undefined)[] = [];
  try {
    const [laptop, phone, other, admin, pia] = await connectUsers(
      running,
      ["agent:123", "agent:123", "agent:124", "agent:1", "client:1"],
      clients,
    );

    await t.step("60 reads at once from two sockets, then refused on both", async () => {
      const acks = [];
      for (let i = 0; i < 60; i++) {
        const tab = i % 2 === 0 ? laptop : phone;
        acks.push(
          await tab.request(i % 3 === 0 ? "getMessages" : "getOnlineUsers", {
            ...(i % 3 === 0 ? { chatGroupId: 456 } : {}),
          }),
        );
      }
      assert.deepEqual(acks.filter((a) => a.ok !== true), []);
      for (
        const [tab, event, payload] of [
          [laptop, "getMessages", { chatGroupId: 456 }],
          [phone, "joinChatGroup", { groupId: 456 }],
          [phone, "chat:join", { chatGroupId: 456 }],
          [laptop, "getOnlineUsers", undefined],
          [laptop, "presence:getAll", undefined],
        ] as const
      ) {
        const args = payload === undefined ? [] : [payload];
        const { error } = await tab.expectError("RATE_LIMIT_EXCEEDED", event, ...args);
        retryAfterOf(error, 60_000);
      }
      assert.equal(laptop.count("joinedRoom") + phone.count("joinedRoom"), 0);
    });

    await t.step("a newly opened socket of the same person has no budget either", async () => {
      const tablet = await connectAs(running, "agent:123");
      clients.push(tablet);
      await tablet.expectError("RATE_LIMIT_EXCEEDED", "getOnlineUsers");
    });

    await t.step("other people are unaffected, customer 1 and agent 1 apart", async () => {
      for (const c of [other, admin, pia]) {
        await c.expectOk("getOnlineUsers");
        await c.sync();
      }
      await pia.expectOk("getMessages", { chatGroupId: 459 });
      await admin.expectOk("getRoomStats");
    });

    await t.step("writes are not reads: the agent may still send", async () => {
      // not a member (the join was refused): the apps' sendMessage joins on the way
      const ack = await laptop.expectOk("sendMessage", {
        chat_body: "still here",
        chat_group_id: 456,
      });
      assert.equal(typeof ack.chat_id, "number");
    });
  } finally {
    await closeAll(running, clients);
  }
});

Deno.test("refreshToken has its own budget: four tabs' heartbeats do not starve it", async (t) => {
  // the issue: "with four tabs the refresh was refused, then the user was logged out at expiry"
  const running = await startApp({
    SEED_FILE: FIXTURE,
    RATE_LIMIT_STATUS: "10",
    RATE_LIMIT_REFRESH: "5",
    RATE_LIMIT_WINDOW: "600000",
  });
  const clients: (TestClient | undefined)[] = [];
  try {
    const authId = "00000000-0000-4000-8000-000000000123";
    // one short-lived token for every tab: they all expire at the same second
    const shortLived = await mintToken({ authId }, { secret: DEV_JWT_SECRET, expiresInSec: 3 });
    const expiresAt = decodeJwt(shortLived).exp! * 1000;
    const tabs: TestClient[] = [];
    for (let i = 0; i < 4; i++) {
      const tab = await connectWithToken(running, shortLived, `tab ${i}`);
      clients.push(tab);
      tabs.push(tab);
    }
    const stale = await connectWithToken(running, shortLived, "stale tab");
    clients.push(stale);
    const staleGone = new Promise<string>((resolve) => stale.socket.once("disconnect", resolve));

    await t.step("the tabs' heartbeats use up the status budget", async () => {
      for (let i = 0; i < 10; i++) {
        await tabs[i % 4].expectOk("userHeartbeat", { userId: 123, timestamp: Date.now() });
      }
      for (const tab of tabs) {
        await tab.expectError("RATE_LIMIT_EXCEEDED", "userHeartbeat", {
          userId: 123,
          timestamp: Date.now(),
        });
      }
    });

    await t.step("every tab still refreshes its token", async () => {
      for (const tab of tabs) {
        const fresh = await tokenFor(running, "agent:123");
        const ack = await tab.expectOk("refreshToken", { token: fresh });
        assert.equal(ack.expiresAt, new Date(decodeJwt(fresh).exp! * 1000).toISOString());
      }
    });

    await t.step("at the old expiry only the tab that did not refresh is closed", async () => {
      assert.equal(await staleGone, "transport close");
      assert.ok(Date.now() >= expiresAt - 1000, "closed at its token's expiry");
      const expired = stale.payloads("error") as ErrorPayload[];
      assert.deepEqual(expired.map((e) => e.code), ["AUTH_REQUIRED"]);
      for (const tab of tabs) {
        await tab.expectOk("getMessages", { chatGroupId: 456 });
        assert.equal(tab.socket.connected, true);
        // no AUTH_REQUIRED: the only error each tab got is its heartbeat's refusal
        assert.deepEqual(
          (tab.payloads("error") as ErrorPayload[]).map((e) => e.code),
          ["RATE_LIMIT_EXCEEDED"],
          tab.name,
        );
      }
    });

    await t.step("refreshToken's own budget: RATE_LIMIT_REFRESH per window", async () => {
      // four refreshes used; one more allowed, then refused with retryAfterMs
      await tabs[0].expectOk("refreshToken", { token: await tokenFor(running, "agent:123") });
      const { error } = await tabs[1].expectError("RATE_LIMIT_EXCEEDED", "refreshToken", {
        token: await tokenFor(running, "agent:123"),
      });
      assert.equal(error.message, "Too many token refreshes");
      retryAfterOf(error, 600_000);
    });
  } finally {
    await closeAll(running, clients);
  }
});

Deno.test("MAX_SOCKETS_PER_PERSON: a person's next handshake is refused", async () => {
  const lines: string[] = [];
  const previous = setLogSink({ write: (line) => void lines.push(line) });
  const running = await startApp({ SEED_FILE: FIXTURE, MAX_SOCKETS_PER_PERSON: "3" });
  const clients: (TestClient | undefined)[] = [];
  try {
    const tabs = await connectUsers(running, ["client:789", "client:789", "client:789"], clients);
    const token = await tokenFor(running, "client:789");
    const refused = await refusedConnection(running, token);
    assert.equal(refused.message, "RATE_LIMIT_EXCEEDED");
    assert.deepEqual(refused.data, {
      code: "RATE_LIMIT_EXCEEDED",
      message: "Too many connections for this account",
    });
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === "security" && l.event === "too_many_connections");
    assert.equal(logged.length, 1);
    assert.equal(logged[0].kind, "client");
    assert.equal(logged[0].userId, 789);
    assert.equal(logged[0].limit, 3);
    assert.match(
      running.app.services.metrics.render(),
      /servana_auth_failures_total\{reason="too_many_connections"\} 1/,
    );
    // the three tabs are not affected
    for (const tab of tabs) await tab.expectOk("getMessages", { chatGroupId: 456 });

    // other people connect, including customer 1 beside admin 1
    await connectUsers(
      running,
      ["client:790", "client:1", "client:1", "client:1", "agent:1"],
      clients,
    );
    await refusedConnection(running, await tokenFor(running, "client:1"));

    // a closed tab gives its slot back
    tabs[0].close();
    await eventually(
      async () =>
        (await running.app.services.members.connectionCount({ kind: "client", id: 789 })) === 2,
      "the closed tab's slot freed",
    );
    const again = await connectWithToken(running, token, "client:789 again");
    clients.push(again);
    await again.expectOk("getMessages", { chatGroupId: 456 });
  } finally {
    await closeAll(running, clients);
    setLogSink(previous);
  }
});

Deno.test("sendMessage gates run cheapest first: all-markup text is refused for membership and rate, not sanitized", async (t) => {
  const running = await startApp({
    SEED_FILE: "demo/fixture.json",
    RATE_LIMIT_MESSAGES: "2",
    RATE_LIMIT_WINDOW: "60000",
  });
  const clients: (TestClient | undefined)[] = [];
  // 5,000 characters that sanitize to nothing: INVALID_DATA only if the sanitizer ran
  const markup = "<b></b>".repeat(714);
  try {
    const [agent, customer] = await connectUsers(running, ["agent:123", "client:789"], clients);
    await t.step("not in the room: ACCESS_DENIED", async () => {
      await agent.expectError("ACCESS_DENIED", "sendMessage", {
        message: markup,
        chatGroupId: 456,
        clientId: 789,
      });
    });
    await t.step("a member over the budget: RATE_LIMIT_EXCEEDED", async () => {
      await customer.join(456);
      for (let i = 0; i < 2; i++) {
        await customer.expectOk("sendMessage", {
          message: `m${i}`,
          chatGroupId: 456,
          clientId: 789,
        });
      }
      await customer.expectError("RATE_LIMIT_EXCEEDED", "sendMessage", {
        message: markup,
        chatGroupId: 456,
        clientId: 789,
      });
      // the apps' shape: their failure event is messageError
      const mark = customer.mark();
      const ack = await customer.request("sendMessage", {
        chat_body: markup,
        chat_group_id: 456,
        client_id: 789,
      });
      assert.equal(ack.code, "RATE_LIMIT_EXCEEDED");
      const failure = await customer.next("messageError", mark) as { code: string };
      assert.equal(failure.code, "RATE_LIMIT_EXCEEDED");
    });
    await t.step(
      "within the budget the same text is INVALID_DATA (the sanitizer ran)",
      async () => {
        await agent.join(456);
        const { error } = await agent.expectError("INVALID_DATA", "sendMessage", {
          message: markup,
          chatGroupId: 456,
          clientId: 789,
        });
        assert.match(JSON.stringify(error.details), /message/);
      },
    );
  } finally {
    await closeAll(running, clients);
  }
});
