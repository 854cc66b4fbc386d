/**
 * End to end: Servana's shipping apps' vocabulary through the real server,
 * with sockets configured as the apps configure theirs
 * (tests/support/app_clients.ts): the agents' web app (socket.io-client 4.8,
 * polling then WebSocket, Bearer on polling only, CONNECT auth `{ userId,
 * timestamp }`) and the customers' mobile app (socket.io-client 4.7, the
 * customer token as auth.token and Bearer). Every flow of
 * ../shared/servana/apps.md, no acks (the apps use none), and both
 * vocabularies in one conversation.
 */

import assert from "node:assert/strict";
import { closeAll, connectAs, type TestClient, tokenFor } from "./support/clients.ts";
import { mobileAppSocket, WEB_ORIGIN, webAppSocket } from "./support/app_clients.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const ENV = { SEED_FILE: "demo/fixture.json" };

interface Cast {
  running: RunningApp;
  web: TestClient;
  mobile: TestClient;
  all: (TestClient | undefined)[];
}

async function withApps(fn: (cast: Cast) => Promise<void>, env: Record<string, string> = {}) {
  const running = await startApp({ ...ENV, ...env });
  const all: (TestClient | undefined)[] = [];
  try {
    const web = await webAppSocket(running.url, {
      token: await tokenFor(running, "agent:123"),
      sysUserId: 123,
    });
    all.push(web);
    const mobile = await mobileAppSocket(running.url, {
      token: await tokenFor(running, "client:789"),
    });
    all.push(mobile);
    await fn({ running, web, mobile, all });
  } finally {
    await closeAll(running, all);
  }
}

/** Emits as the apps do (no ack). */
function send(client: TestClient, event: string, payload?: unknown): void {
  if (payload === undefined) client.socket.emit(event);
  else client.socket.emit(event, payload);
}

/** The events `client` received from `mark` on, names only. */
function eventsSince(client: TestClient, mark: number): string[] {
  return client.received.slice(mark).map((r) => r.event);
}

Deno.test("the apps connect as they do: web polling → WebSocket with Bearer on polling only, mobile both ways", async (t) => {
  await withApps(async ({ running, web, mobile }) => {
    await t.step(
      "the web app upgraded to WebSocket without Authorization on the upgrade",
      async () => {
        const engine =
          (web.socket as unknown as { io: { engine: { transport: { name: string } } } })
            .io.engine;
        for (let i = 0; i < 100 && engine.transport.name !== "websocket"; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.equal(engine.transport.name, "websocket");
        const server = running.app.io.of("/").sockets.get(web.socket.id!);
        assert.equal(server?.data.person.kind, "agent");
        assert.equal(server?.data.person.id, 123);
        // the verified credentials are not kept
        assert.equal(server?.handshake.headers.authorization, undefined);
      },
    );

    await t.step("the mobile app is customer 789", () => {
      const server = running.app.io.of("/").sockets.get(mobile.socket.id!);
      assert.deepEqual([server?.data.person.kind, server?.data.person.id], ["client", 789]);
      assert.equal(server?.handshake.auth.token, undefined, "the token is dropped once verified");
    });

    await t.step("CORS preflight for the web app's Authorization header", async () => {
      const response = await fetch(`${running.url}/socket.io/?EIO=4&transport=polling`, {
        method: "OPTIONS",
        headers: {
          origin: WEB_ORIGIN,
          "access-control-request-method": "GET",
          "access-control-request-headers": "authorization",
        },
      });
      await response.body?.cancel();
      assert.equal(response.status, 204);
      assert.equal(response.headers.get("access-control-allow-origin"), WEB_ORIGIN);
      assert.match(response.headers.get("access-control-allow-headers") ?? "", /authorization/i);
    });
  });
});

Deno.test("chat:join, messages both ways, read receipts, chat:leave — the apps' flows", async (t) => {
  await withApps(async ({ web, mobile }) => {
    let firstId = 0;
    await t.step("mobile sends the first message before it joins (auto-join)", async () => {
      const mark = mobile.mark();
      send(mobile, "sendMessage", { chat_body: "Support", chat_group_id: 456, client_id: 789 });
      const echo = await mobile.next("receiveMessage", mark) as Record<string, unknown>;
      assert.equal(echo.chat_body, "Support");
      assert.equal(echo.client_id, 789, "mobile skips its own echo by client_id");
      assert.equal(echo.sys_user_id, null);
      assert.equal(echo.sender_type, "client");
      firstId = echo.chat_id as number;
      const delivered = await mobile.next("messageDelivered", mark) as Record<string, unknown>;
      assert.deepEqual(delivered, {
        chat_id: firstId,
        chat_group_id: 456,
        timestamp: echo.chat_created_at,
      });
      const status = await mobile.next("messageStatusUpdate", mark) as Record<string, unknown>;
      assert.equal(status.chatId, firstId);
      assert.equal(status.chat_id, firstId, "mobile reads chat_id || chatId");
      assert.equal(status.status, "delivered", "no agent in the room yet");
    });

    await t.step(
      "the agent joins: userJoined to the customer, the customer's message read on join",
      async () => {
        const mobileMark = mobile.mark();
        const webMark = web.mark();
        send(web, "chat:join", { chatGroupId: 456, userType: "agent", userId: 123 });
        const joined = await mobile.next("userJoined", mobileMark) as Record<string, unknown>;
        assert.deepEqual({ ...joined, timestamp: "" }, {
          userType: "agent",
          userId: 123,
          chatGroupId: 456,
          timestamp: "",
        });
        const read = await mobile.next("messageStatusUpdate", mobileMark) as Record<
          string,
          unknown
        >;
        assert.deepEqual({ ...read, timestamp: "" }, {
          chatId: firstId,
          chat_id: firstId,
          status: "read",
          timestamp: "",
          updatedBy: "system",
          updatedByType: "auto_join",
        });
        await web.next("messageStatusUpdate", webMark);
        assert.ok(!eventsSince(web, webMark).includes("error"));
      },
    );

    await t.step("the customer writes; the web app gets what it reads", async () => {
      const mark = web.mark();
      send(mobile, "sendMessage", {
        chat_body: "My order is late",
        chat_group_id: 456,
        client_id: 789,
      });
      const message = await web.next("receiveMessage", mark) as Record<string, unknown>;
      assert.equal(typeof message.chat_id, "number");
      assert.equal(message.chat_body, "My order is late");
      assert.equal(message.sender_name, "Carla Client");
      assert.equal(message.sender_image, "https://images.example.com/profiles/carla.png");
      assert.equal(message.sys_user_id, null);
      assert.equal(message.client_id, 789);
      const status = await web.next("messageStatusUpdate", mark) as { status: string };
      assert.equal(status.status, "read", "the agent is in the room");
      const list = await web.next("customerListUpdate", mark) as {
        type: string;
        data: { customer: { chat_group_id: number; has_unread: boolean; name: string } };
      };
      assert.equal(list.type, "move_to_top");
      assert.equal(list.data.customer.chat_group_id, 456);
      assert.equal(list.data.customer.name, "Carla Client");
      assert.equal(list.data.customer.has_unread, false);
    });

    await t.step("the agent replies; the mobile app gets what it reads", async () => {
      const mark = mobile.mark();
      const webMark = web.mark();
      send(web, "sendMessage", {
        chat_body: "Let me check",
        chat_group_id: 456,
        sys_user_id: 123,
        client_id: null,
      });
      const message = await mobile.next("receiveMessage", mark) as Record<string, unknown>;
      assert.equal(message.sender_type, "agent");
      assert.equal(message.chat_body, "Let me check");
      assert.equal(message.client_id, null, "not mistaken for the customer's own echo");
      assert.equal(message.agent_name, "John Doe");
      assert.equal(
        message.agent_profile_picture,
        "https://images.example.com/profiles/john-doe.png",
      );
      // the web app shows its own message only from the echo
      const echo = await web.next("receiveMessage", webMark) as Record<string, unknown>;
      assert.equal(echo.sys_user_id, 123);
      assert.equal(echo.chat_id, message.chat_id);
      const read = await mobile.next("messageStatusUpdate", mark) as {
        status: string;
        chatId: number;
      };
      assert.deepEqual([read.chatId, read.status], [message.chat_id, "read"]);
    });

    await t.step("chat:leave: chat:left to the sender, userLeft to the customer", async () => {
      const mark = mobile.mark();
      const webMark = web.mark();
      send(web, "chat:leave", { chatGroupId: 456 });
      assert.deepEqual(await web.next("chat:left", webMark), { chatGroupId: 456 });
      const left = await mobile.next("userLeft", mark) as Record<string, unknown>;
      assert.deepEqual({ ...left, timestamp: "" }, {
        userType: "agent",
        userId: 123,
        chatGroupId: 456,
        timestamp: "",
      });
      // leaving twice (the web app does when it switches) is harmless
      const again = web.mark();
      send(web, "chat:leave", { chatGroupId: 456 });
      assert.deepEqual(await web.next("chat:left", again), { chatGroupId: 456 });
      await web.sync();
      assert.ok(!eventsSince(web, again).includes("error"));
    });

    await t.step(
      "while the agent is away, a customer message is delivered and unread",
      async () => {
        const mark = web.mark();
        const mobileMark = mobile.mark();
        send(mobile, "sendMessage", { chat_body: "hello?", chat_group_id: 456, client_id: 789 });
        const status = await mobile.next("messageStatusUpdate", mobileMark) as { status: string };
        assert.equal(status.status, "delivered");
        const list = await web.next("customerListUpdate", mark) as {
          data: { customer: { has_unread: boolean } };
        };
        assert.equal(list.data.customer.has_unread, true);
      },
    );
  });
});

Deno.test("chat:join switches conversations: the previous one is left", async () => {
  await withApps(async ({ running, web, all }) => {
    await running.app.services.store.loadFixture({
      chat_group: [{ chat_group_id: 480, client_id: 790, dept_id: 1, status: "active" }],
    });
    const other = await mobileAppSocket(running.url, {
      token: await tokenFor(running, "client:790"),
    });
    all.push(other);
    send(other, "chat:join", { chatGroupId: 480, userType: "client", userId: 790 });
    send(web, "chat:join", { chatGroupId: 456, userType: "agent", userId: 123 });
    await web.sync();
    const mark = other.mark();
    send(web, "chat:join", { chatGroupId: 480, userType: "agent", userId: 123 });
    await other.next("userJoined", mark);
    const server = running.app.io.of("/").sockets.get(web.socket.id!)!;
    assert.equal(server.rooms.has("chat_480"), true);
    assert.equal(server.rooms.has("chat_456"), false, "one open conversation at a time");
  });
});

Deno.test("typing: the web app's keystrokes relayed once a second, both shapes, payload the apps read", async (t) => {
  await withApps(async ({ web, mobile }) => {
    send(web, "chat:join", { chatGroupId: 456, userType: "agent", userId: 123 });
    send(mobile, "chat:join", { chatGroupId: 456, userType: "client", userId: 789 });
    await web.sync();
    await mobile.sync();

    await t.step("ten keystrokes in quick succession: one typing relayed", async () => {
      const mark = mobile.mark();
      for (let i = 0; i < 10; i++) {
        send(web, "typing", { chatGroupId: 456, userId: 123, userName: "Agent" });
      }
      await web.sync();
      await mobile.sync();
      const relayed = mobile.received.slice(mark).filter((r) => r.event === "typing");
      assert.equal(relayed.length, 1);
      assert.deepEqual(relayed[0].args[0], {
        chatGroupId: 456,
        userId: 123,
        userType: "agent",
        userName: "John Doe",
        userImage: "https://images.example.com/profiles/john-doe.png",
        isTyping: true,
      });
    });

    await t.step("the mobile app's typing and stopTyping reach the agent", async () => {
      const mark = web.mark();
      send(mobile, "typing", {
        chatGroupId: 456,
        userName: "Client",
        userId: 789,
        userType: "client",
      });
      const typing = await web.next("typing", mark) as Record<string, unknown>;
      assert.equal(typing.userType, "client", "the web app shows typing of clients");
      assert.equal(typing.userName, "Carla Client", "the real name, not the app's placeholder");
      send(mobile, "stopTyping", { chatGroupId: 456, userId: 789, userType: "client" });
      const stopped = await web.next("stopTyping", mark) as Record<string, unknown>;
      assert.deepEqual([stopped.chatGroupId, stopped.userId, stopped.isTyping], [456, 789, false]);
    });

    await t.step("typing claiming another person is refused", async () => {
      const mark = web.mark();
      send(web, "typing", { chatGroupId: 456, userId: 999, userName: "Agent" });
      const error = await web.next("error", mark) as { code: string };
      assert.equal(error.code, "ACCESS_DENIED");
    });
  });
});

Deno.test("presence: availability, heartbeat, getAll, getAvailableByDepartment, presence:change", async (t) => {
  await withApps(async ({ running, web, mobile, all }) => {
    const jane = await webAppSocket(running.url, {
      token: await tokenFor(running, "agent:124"),
      sysUserId: 124,
    });
    all.push(jane);

    await t.step("connecting made the agents accepting_chats", async () => {
      const mark = web.mark();
      send(web, "presence:getAll");
      const presences = await web.next("presence:all", mark) as Record<
        string,
        Record<string, unknown>
      >;
      assert.deepEqual(Object.keys(presences).sort(), ["123", "124"]);
      assert.deepEqual(
        Object.keys(presences["123"]).sort(),
        ["deptIds", "lastSeen", "socketId", "updatedAt", "userId", "userPresence", "userType"],
      );
      assert.equal(presences["123"].userPresence, "accepting_chats");
      assert.deepEqual(presences["124"].deptIds, [2]);
    });

    await t.step(
      "presence:update: presence:change to everyone; getAll lists accepting agents only",
      async () => {
        const mark = mobile.mark();
        send(web, "presence:update", { status: "not_accepting_chats" });
        const change = await mobile.next("presence:change", mark) as Record<string, unknown>;
        assert.deepEqual({ ...change, timestamp: "" }, {
          userId: 123,
          userType: "agent",
          status: "not_accepting_chats",
          firstName: "John",
          lastName: "Doe",
          deptIds: [1],
          timestamp: "",
        });
        const webMark = web.mark();
        send(web, "presence:getAll");
        const presences = await web.next("presence:all", webMark) as Record<string, unknown>;
        assert.deepEqual(Object.keys(presences), ["124"]);
      },
    );

    await t.step("an invalid status is an error naming it", async () => {
      const mark = web.mark();
      send(web, "presence:update", { status: "busy" });
      const error = await web.next("error", mark) as { code: string; message: string };
      assert.equal(error.code, "INVALID_DATA");
      assert.match(error.message, /status/);
    });

    await t.step("heartbeat is answered", async () => {
      const mark = web.mark();
      send(web, "presence:heartbeat");
      const ack = await web.next("presence:heartbeat:ack", mark) as { timestamp: string };
      assert.equal(new Date(ack.timestamp).toISOString(), ack.timestamp);
    });

    await t.step("the transfer dialog: active departments and available agents", async () => {
      const mark = web.mark();
      send(web, "presence:getAvailableByDepartment");
      const answer = await web.next("presence:availableByDepartment", mark);
      assert.deepEqual(answer, {
        departments: [
          { dept_id: 1, dept_name: "Support", availableCount: 0 },
          { dept_id: 2, dept_name: "Billing", availableCount: 1 },
        ],
        availableAgents: [{
          userId: 124,
          firstName: "Jane",
          lastName: "Roe",
          email: "jane@servana.example",
          deptIds: [2],
          isAvailable: true,
        }],
      });
    });

    await t.step("customers may not read or set agents' availability", async () => {
      const mark = mobile.mark();
      send(mobile, "presence:update", { status: "accepting_chats" });
      const error = await mobile.next("error", mark) as { code: string };
      assert.equal(error.code, "ACCESS_DENIED");
    });

    await t.step("one tab closing does not take a connected agent offline", async () => {
      const secondTab = await webAppSocket(running.url, {
        token: await tokenFor(running, "agent:124"),
        sysUserId: 124,
      });
      all.push(secondTab);
      const mark = web.mark();
      secondTab.close();
      await web.sync();
      send(web, "presence:getAll");
      const presences = await web.next("presence:all", mark) as Record<string, unknown>;
      assert.deepEqual(Object.keys(presences), ["124"], "jane is still accepting chats");
      assert.ok(
        !web.received.slice(mark).some((r) =>
          r.event === "presence:change" && (r.args[0] as { userId: number }).userId === 124
        ),
      );
      // the last tab closing: offline
      const last = web.mark();
      jane.close();
      const change = await web.next("presence:change", last) as { userId: number; status: string };
      assert.deepEqual([change.userId, change.status], [124, "offline"]);
    });
  });
});

Deno.test("the queue: an agent turning accepting_chats gets the queued conversation of their department", async () => {
  const running = await startApp(ENV);
  const all: (TestClient | undefined)[] = [];
  try {
    // 459: customer 1, dept 2, queued. Jane (dept 2) connects not accepting, then accepts.
    const jane = await webAppSocket(running.url, {
      token: await tokenFor(running, "agent:124"),
      sysUserId: 124,
    });
    all.push(jane);
    // connecting alone drained it already (the original assigns on connect)
    const assigned = await jane.next("customerListUpdate") as {
      type: string;
      data: {
        customer: { chat_group_id: number; name: string; status: string; department: string };
      };
    };
    assert.equal(assigned.type, "assigned");
    assert.equal(assigned.data.customer.chat_group_id, 459);
    assert.equal(assigned.data.customer.name, "Pia");
    assert.equal(assigned.data.customer.status, "active");
    assert.equal(assigned.data.customer.department, "Billing");
    const group = await running.app.services.store.getChatGroup(459);
    assert.deepEqual([group?.agentId, group?.status], [124, "active"]);

    // a new queued conversation is taken when she turns accepting again
    send(jane, "presence:update", { status: "not_accepting_chats" });
    await jane.sync();
    await running.app.services.store.loadFixture({
      chat_group: [{ chat_group_id: 490, client_id: 790, dept_id: 2, status: "queued" }],
    });
    const mark = jane.mark();
    send(jane, "presence:update", { status: "accepting_chats" });
    const next = await jane.next("customerListUpdate", mark) as {
      type: string;
      data: { chat_group_id: number };
    };
    assert.deepEqual([next.type, next.data.chat_group_id], ["assigned", 490]);
  } finally {
    await closeAll(running, all);
  }
});

Deno.test("both vocabularies in one conversation: a seed client and the apps", async () => {
  await withApps(async ({ running, web, mobile, all }) => {
    const admin = await connectAs(running, "agent:1");
    all.push(admin);
    await admin.join(456); // the seed's joinChatGroup
    send(web, "chat:join", { chatGroupId: 456, userType: "agent", userId: 123 });
    send(mobile, "chat:join", { chatGroupId: 456, userType: "client", userId: 789 });
    await web.sync();
    await mobile.sync();
    const marks = [admin.mark(), web.mark(), mobile.mark()];
    // the seed's sendMessage from the admin, the apps' from the others
    await admin.expectOk("sendMessage", {
      message: "seed says hi",
      chatGroupId: 456,
      clientId: 789,
    });
    send(mobile, "sendMessage", { chat_body: "app says hi", chat_group_id: 456, client_id: 789 });
    for (const c of [admin, web, mobile]) {
      for (let i = 0; i < 50 && c.payloads("receiveMessage").length < 2; i++) await c.sync();
    }
    const texts = [admin, web, mobile].map((c, i) =>
      c.received.slice(marks[i]).filter((r) => r.event === "receiveMessage").map((r) => {
        const m = r.args[0] as { chat_message: string; chat_body: string };
        assert.equal(m.chat_message, m.chat_body);
        return m.chat_body;
      })
    );
    for (const seen of texts) assert.deepEqual(seen.sort(), ["app says hi", "seed says hi"]);
  });
});

Deno.test("the apps' malformed or payload-less events never crash anything", async () => {
  await withApps(async ({ running, web, mobile }) => {
    const cases: [string, unknown][] = [
      ["chat:join", undefined],
      ["chat:join", null],
      ["chat:join", { chatGroupId: "456" }],
      ["chat:leave", undefined],
      ["sendMessage", { chat_body: 42, chat_group_id: 456 }],
      ["sendMessage", { chat_group_id: 456 }],
      ["typing", undefined],
      ["stopTyping", "x"],
      ["presence:update", undefined],
      ["presence:update", { status: ["accepting_chats"] }],
      ["presence:getAll", { extra: true }],
    ];
    for (const [event, payload] of cases) {
      const mark = web.mark();
      send(web, event, payload);
      const failure = event === "sendMessage" ? "messageError" : "error";
      const error = await web.next(failure, mark) as { code: string; message: string };
      assert.equal(error.code, "INVALID_DATA", `${event} ${JSON.stringify(payload)}`);
    }
    // the apps' messageError carries `error` for the web app's toast
    const mark = mobile.mark();
    send(mobile, "sendMessage", { chat_body: "", chat_group_id: 456 });
    const messageError = await mobile.next("messageError", mark) as Record<string, unknown>;
    assert.equal(messageError.code, "INVALID_DATA");
    assert.equal(messageError.error, messageError.message);
    // the dead resolveChat of the web app is accepted and ignored
    const before = web.mark();
    send(web, "resolveChat", { chatGroupId: 456 });
    await web.sync();
    assert.ok(!eventsSince(web, before).includes("error"));
    // everything still works
    send(web, "chat:join", { chatGroupId: 456, userType: "agent", userId: 123 });
    await web.sync();
    assert.equal(running.app.io.of("/").sockets.size, 2);
  });
});

Deno.test("after a dropped connection the apps stay in their conversation (connection state recovery)", async () => {
  await withApps(async ({ web, mobile }) => {
    send(web, "chat:join", { chatGroupId: 456, userType: "agent", userId: 123 });
    send(mobile, "chat:join", { chatGroupId: 456, userType: "client", userId: 789 });
    await web.sync();
    await mobile.sync();
    for (const client of [web, mobile]) {
      const reconnected = Promise.withResolvers<void>();
      client.socket.once("connect", () => reconnected.resolve());
      (client.socket as unknown as { io: { engine: { close(): void } } }).io.engine.close();
      await reconnected.promise;
      assert.equal(client.socket.recovered, true, `${client.name} recovered its session`);
    }
    // neither app joins again: the restored room still carries the messages
    const mark = web.mark();
    send(mobile, "sendMessage", { chat_body: "back again", chat_group_id: 456, client_id: 789 });
    const message = await web.next("receiveMessage", mark) as { chat_body: string };
    assert.equal(message.chat_body, "back again");
    const typingMark = mobile.mark();
    send(web, "typing", { chatGroupId: 456, userId: 123, userName: "Agent" });
    await mobile.next("typing", typingMark);
  });
});
