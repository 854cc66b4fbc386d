/**
 * End to end: the seed's chat events (`joinChatGroup`, `leaveRoom`,
 * `sendMessage`, `getMessages`) through the real server with socket.io-client
 * sockets for agent 123 (dept 1), customer 789, agent 124 (dept 2) and admin
 * agent 1, loaded from demo/fixture.json. The apps' vocabulary has its own
 * suite (apps_test.ts).
 */

import assert from "node:assert/strict";
import { KvStore } from "../src/store/kv_store.ts";
import { closeAll, connectAs, type TestClient, withCast } from "./support/clients.ts";
import { FailingStore } from "./support/failing_store.ts";
import { startApp } from "./support/server.ts";

const FIXTURE = { SEED_FILE: "demo/fixture.json" };

/** Extra groups: 470 in dept 1 with no agent, 471 in dept 2 assigned to agent 123. */
const EXTRA_GROUPS = {
  chat_group: [
    { chat_group_id: 470, client_id: 790, dept_id: 1, sys_user_id: null, status: "transferred" },
    { chat_group_id: 471, client_id: 790, dept_id: 2, sys_user_id: 123, status: "active" },
  ],
};

const SENDERS: Record<string, { first: string; last: string; image: string | null }> = {
  "agent:1": { first: "Ada", last: "Admin", image: null },
  "agent:123": {
    first: "John",
    last: "Doe",
    image: "https://images.example.com/profiles/john-doe.png",
  },
  "client:789": {
    first: "Carla",
    last: "Client",
    image: "https://images.example.com/profiles/carla.png",
  },
};

function assertIsoTimestamp(value: unknown): asserts value is string {
  assert.equal(typeof value, "string");
  assert.equal(new Date(value as string).toISOString(), value, "an ISO 8601 timestamp");
}

/** `receiveMessage` for a message of group 456: the seed's fields and the apps'. */
function expectedMessage(chatId: number, text: string, createdAt: string, who: string) {
  const [kind, id] = who.split(":");
  const sender = SENDERS[who];
  const name = `${sender.first} ${sender.last}`;
  return {
    chat_id: chatId,
    chat_message: text,
    chat_created_at: createdAt,
    sender_type: kind,
    chatGroupId: 456,
    sender: {
      userId: Number(id),
      profile: { prof_firstname: sender.first, prof_lastname: sender.last },
      image: sender.image,
    },
    chat_body: text,
    chat_group_id: 456,
    sys_user_id: kind === "agent" ? Number(id) : null,
    client_id: kind === "client" ? Number(id) : null,
    chat_delivered_at: null,
    chat_read_at: null,
    sender_id: Number(id),
    sender_name: name,
    sender_image: sender.image,
    agent_name: kind === "agent" ? name : null,
    agent_profile_picture: kind === "agent" ? sender.image : null,
  };
}

/** `userJoined` / `userLeft` without its timestamp (checked separately). */
function notice(payload: unknown) {
  const { timestamp, ...rest } = payload as { timestamp: unknown };
  assertIsoTimestamp(timestamp);
  return rest;
}

Deno.test("joinChatGroup: access rules for each role", async (t) => {
  await withCast(async ({ running, agent, client, otherAgent, admin }) => {
    await running.app.services.store.loadFixture(EXTRA_GROUPS);

    await t.step("customer: own conversation ok, another customer's ACCESS_DENIED", async () => {
      assert.deepEqual(
        await client.join({ groupId: 456, userType: "client", userId: 789 }),
        { chatGroupId: 456, roomInfo: { status: "active", memberCount: 1 } },
      );
      await client.expectError("ACCESS_DENIED", "joinChatGroup", {
        groupId: 457,
        userType: "client",
        userId: 789,
      });
      await client.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 470 });
      await client.expectError("ROOM_INACTIVE", "joinChatGroup", { groupId: 458 });
      await client.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("agent: assigned and department conversations, any open status", async () => {
      assert.deepEqual(
        await agent.join({ groupId: 456, userType: "agent", userId: 123 }),
        { chatGroupId: 456, roomInfo: { status: "active", memberCount: 2 } },
      );
      // 470: dept 1, nobody assigned, status transferred (open)
      assert.deepEqual(await agent.join(470), {
        chatGroupId: 470,
        roomInfo: { status: "transferred", memberCount: 1 },
      });
      // 471: dept 2 but assigned to 123
      assert.deepEqual(await agent.join(471), {
        chatGroupId: 471,
        roomInfo: { status: "active", memberCount: 1 },
      });
      await agent.expectError("ACCESS_DENIED", "joinChatGroup", {
        groupId: 457,
        userType: "agent",
        userId: 123,
      });
      // access passes for the resolved dept-1 group, then it is refused as closed
      await agent.expectError("ROOM_INACTIVE", "joinChatGroup", { groupId: 458 });
      await agent.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("second agent (dept 2): own conversation ok, dept 1 denied", async () => {
      assert.deepEqual(await otherAgent.join(457), {
        chatGroupId: 457,
        roomInfo: { status: "active", memberCount: 1 },
      });
      await otherAgent.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 456 });
      await otherAgent.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 470 });
      // a resolved conversation of another department: no access, and no hint it is closed
      await otherAgent.expectError("ACCESS_DENIED", "joinChatGroup", { groupId: 458 });
      await otherAgent.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("admin: any conversation", async () => {
      assert.deepEqual(
        await admin.join({ groupId: 456, userType: "admin", userId: 1 }),
        { chatGroupId: 456, roomInfo: { status: "active", memberCount: 3 } },
      );
      // admins may call themselves agents
      assert.deepEqual(
        await admin.join({ groupId: 457, userType: "agent", userId: 1 }),
        { chatGroupId: 457, roomInfo: { status: "active", memberCount: 2 } },
      );
      await admin.expectError("ROOM_INACTIVE", "joinChatGroup", { groupId: 458 });
      await admin.expectError("ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("a join claiming another person is ACCESS_DENIED", async () => {
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
      // the admin is agent 1; customer 1 is someone else
      await admin.expectError("ACCESS_DENIED", "joinChatGroup", {
        groupId: 456,
        userType: "client",
        userId: 1,
      });
    });
  });
});

Deno.test("joinChatGroup: memberCount counts distinct people, userJoined goes to the others", async () => {
  await withCast(async ({ running, agent, client, otherAgent, admin }) => {
    let secondTab: TestClient | undefined;
    try {
      secondTab = await connectAs(running, "client:789");
      assert.deepEqual(await client.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 1 },
      });

      const clientMark = client.mark();
      assert.deepEqual(await agent.join(456), {
        chatGroupId: 456,
        roomInfo: { status: "active", memberCount: 2 },
      });
      assert.deepEqual(notice(await client.next("userJoined", clientMark)), {
        userType: "agent",
        userId: 123,
        chatGroupId: 456,
      });

      // the same customer in a second tab: two sockets, still two people
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
      // one notice per person: the customer's second tab announces nobody new;
      // an admin is an agent to the others
      assert.deepEqual(agent.payloads("userJoined").map(notice), [
        { userType: "agent", userId: 1, chatGroupId: 456 },
      ]);
      assert.deepEqual(client.payloads("userJoined").map(notice), [
        { userType: "agent", userId: 123, chatGroupId: 456 },
        { userType: "agent", userId: 1, chatGroupId: 456 },
      ]);
      assert.deepEqual(secondTab.payloads("userJoined").map(notice), [
        { userType: "agent", userId: 1, chatGroupId: 456 },
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
      assert.deepEqual(notice(await agent.next("userLeft", mark)), {
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

Deno.test("joinChatGroup: customer 1 and the admin (agent 1) are two members", async () => {
  const running = await startApp(FIXTURE);
  const clients: (TestClient | undefined)[] = [];
  try {
    await running.app.services.store.loadFixture({
      chat_group: [{ chat_group_id: 472, client_id: 1, dept_id: 1, status: "active" }],
    });
    const customerOne = await connectAs(running, "client:1");
    clients.push(customerOne);
    const adminOne = await connectAs(running, "agent:1");
    clients.push(adminOne);
    assert.deepEqual(await customerOne.join(472), {
      chatGroupId: 472,
      roomInfo: { status: "active", memberCount: 1 },
    });
    const mark = customerOne.mark();
    assert.deepEqual(await adminOne.join(472), {
      chatGroupId: 472,
      roomInfo: { status: "active", memberCount: 2 },
    });
    assert.deepEqual(notice(await customerOne.next("userJoined", mark)), {
      userType: "agent",
      userId: 1,
      chatGroupId: 472,
    });
    // the admin leaving does not take customer 1 out
    await adminOne.expectOk("leaveRoom", { chatGroupId: 472 });
    const sent = await customerOne.expectOk("sendMessage", {
      message: "still here",
      chatGroupId: 472,
      clientId: 1,
    });
    assert.equal(sent.duplicate, false);
  } finally {
    await closeAll(running, clients);
  }
});

Deno.test("leaveRoom: userLeft to the others; afterwards no messages, no sending", async () => {
  await withCast(async ({ agent, client, otherAgent }) => {
    await agent.join(456);
    await client.join(456);

    const agentMark = agent.mark();
    const left = await client.expectOk("leaveRoom", { chatGroupId: 456 });
    assert.equal(left.left, true);
    assert.deepEqual(notice(await agent.next("userLeft", agentMark)), {
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

Deno.test("sendMessage: exact payloads to the conversation, the agent, the department and the customer", async (t) => {
  await withCast(async ({ running, agent, client, otherAgent, admin }) => {
    let secondTab: TestClient | undefined;
    try {
      // the customer's second tab is in client_789 but not in the conversation
      secondTab = await connectAs(running, "client:789");
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
        // the follow-ups come after the ack: wait for the sender's messageDelivered
        await sender.next("messageDelivered", marks[everyone.indexOf(sender)]);
        for (const c of everyone) await c.sync();
        const got = everyone.map((c, i) => {
          const since = c.received.slice(marks[i]);
          const of = (event: string) =>
            since.filter((r) => r.event === event).map((r) => r.args[0]);
          return {
            receiveMessage: of("receiveMessage"),
            messageStatusUpdate: of("messageStatusUpdate"),
            messageDelivered: of("messageDelivered"),
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

        const message = expectedMessage(
          chatId,
          "Hello, how can I help you?",
          createdAt,
          "agent:123",
        );
        // the conversation: both members (sender included)
        assert.deepEqual(toAgent.receiveMessage, [message]);
        assert.deepEqual(toClient.receiveMessage, [message]);
        assert.deepEqual(toSecondTab.receiveMessage, []);
        assert.deepEqual(toAdmin.receiveMessage, []);
        assert.deepEqual(toOtherAgent.receiveMessage, []);
        // the customer was in the room: read at once
        const status = toClient.messageStatusUpdate[0] as Record<string, unknown>;
        assert.deepEqual(toAgent.messageStatusUpdate, [status]);
        assert.deepEqual({ ...status, timestamp: "" }, {
          chatId,
          chat_id: chatId,
          status: "read",
          timestamp: "",
          updatedBy: "system",
          updatedByType: "auto",
        });
        assert.deepEqual(toAgent.messageDelivered, [
          { chat_id: chatId, chat_group_id: 456, timestamp: createdAt },
        ]);
        assert.deepEqual(toClient.messageDelivered, []);
        // updateChatGroups: department 1 (agent, admin) and client_789 (both tabs), once each
        const update = { action: "new_message", chatGroupId: 456, timestamp: createdAt };
        assert.deepEqual(toAgent.updateChatGroups, [update]);
        assert.deepEqual(toAdmin.updateChatGroups, [update]);
        assert.deepEqual(toClient.updateChatGroups, [update]);
        assert.deepEqual(toSecondTab.updateChatGroups, [update]);
        assert.deepEqual(toOtherAgent.updateChatGroups, []);
        // customerListUpdate: the assigned agent gets the apps' entry with the seed's fields,
        // the department's other agents the seed's sort
        assert.equal(toAgent.customerListUpdate.length, 1);
        const forAgent = toAgent.customerListUpdate[0] as Record<string, unknown>;
        assertIsoTimestamp(forAgent.timestamp);
        assert.deepEqual(forAgent, {
          action: "sort",
          chatGroupId: 456,
          newPosition: 1,
          timestamp: forAgent.timestamp,
          type: "move_to_top",
          data: {
            customer: {
              chat_group_id: 456,
              name: "Carla Client",
              number: "9171234567",
              profile: "https://images.example.com/profiles/carla.png",
              status: "active",
              chat_type: "active",
              department: "Support",
              sys_user_id: 123,
              dept_id: 1,
              created_at: "2026-12-01T09:00:00.000Z",
              has_unread: false,
            },
            chat_group_id: 456,
            agentId: 123,
            accepted_by: 123,
          },
        });
        assert.deepEqual(toAdmin.customerListUpdate, [
          { action: "sort", chatGroupId: 456, newPosition: 1, timestamp: forAgent.timestamp },
        ]);
        assert.deepEqual(toClient.customerListUpdate, []);
        assert.deepEqual(toSecondTab.customerListUpdate, []);
        assert.deepEqual(toOtherAgent.customerListUpdate, []);
      });

      await t.step("customer 789 answers", async () => {
        const { ack, got } = await sendAndCollect(client, "My order is late");
        const [toAgent, toClient, toSecondTab, toOtherAgent, toAdmin] = got;
        const chatId = ack.chat_id as number;
        const createdAt = (toClient.receiveMessage[0] as { chat_created_at: unknown })
          ?.chat_created_at;
        assertIsoTimestamp(createdAt);
        const message = expectedMessage(chatId, "My order is late", createdAt, "client:789");
        assert.deepEqual(toAgent.receiveMessage, [message]);
        assert.deepEqual(toClient.receiveMessage, [message]);
        assert.deepEqual(toSecondTab.receiveMessage, []);
        assert.deepEqual(toAdmin.receiveMessage, []);
        assert.deepEqual(toOtherAgent.receiveMessage, []);
        assert.equal((toAgent.messageStatusUpdate[0] as { status: string }).status, "read");
        assert.equal(toClient.messageDelivered.length, 1);
        assert.equal(toAgent.updateChatGroups.length, 1);
        assert.equal(toSecondTab.updateChatGroups.length, 1);
        assert.deepEqual(toOtherAgent.updateChatGroups, []);
        const forAgent = toAgent.customerListUpdate[0] as {
          data: { customer: { has_unread: boolean } };
        };
        assert.equal(forAgent.data.customer.has_unread, false, "the agent was in the room");
        assert.equal(toAdmin.customerListUpdate.length, 1);
        assert.deepEqual(toClient.customerListUpdate, []);
        assert.deepEqual(toOtherAgent.customerListUpdate, []);
      });

      await t.step("with the agent away, the customer's message is delivered, unread", async () => {
        await agent.expectOk("leaveRoom", { chatGroupId: 456 });
        const { ack, got } = await sendAndCollect(client, "Hello?");
        const [toAgent, toClient] = got;
        assert.deepEqual(toAgent.receiveMessage, [], "not in the room any more");
        assert.equal(
          (toClient.messageStatusUpdate[0] as { status: string; chatId: number }).status,
          "delivered",
        );
        const forAgent = toAgent.customerListUpdate[0] as {
          data: { customer: { has_unread: boolean } };
        };
        assert.equal(forAgent.data.customer.has_unread, true);
        const history = await admin.expectOk("getMessages", { chatGroupId: 456 });
        const stored = (history.messages as { chat_id: number; chat_read_at: string | null }[])
          .find((m) => m.chat_id === ack.chat_id);
        assert.equal(stored?.chat_read_at, null);
        await agent.join(456);
      });

      await t.step("an admin in the room gets each event once, as an agent", async () => {
        await admin.join(456);
        const { ack, got } = await sendAndCollect(admin, "Admin here");
        const toAdmin = got[4];
        const toOtherAgent = got[3];
        const createdAt = (toAdmin.receiveMessage[0] as { chat_created_at: unknown })
          ?.chat_created_at;
        assertIsoTimestamp(createdAt);
        assert.deepEqual(toAdmin.receiveMessage, [
          expectedMessage(ack.chat_id as number, "Admin here", createdAt, "agent:1"),
        ]);
        assert.equal(toAdmin.updateChatGroups.length, 1);
        assert.equal(toAdmin.customerListUpdate.length, 1);
        assert.deepEqual(toOtherAgent, {
          receiveMessage: [],
          messageStatusUpdate: [],
          messageDelivered: [],
          updateChatGroups: [],
          customerListUpdate: [],
        });
      });
    } finally {
      secondTab?.close();
    }
  });
});

Deno.test("sendMessage: markup removed, text kept as typed, invalid content and wrong rooms refused", async (t) => {
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
        chat_body: string;
      };
      assert.equal(got.chat_id, ack.chat_id);
      assert.equal(got.chat_body, got.chat_message, "one text for both vocabularies");
      return got.chat_message;
    }

    await t.step(
      "script elements are removed with their content, other tags stripped",
      async () => {
        assert.equal(await sent('Hi <script>alert("x")</script>there'), "Hi there");
        assert.equal(await sent("<b>bold</b> and <i>italic</i>"), "bold and italic");
        assert.equal(await sent('<img src=x onerror="alert(1)">picture'), "picture");
        assert.equal(await sent('<a href="javascript:alert(1)">link</a>'), "link");
        assert.equal(await sent("<<b>b>x"), "x", "stripping cannot assemble a tag");
      },
    );

    await t.step("what the person typed is not HTML-escaped", async () => {
      assert.equal(await sent("1 < 2 & 3 > 2"), "1 < 2 & 3 > 2");
      assert.equal(await sent("Tom & Jerry"), "Tom & Jerry");
      assert.equal(await sent("&amp; typed as is"), "&amp; typed as is");
      assert.equal(await sent("¿Qué tal? 漢字 😀"), "¿Qué tal? 漢字 😀");
    });

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
        // exactly MAX_MESSAGE_LENGTH (default 5000) is fine, also with & and non-Latin-1 text
        assert.equal(await sent("y".repeat(5000)), "y".repeat(5000));
        assert.equal(await sent("&漢".repeat(2500)), "&漢".repeat(2500));
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

    await t.step(
      "clientId not the conversation's customer: INVALID_DATA naming clientId",
      async () => {
        const { error } = await agent.expectError("INVALID_DATA", "sendMessage", {
          message: "wrong routing",
          chatGroupId: 456,
          clientId: 790,
        });
        const issues = (error.details as { issues: { field: string }[] }).issues;
        assert.deepEqual(issues.map((i) => i.field), ["clientId"]);
      },
    );

    await t.step("nothing refused reached anyone", async () => {
      await client.sync();
      await otherAgent.sync();
      // only the eleven accepted messages above
      assert.equal(client.count("receiveMessage"), 11);
      assert.equal(otherAgent.count("receiveMessage"), 0);
      for (const payload of client.payloads("receiveMessage")) {
        const text = (payload as { chat_message: string }).chat_message;
        assert.ok(!text.includes("wrong routing") && !text.includes("let me in"));
      }
    });
  });
});

Deno.test("sendMessage: MAX_MESSAGE_LENGTH 10000 with & and non-Latin-1 text is stored, not SERVER_ERROR", async () => {
  await withCast(async ({ agent, client }) => {
    await agent.join(456);
    await client.join(456);
    const text = "&漢".repeat(5000);
    const ack = await agent.expectOk("sendMessage", {
      message: text,
      chatGroupId: 456,
      clientId: 789,
    });
    const history = await client.expectOk("getMessages", { chatGroupId: 456 });
    const stored = (history.messages as { chat_id: number; chat_message: string }[]).at(-1);
    assert.equal(stored?.chat_id, ack.chat_id);
    assert.equal(stored?.chat_message, text);
  }, { env: { MAX_MESSAGE_LENGTH: "10000" } });
});

Deno.test("sendMessage: a retried clientMessageId is stored once and broadcast again", async (t) => {
  await withCast(async ({ agent, client, admin }) => {
    await agent.join(456);
    await client.join(456);
    const payload = {
      message: "Your refund is on its way",
      chatGroupId: 456,
      clientId: 789,
      clientMessageId: "c0ffee-1",
    };

    await t.step(
      "sequential retry: same chat_id; the members see it again and merge by id",
      async () => {
        const first = await agent.expectOk("sendMessage", payload);
        const second = await agent.expectOk("sendMessage", payload);
        assert.deepEqual(first, { ok: true, chat_id: first.chat_id, duplicate: false });
        assert.deepEqual(second, { ok: true, chat_id: first.chat_id, duplicate: true });
        await client.sync();
        const seen = client.payloads("receiveMessage") as Record<string, unknown>[];
        // a process that died between commit and broadcast is repaired by the retry
        assert.deepEqual(seen.map((m) => m.chat_id), [first.chat_id, first.chat_id]);
        // the second copy is the stored message, with its delivery state by now
        assert.equal(seen[0].chat_read_at, null);
        assert.equal(typeof seen[1].chat_read_at, "string");
        assert.deepEqual({ ...seen[1], chat_delivered_at: null, chat_read_at: null }, seen[0]);
        const history = await admin.expectOk("getMessages", { chatGroupId: 456 });
        assert.equal((history.messages as unknown[]).length, 1, "stored once");
      },
    );

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
      const history = await admin.expectOk("getMessages", { chatGroupId: 456 });
      assert.equal((history.messages as unknown[]).length, 2);
    });

    await t.step("the same id from another person is another message", async () => {
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
      const before = [agent, client, otherAgent, admin].map((c) => c.mark());
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
      const events = [
        "receiveMessage",
        "messageStatusUpdate",
        "updateChatGroups",
        "customerListUpdate",
      ];
      [agent, client, otherAgent, admin].forEach((c, i) => {
        const since = c.received.slice(before[i]).map((r) => r.event);
        for (const event of events) assert.ok(!since.includes(event), `${c.name}: ${event}`);
      });

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
      const mark = sender.mark();
      const ack = await sender.expectOk("sendMessage", {
        message: text,
        chatGroupId: 456,
        clientId: 789,
      });
      await sender.next("messageDelivered", mark);
      ids.push(ack.chat_id as number);
    }
    await client.sync();
    assert.equal(client.count("receiveMessage"), 3);

    const all = await client.expectOk("getMessages", { chatGroupId: 456 });
    assert.equal(all.chatGroupId, 456);
    // the live payloads, with the delivery state as it is now: read (both were in the room)
    const live = client.payloads("receiveMessage") as Record<string, unknown>[];
    const history = all.messages as Record<string, unknown>[];
    assert.deepEqual(history.map((m) => m.chat_id), ids);
    history.forEach((m, i) => {
      assertIsoTimestamp(m.chat_delivered_at);
      assertIsoTimestamp(m.chat_read_at);
      assert.deepEqual({ ...m, chat_delivered_at: null, chat_read_at: null }, live[i]);
    });

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

    // an admin may read any conversation's history without joining it
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
    const agent = await connectAs(running, "agent:123");
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
  assert.equal(adapter.rooms.has("chat_456"), false, "room chat_456 left behind");
  assert.equal(adapter.rooms.has("456"), false, "room 456 left behind");
  assert.equal(adapter.sids.size, 0);
});

Deno.test("a customer without a profile (signed up by phone) is shown by their number", async () => {
  const running = await startApp(FIXTURE);
  const clients: (TestClient | undefined)[] = [];
  try {
    await running.app.services.store.loadFixture({
      client: [{
        client_id: 800,
        client_country_code: "+63",
        client_number: "9170000800",
        prof_id: null,
        client_is_active: true,
      }],
      chat_group: [{
        chat_group_id: 900,
        client_id: 800,
        dept_id: 1,
        sys_user_id: 123,
        status: "active",
      }],
    });
    const agent = await connectAs(running, "agent:123");
    clients.push(agent);
    const customer = await connectAs(running, "client:800");
    clients.push(customer);
    await agent.join(900);
    await customer.join(900);
    const mark = agent.mark();
    customer.socket.emit("typing", { chatGroupId: 900 });
    const typing = await agent.next("typing", mark) as { userName: string };
    assert.equal(typing.userName, "+639170000800");
    await customer.expectOk("sendMessage", { chat_body: "hello", chat_group_id: 900 });
    const message = await agent.next("receiveMessage", mark) as Record<string, unknown>;
    assert.equal(message.sender_name, "+639170000800");
    assert.deepEqual(message.sender, {
      userId: 800,
      profile: { prof_firstname: "", prof_lastname: "" },
      image: null,
    });
  } finally {
    await closeAll(running, clients);
  }
});
