/**
 * End to end: the chat events (`joinChatGroup`, `leaveRoom`, `sendMessage`,
 * `getMessages`) through the real server with socket.io-client sockets for
 * agent 123 (dept 1), client 789, agent 124 (dept 2) and admin 1, loaded
 * from demo/fixture.json.
 */

import assert from "node:assert/strict";
import { KvStore } from "../src/store/kv_store.ts";
import { closeAll, connectAs, type TestClient, withCast } from "./support/clients.ts";
import { FailingStore } from "./support/failing_store.ts";
import { startApp } from "./support/server.ts";

const FIXTURE = { SEED_FILE: "demo/fixture.json" };

/** Extra groups: 459 in dept 1 with no agent, 460 in dept 2 assigned to agent 123. */
const EXTRA_GROUPS = {
  chatGroups: [
    { id: 459, clientId: 790, departmentId: 1, agentId: null, status: "active" as const },
    { id: 460, clientId: 790, departmentId: 2, agentId: 123, status: "active" as const },
  ],
};

const PROFILES: Record<number, { prof_firstname: string; prof_lastname: string }> = {
  1: { prof_firstname: "Ada", prof_lastname: "Admin" },
  123: { prof_firstname: "John", prof_lastname: "Doe" },
  789: { prof_firstname: "Carla", prof_lastname: "Client" },
};

function assertIsoTimestamp(value: unknown): asserts value is string {
  assert.equal(typeof value, "string");
  assert.equal(new Date(value as string).toISOString(), value, "an ISO 8601 timestamp");
}

/** The seed's `receiveMessage` for a message. */
function expectedMessage(
  chatId: number,
  text: string,
  createdAt: string,
  sender: { userId: number; type: string },
) {
  return {
    chat_id: chatId,
    chat_message: text,
    chat_created_at: createdAt,
    sender_type: sender.type,
    chatGroupId: 456,
    sender: { userId: sender.userId, profile: PROFILES[sender.userId] },
  };
}

Deno.test("joinChatGroup: access rules for each role", async (t) => {
  await withCast(async ({ running, agent, client, otherAgent, admin }) => {
    await running.app.services.store.loadFixture(EXTRA_GROUPS);

    await t.step("client: own group ok, another customer's group ACCESS_DENIED", async () => {
      assert.deepEqual(
        await client.join({ groupId: 456, userType: "client", userId: 789 }),
        { chatGroupId: 456, roomInfo: { status: "active", memberCount: 1 } },
      );
      await client.expectError("ACCESS_DENIED", "joinChatGroup", {
        groupId: 457,
        userType: "client",
        userId: 789,
      });
      await client.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 459 });
      await client.expectError("ROOM_INACTIVE", "joinChatGroup", { groupId: 458 });
      await client.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("agent: assigned and department groups ok, other department denied", async () => {
      // 456: assigned and in dept 1
      assert.deepEqual(
        await agent.join({ groupId: 456, userType: "agent", userId: 123 }),
        { chatGroupId: 456, roomInfo: { status: "active", memberCount: 2 } },
      );
      // 459: dept 1, nobody assigned
      assert.deepEqual(await agent.join(459), {
        chatGroupId: 459,
        roomInfo: { status: "active", memberCount: 1 },
      });
      // 460: dept 2 but assigned to 123
      assert.deepEqual(await agent.join(460), {
        chatGroupId: 460,
        roomInfo: { status: "active", memberCount: 1 },
      });
      await agent.expectError("ACCESS_DENIED", "joinChatGroup", {
        groupId: 457,
        userType: "agent",
        userId: 123,
      });
      // access passes for the closed dept-1 group, then it is refused as closed
      await agent.expectError("ROOM_INACTIVE", "joinChatGroup", { groupId: 458 });
      await agent.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("second agent (dept 2): own group ok, dept 1 groups denied", async () => {
      assert.deepEqual(await otherAgent.join(457), {
        chatGroupId: 457,
        roomInfo: { status: "active", memberCount: 1 },
      });
      await otherAgent.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 456 });
      await otherAgent.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 459 });
      // a closed group of another department: no access, and no hint it is closed
      await otherAgent.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 458 });
      await otherAgent.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("admin: any group", async () => {
      assert.deepEqual(
        await admin.join({ groupId: 456, userType: "admin", userId: 1 }),
        { chatGroupId: 456, roomInfo: { status: "active", memberCount: 3 } },
      );
      // admins may call themselves agents
      assert.deepEqual(
        await admin.join({ groupId: 457, userType: "agent", userId: 1 }),
        { chatGroupId: 457, roomInfo: { status: "active", memberCount: 2 } },
      );
      assert.deepEqual(await admin.join(459), {
        chatGroupId: 459,
        roomInfo: { status: "active", memberCount: 2 },
      });
      await admin.expectError("ROOM_INACTIVE", "joinChatGroup", { groupId: 458 });
      await admin.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("a join claiming another identity is ACCESS_DENIED", async () => {
      await agent.expectError("ACCESS_DENIED", "joinChatGroup", {
        groupId: 456,
        userType: "agent",
        userId: 124,
      });
      await client.expectError("ACCESS_DENIED", "joinChatGroup", {
        groupId: 456,
        userType: "agent",
        userId: 789,
      });
    });
  });
});

Deno.test("joinChatGroup: memberCount counts distinct users, userJoined goes to the others", async () => {
  await withCast(async ({ running, agent, client, otherAgent, admin }) => {
    let secondTab: TestClient | undefined;
    try {
      secondTab = await connectAs(running, "client-789");
      assert.deepEqual(await client.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 1 },
      });

      const clientMark = client.mark();
      assert.deepEqual(await agent.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 2 },
      });
      assert.deepEqual(await client.next("userJoined", clientMark), {
        userType: "agent",
        userId: 123,
        chatGroupId: 456,
      });

      // the same customer in a second tab: two sockets, still two users
      assert.deepEqual(await secondTab.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 2 },
      });

      // joining again from the same socket: joinedRoom again, nobody told twice
      assert.deepEqual(await agent.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 2 },
      });

      assert.deepEqual(await admin.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 3 },
      });

      for (const c of [agent, client, secondTab, otherAgent, admin]) await c.sync();
      // one notice per user: the customer's second tab announces nobody new
      assert.deepEqual(agent.payloads("userJoined"), [
        { userType: "admin", userId: 1, chatGroupId: 456 },
      ]);
      assert.deepEqual(client.payloads("userJoined"), [
        { userType: "agent", userId: 123, chatGroupId: 456 },
        { userType: "admin", userId: 1, chatGroupId: 456 },
      ]);
      assert.deepEqual(secondTab.payloads("userJoined"), [
        { userType: "admin", userId: 1, chatGroupId: 456 },
      ]);
      assert.deepEqual(admin.payloads("userJoined"), []);
      assert.deepEqual(otherAgent.payloads("userJoined"), []);

      // the first tab leaves: the customer is still there, nobody is told
      await client.expectOk("leaveRoom", { chatGroupId: 456 });
      assert.deepEqual(await admin.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 3 },
      });
      // the last tab leaves: now the customer has left
      const mark = agent.mark();
      await secondTab.expectOk("leaveRoom", { chatGroupId: 456 });
      assert.deepEqual(await agent.next("userLeft", mark), {
        userType: "client",
        userId: 789,
        chatGroupId: 456,
      });
      for (const c of [agent, client, secondTab, admin]) await c.sync();
      assert.equal(agent.count("userLeft"), 1);
      assert.equal(admin.count("userLeft"), 1);
      assert.equal(client.count("userLeft"), 0);
    } finally {
      secondTab?.close();
    }
  });
});

Deno.test("leaveRoom: userLeft to the others; afterwards no messages, no sending", async () => {
  await withCast(async ({ agent, client, otherAgent }) => {
    await agent.join(456);
    await client.join(456);

    const agentMark = agent.mark();
    const left = await client.expectOk("leaveRoom", { chatGroupId: 456 });
    assert.equal(left.left, true);
    assert.deepEqual(await agent.next("userLeft", agentMark), {
      userType: "client",
      userId: 789,
      chatGroupId: 456,
    });

    // the leaver no longer receives the room's messages and may not write to it
    await agent.expectOk("sendMessage", {
      message: "still there?",
      chatGroupId: 456,
      clientId: 789,
    });
    await client.expectError("ACCESS_DENIED", "sendMessage", {
      message: "yes",
      chatGroupId: 456,
      clientId: 789,
    });
    // leaving a room one is not in: nothing to tell anyone
    const again = await client.expectOk("leaveRoom", { chatGroupId: 456 });
    assert.equal(again.left, false);

    for (const c of [agent, client, otherAgent]) await c.sync();
    assert.equal(client.count("receiveMessage"), 0);
    assert.equal(client.count("userLeft"), 0);
    assert.equal(agent.count("userLeft"), 1);
    assert.equal(otherAgent.count("userLeft"), 0);
  });
});

Deno.test("sendMessage: exact payloads to the chat, department and customer rooms", async (t) => {
  await withCast(async ({ running, agent, client, otherAgent, admin }) => {
    let secondTab: TestClient | undefined;
    try {
      // the customer's second tab is in user_789 but not in the chat room
      secondTab = await connectAs(running, "client-789");
      await agent.join(456);
      await client.join(456);
      const everyone = [agent, client, secondTab, otherAgent, admin];

      const sendAndCollect = async (sender: TestClient, text: string) => {
        const marks = everyone.map((c) => c.mark());
        const ack = await sender.expectOk("sendMessage", {
          message: text,
          chatGroupId: 456,
          clientId: 789,
        });
        for (const c of everyone) await c.sync();
        const got = everyone.map((c, i) => {
          const since = c.received.slice(marks[i]);
          const of = (event: string) =>
            since.filter((r) => r.event === event).map((r) => r.args[0]);
          return {
            receiveMessage: of("receiveMessage"),
            updateChatGroups: of("updateChatGroups"),
            customerListUpdate: of("customerListUpdate"),
          };
        });
        return { ack, got };
      };

      await t.step("agent 123 writes", async () => {
        const { ack, got } = await sendAndCollect(agent, "Hello, how can I help you?");
        const [toAgent, toClient, toSecondTab, toOtherAgent, toAdmin] = got;
        assert.equal(typeof ack.chat_id, "number");
        const chatId = ack.chat_id as number;
        assert.equal(toAgent.receiveMessage.length, 1);
        const createdAt = (toAgent.receiveMessage[0] as { chat_created_at: unknown })
          .chat_created_at;
        assertIsoTimestamp(createdAt);
        assert.deepEqual(ack, { ok: true, chat_id: chatId, duplicate: false });

        const message = expectedMessage(chatId, "Hello, how can I help you?", createdAt, {
          userId: 123,
          type: "agent",
        });
        const update = { action: "new_message", chatGroupId: 456, timestamp: createdAt };
        const sort = { action: "sort", chatGroupId: 456, newPosition: 1, timestamp: createdAt };

        // chat room: both members (sender included)
        assert.deepEqual(toAgent.receiveMessage, [message]);
        assert.deepEqual(toClient.receiveMessage, [message]);
        assert.deepEqual(toSecondTab.receiveMessage, []);
        assert.deepEqual(toAdmin.receiveMessage, []);
        assert.deepEqual(toOtherAgent.receiveMessage, []);
        // updateChatGroups: dept_1 (agent, admin) and user_789 (both tabs), once each
        assert.deepEqual(toAgent.updateChatGroups, [update]);
        assert.deepEqual(toAdmin.updateChatGroups, [update]);
        assert.deepEqual(toClient.updateChatGroups, [update]);
        assert.deepEqual(toSecondTab.updateChatGroups, [update]);
        assert.deepEqual(toOtherAgent.updateChatGroups, []);
        // customerListUpdate: dept_1 only
        assert.deepEqual(toAgent.customerListUpdate, [sort]);
        assert.deepEqual(toAdmin.customerListUpdate, [sort]);
        assert.deepEqual(toClient.customerListUpdate, []);
        assert.deepEqual(toSecondTab.customerListUpdate, []);
        assert.deepEqual(toOtherAgent.customerListUpdate, []);
      });

      await t.step("client 789 answers", async () => {
        const { ack, got } = await sendAndCollect(client, "My order is late");
        const [toAgent, toClient, toSecondTab, toOtherAgent, toAdmin] = got;
        const chatId = ack.chat_id as number;
        const createdAt = (toClient.receiveMessage[0] as { chat_created_at: unknown })
          ?.chat_created_at;
        assertIsoTimestamp(createdAt);
        const message = expectedMessage(chatId, "My order is late", createdAt, {
          userId: 789,
          type: "client",
        });
        const update = { action: "new_message", chatGroupId: 456, timestamp: createdAt };
        const sort = { action: "sort", chatGroupId: 456, newPosition: 1, timestamp: createdAt };
        assert.deepEqual(toAgent.receiveMessage, [message]);
        assert.deepEqual(toClient.receiveMessage, [message]);
        assert.deepEqual(toSecondTab.receiveMessage, []);
        assert.deepEqual(toAdmin.receiveMessage, []);
        assert.deepEqual(toOtherAgent.receiveMessage, []);
        assert.deepEqual(toAgent.updateChatGroups, [update]);
        assert.deepEqual(toAdmin.updateChatGroups, [update]);
        assert.deepEqual(toClient.updateChatGroups, [update]);
        assert.deepEqual(toSecondTab.updateChatGroups, [update]);
        assert.deepEqual(toOtherAgent.updateChatGroups, []);
        assert.deepEqual(toAgent.customerListUpdate, [sort]);
        assert.deepEqual(toAdmin.customerListUpdate, [sort]);
        assert.deepEqual(toClient.customerListUpdate, []);
        assert.deepEqual(toOtherAgent.customerListUpdate, []);
      });

      await t.step("an admin in the room gets each event once", async () => {
        await admin.join(456);
        const { ack, got } = await sendAndCollect(admin, "Admin here");
        const toAdmin = got[4];
        const toOtherAgent = got[3];
        const createdAt = (toAdmin.receiveMessage[0] as { chat_created_at: unknown })
          ?.chat_created_at;
        assertIsoTimestamp(createdAt);
        assert.deepEqual(toAdmin.receiveMessage, [
          expectedMessage(ack.chat_id as number, "Admin here", createdAt, {
            userId: 1,
            type: "admin",
          }),
        ]);
        assert.equal(toAdmin.updateChatGroups.length, 1);
        assert.equal(toAdmin.customerListUpdate.length, 1);
        assert.deepEqual(toOtherAgent, {
          receiveMessage: [],
          updateChatGroups: [],
          customerListUpdate: [],
        });
      });
    } finally {
      secondTab?.close();
    }
  });
});

Deno.test("sendMessage: XSS sanitized, invalid content and wrong rooms refused", async (t) => {
  await withCast(async ({ agent, client, otherAgent }) => {
    await agent.join(456);
    await client.join(456);

    async function sent(text: string): Promise<string> {
      const mark = client.mark();
      const ack = await agent.expectOk("sendMessage", {
        message: text,
        chatGroupId: 456,
        clientId: 789,
      });
      const got = await client.next("receiveMessage", mark) as {
        chat_id: number;
        chat_message: string;
      };
      assert.equal(got.chat_id, ack.chat_id);
      return got.chat_message;
    }

    await t.step(
      "script elements are removed with their content, other tags stripped",
      async () => {
        assert.equal(await sent('Hi <script>alert("x")</script>there'), "Hi there");
        assert.equal(await sent("<b>bold</b> and <i>italic</i>"), "bold and italic");
        assert.equal(await sent('<img src=x onerror="alert(1)">picture'), "picture");
        assert.equal(await sent('<a href="javascript:alert(1)">link</a>'), "link");
        const escaped = await sent("1 < 2 & 3 > 2");
        assert.ok(!/[<>]/.test(escaped), `no raw angle brackets: ${escaped}`);
        assert.match(escaped, /^1 &lt; 2 &amp; 3 &gt; 2$/);
      },
    );

    await t.step(
      "empty, whitespace-only, markup-only and over-long messages: INVALID_DATA",
      async () => {
        const base = { chatGroupId: 456, clientId: 789 };
        for (const message of ["", "   \n\t  ", "<script>alert(1)</script>", "x".repeat(5001)]) {
          const { error } = await agent.expectError("INVALID_DATA", "sendMessage", {
            ...base,
            message,
          });
          const issues = (error.details as { issues: { field: string }[] }).issues;
          assert.ok(issues.some((i) => i.field === "message"), JSON.stringify(error));
        }
        // exactly MAX_MESSAGE_LENGTH (default 5000) is fine
        assert.equal(await sent("y".repeat(5000)), "y".repeat(5000));
      },
    );

    await t.step("not in the room: ACCESS_DENIED", async () => {
      await otherAgent.expectError("ACCESS_DENIED", "sendMessage", {
        message: "let me in",
        chatGroupId: 456,
        clientId: 789,
      });
      // agent 124 is allowed in 457 but has not joined it
      await otherAgent.expectError("ACCESS_DENIED", "sendMessage", {
        message: "not joined yet",
        chatGroupId: 457,
        clientId: 790,
      });
    });

    await t.step("clientId not the group's customer: INVALID_DATA naming clientId", async () => {
      const { error } = await agent.expectError("INVALID_DATA", "sendMessage", {
        message: "wrong routing",
        chatGroupId: 456,
        clientId: 790,
      });
      const issues = (error.details as { issues: { field: string }[] }).issues;
      assert.deepEqual(issues.map((i) => i.field), ["clientId"]);
    });

    await t.step("nothing refused reached anyone", async () => {
      await client.sync();
      await otherAgent.sync();
      // only the six accepted messages above
      assert.equal(client.count("receiveMessage"), 6);
      assert.equal(otherAgent.count("receiveMessage"), 0);
      for (const payload of client.payloads("receiveMessage")) {
        const text = (payload as { chat_message: string }).chat_message;
        assert.ok(!text.includes("wrong routing") && !text.includes("let me in"));
      }
    });
  });
});

Deno.test("sendMessage: a retried clientMessageId stores and broadcasts once", async (t) => {
  await withCast(async ({ agent, client, admin }) => {
    await agent.join(456);
    await client.join(456);
    const payload = {
      message: "Your refund is on its way",
      chatGroupId: 456,
      clientId: 789,
      clientMessageId: "c0ffee-1",
    };

    await t.step("sequential retry: same chat_id, one receiveMessage", async () => {
      const first = await agent.expectOk("sendMessage", payload);
      const second = await agent.expectOk("sendMessage", payload);
      assert.deepEqual(first, { ok: true, chat_id: first.chat_id, duplicate: false });
      assert.deepEqual(second, { ok: true, chat_id: first.chat_id, duplicate: true });
      await client.sync();
      await admin.sync();
      assert.equal(client.count("receiveMessage"), 1);
      assert.equal(client.count("updateChatGroups"), 1);
      assert.equal(admin.count("customerListUpdate"), 1);
    });

    await t.step("concurrent retries: one message", async () => {
      const again = { ...payload, clientMessageId: "c0ffee-2", message: "twice at once" };
      const acks = await Promise.all([
        agent.request("sendMessage", again),
        agent.request("sendMessage", again),
        agent.request("sendMessage", again),
      ]);
      assert.ok(acks.every((a) => a.ok === true), JSON.stringify(acks));
      assert.equal(new Set(acks.map((a) => a.chat_id)).size, 1);
      assert.equal(acks.filter((a) => a.duplicate === false).length, 1);
      await client.sync();
      assert.equal(client.count("receiveMessage"), 2);
    });

    await t.step("the same id from another user is another message", async () => {
      const mine = await client.expectOk("sendMessage", { ...payload, message: "thanks" });
      const theirs = client.payloads("receiveMessage")[0] as { chat_id: number };
      assert.notEqual(mine.chat_id, theirs.chat_id);
      assert.equal(mine.duplicate, false);
      const history = await agent.expectOk("getMessages", { chatGroupId: 456 });
      assert.equal((history.messages as unknown[]).length, 3);
    });
  });
});

Deno.test("sendMessage: a storage failure is SERVER_ERROR and nothing is broadcast", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new FailingStore(new KvStore(kv));
  await withCast(
    async ({ agent, client, otherAgent, admin }) => {
      await agent.join(456);
      await client.join(456);
      store.failAddMessage = true;
      const { error, ack } = await agent.expectError("SERVER_ERROR", "sendMessage", {
        message: "this will not be stored",
        chatGroupId: 456,
        clientId: 789,
        clientMessageId: "retry-me",
      });
      assert.equal(store.refused, 1);
      assert.equal(ack.ok, false);
      assert.equal(ack.code, "SERVER_ERROR");
      // no internals leak
      assert.ok(!error.message.includes("disk"), error.message);
      assert.ok(!JSON.stringify(error).includes("disk"));

      for (const c of [agent, client, otherAgent, admin]) await c.sync();
      for (const c of [agent, client, otherAgent, admin]) {
        assert.equal(c.count("receiveMessage"), 0, c.name);
        assert.equal(c.count("updateChatGroups"), 0, c.name);
        assert.equal(c.count("customerListUpdate"), 0, c.name);
      }

      // the retry after the outage is stored and broadcast once
      store.failAddMessage = false;
      const retry = await agent.expectOk("sendMessage", {
        message: "this will not be stored",
        chatGroupId: 456,
        clientId: 789,
        clientMessageId: "retry-me",
      });
      assert.equal(retry.duplicate, false);
      await client.sync();
      assert.equal(client.count("receiveMessage"), 1);
      const history = await agent.expectOk("getMessages", { chatGroupId: 456 });
      assert.equal((history.messages as unknown[]).length, 1);
    },
    { app: { kv, store } },
  );
});

Deno.test("getMessages: history for those with access, ACCESS_DENIED for others", async () => {
  await withCast(async ({ agent, client, otherAgent, admin }) => {
    await agent.join(456);
    await client.join(456);
    const ids: number[] = [];
    for (const [sender, text] of [[agent, "one"], [client, "two"], [agent, "three"]] as const) {
      const ack = await sender.expectOk("sendMessage", {
        message: text,
        chatGroupId: 456,
        clientId: 789,
      });
      ids.push(ack.chat_id as number);
    }
    await client.sync();
    assert.equal(client.count("receiveMessage"), 3);

    const all = await client.expectOk("getMessages", { chatGroupId: 456 });
    assert.equal(all.chatGroupId, 456);
    // the same payloads as receiveMessage, oldest first
    assert.deepEqual(all.messages, client.payloads("receiveMessage"));
    assert.deepEqual((all.messages as { chat_id: number }[]).map((m) => m.chat_id), ids);

    const newest = await agent.expectOk("getMessages", { chatGroupId: 456, limit: 2 });
    assert.deepEqual(
      (newest.messages as { chat_id: number }[]).map((m) => m.chat_id),
      ids.slice(1),
    );
    const older = await agent.expectOk("getMessages", { chatGroupId: 456, before: ids[2] });
    assert.deepEqual(
      (older.messages as { chat_id: number }[]).map((m) => m.chat_id),
      ids.slice(0, 2),
    );
    const page = await agent.expectOk("getMessages", {
      chatGroupId: 456,
      before: ids[2],
      limit: 1,
    });
    assert.deepEqual((page.messages as { chat_id: number }[]).map((m) => m.chat_id), [ids[1]]);

    // an admin may read any group's history without joining it
    const byAdmin = await admin.expectOk("getMessages", { chatGroupId: 456 });
    assert.deepEqual(byAdmin.messages, all.messages);

    await otherAgent.expectError("ACCESS_DENIED", "getMessages", { chatGroupId: 456 });
    await client.expectError("ACCESS_DENIED", "getMessages", { chatGroupId: 457 });
    await client.expectError("ROOM_NOT_FOUND", "getMessages", { chatGroupId: 99999 });
    const empty = await otherAgent.expectOk("getMessages", { chatGroupId: 457 });
    assert.deepEqual(empty.messages, []);
  });
});

Deno.test("joinChatGroup: a socket closed while its join is in flight leaves no room behind", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new FailingStore(new KvStore(kv));
  const running = await startApp(FIXTURE, { kv, store });
  const clients: (TestClient | undefined)[] = [];
  try {
    const agent = await connectAs(running, "agent-123");
    clients.push(agent);
    const serverSocketId = [...running.app.io.of("/").sockets.keys()][0];
    const hold = store.holdNextGetChatGroup();
    agent.socket.emit("joinChatGroup", { groupId: 456 });
    await hold.entered;
    const gone = Promise.withResolvers<void>();
    running.app.io.of("/").sockets.get(serverSocketId)!.once("disconnect", () => gone.resolve());
    agent.close();
    await gone.promise;
    hold.release();
  } finally {
    // close() waits for the in-flight join to finish (socket.io makes join a no-op once closed)
    await closeAll(running, clients);
  }
  const adapter = running.app.io.of("/").adapter;
  assert.equal(adapter.rooms.has("456"), false, "room 456 left behind");
  assert.equal(adapter.sids.size, 0);
});
