/**
 * End to end: `typing` / `stopTyping` through the real server with
 * socket.io-client sockets (agent 123 and client 789 in room 456; admin 1
 * and agent 124 outside it). Relayed as `{ chatGroupId, userId, userType
 * (agent|client), userName (the person's real name), userImage, isTyping }`;
 * a repeat by the same person in the same conversation within a second is
 * dropped; access is read again before relaying.
 */

import assert from "node:assert/strict";
import { TRANSFER_456_TO_124 } from "./support/people.ts";
import { connectAs, type TestClient, withCast } from "./support/clients.ts";

const JOHN = {
  userId: 123,
  userType: "agent",
  userName: "John Doe",
  userImage: "https://images.example.com/profiles/john-doe.png",
};
const CARLA = {
  userId: 789,
  userType: "client",
  userName: "Carla Client",
  userImage: "https://images.example.com/profiles/carla.png",
};

/** The typing events a client received (from index `from`), with their payloads. */
function typingEvents(c: TestClient, from = 0): { event: string; payload: unknown }[] {
  return c.received.slice(from).filter((r) => r.event === "typing" || r.event === "stopTyping")
    .map((r) => ({ event: r.event, payload: r.args[0] }));
}

async function syncAll(clients: readonly TestClient[]): Promise<void> {
  for (const c of clients) await c.sync();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("typing and stopTyping: relayed to the other members only", async (t) => {
  await withCast(async ({ agent, client, otherAgent, admin }) => {
    const everyone = [agent, client, otherAgent, admin];
    await agent.join(456);
    await client.join(456);

    await t.step("agent typing / stopTyping reach the client with name and picture", async () => {
      const started = await agent.expectOk("typing", {
        chatGroupId: 456,
        userType: "agent",
        userId: 123,
      });
      assert.deepEqual(started, { ok: true, relayed: true });
      const stopped = await agent.expectOk("stopTyping", {
        chatGroupId: 456,
        userType: "agent",
        userId: 123,
      });
      assert.deepEqual(stopped, { ok: true, relayed: true });
      await syncAll(everyone);
      assert.deepEqual(typingEvents(client), [
        { event: "typing", payload: { chatGroupId: 456, ...JOHN, isTyping: true } },
        { event: "stopTyping", payload: { chatGroupId: 456, ...JOHN, isTyping: false } },
      ]);
      // not echoed to the sender, not sent to non-members (department staff included)
      assert.deepEqual(typingEvents(agent), []);
      assert.deepEqual(typingEvents(admin), []);
      assert.deepEqual(typingEvents(otherAgent), []);
    });

    await t.step(
      "client typing reaches the agent; the optional fields may be left out",
      async () => {
        const mark = agent.mark();
        await client.expectOk("typing", { chatGroupId: 456 });
        assert.deepEqual(await agent.next("typing", mark), {
          chatGroupId: 456,
          ...CARLA,
          isTyping: true,
        });
      },
    );

    await t.step("a repeat within 1 s is dropped silently", async () => {
      const agentBefore = typingEvents(agent).length;
      // the client's typing of the previous step was just relayed
      const repeat = await client.expectOk("typing", { chatGroupId: 456 });
      assert.deepEqual(repeat, { ok: true, relayed: false });
      const again = await client.expectOk("typing", {
        chatGroupId: 456,
        userType: "client",
        userId: 789,
      });
      assert.deepEqual(again, { ok: true, relayed: false });
      // the opposite kind always gets through
      const stop = await client.expectOk("stopTyping", { chatGroupId: 456 });
      assert.deepEqual(stop, { ok: true, relayed: true });
      await syncAll(everyone);
      assert.deepEqual(typingEvents(agent).slice(agentBefore), [
        { event: "stopTyping", payload: { chatGroupId: 456, ...CARLA, isTyping: false } },
      ]);
      // expectOk asserted that no error event came back
      assert.equal(client.count("error"), 0);
    });

    await t.step("the relayed name is the person's own, whatever the payload says", async () => {
      await sleep(1000); // the agent's last stopTyping leaves the throttle window
      const mark = client.mark();
      await agent.expectOk("stopTyping", { chatGroupId: 456, userName: "Someone Else" });
      assert.deepEqual(await client.next("stopTyping", mark), {
        chatGroupId: 456,
        ...JOHN,
        isTyping: false,
      });
    });

    await t.step("non-members get ACCESS_DENIED and nothing is relayed", async () => {
      const before = typingEvents(agent).length + typingEvents(client).length;
      await otherAgent.expectError("ACCESS_DENIED", "typing", {
        chatGroupId: 456,
        userType: "agent",
        userId: 124,
      });
      await otherAgent.expectError("ACCESS_DENIED", "stopTyping", { chatGroupId: 456 });
      // the admin may join, but has not
      await admin.expectError("ACCESS_DENIED", "typing", { chatGroupId: 456 });
      // agent 123 is not in room 457 (nor allowed in it)
      await agent.expectError("ACCESS_DENIED", "typing", { chatGroupId: 457 });
      await syncAll(everyone);
      assert.equal(typingEvents(agent).length + typingEvents(client).length, before);
    });

    await t.step("typing as someone else is ACCESS_DENIED", async () => {
      await agent.expectError("ACCESS_DENIED", "typing", {
        chatGroupId: 456,
        userType: "agent",
        userId: 124,
      });
      await client.expectError("ACCESS_DENIED", "stopTyping", {
        chatGroupId: 456,
        userType: "agent",
        userId: 789,
      });
    });

    await t.step("after leaveRoom the user's typing is refused", async () => {
      await client.expectOk("leaveRoom", { chatGroupId: 456 });
      await client.expectError("ACCESS_DENIED", "typing", { chatGroupId: 456 });
    });
  });
});

Deno.test("typing: the web app's one-per-keystroke burst is relayed at most once a second per person", async (t) => {
  await withCast(async ({ running, agent, client }) => {
    const phone = await connectAs(running, "agent:123");
    try {
      await agent.join(456);
      await phone.join(456);
      await client.join(456);

      await t.step("30 keystrokes from two tabs of one agent", async () => {
        const mark = client.mark();
        const started = Date.now();
        const acks = [];
        for (let i = 0; i < 30; i++) {
          const tab = i % 2 === 0 ? agent : phone;
          acks.push(await tab.expectOk("typing", { chatGroupId: 456, userType: "agent" }));
        }
        const elapsed = Date.now() - started;
        await client.sync();
        const relayed = typingEvents(client, mark);
        // the first keystroke is relayed; then at most one per second of the burst
        assert.deepEqual(acks[0], { ok: true, relayed: true });
        assert.ok(relayed.length >= 1);
        assert.ok(
          relayed.length <= 1 + Math.floor(elapsed / 1000),
          `${relayed.length} relayed in ${elapsed} ms`,
        );
        // exactly the acked ones reached the client, each the agent's own
        assert.equal(acks.filter((a) => a.relayed === true).length, relayed.length);
        for (const r of relayed) {
          assert.deepEqual(r, {
            event: "typing",
            payload: { chatGroupId: 456, ...JOHN, isTyping: true },
          });
        }
      });

      await t.step("another person in the room is not held back by that throttle", async () => {
        const ack = await client.expectOk("typing", { chatGroupId: 456 });
        assert.deepEqual(ack, { ok: true, relayed: true });
      });

      await t.step("a second later the next keystroke is relayed again", async () => {
        await sleep(1000);
        const mark = client.mark();
        const ack = await phone.expectOk("typing", { chatGroupId: 456 });
        assert.deepEqual(ack, { ok: true, relayed: true });
        assert.deepEqual(await client.next("typing", mark), {
          chatGroupId: 456,
          ...JOHN,
          isTyping: true,
        });
      });
    } finally {
      phone.close();
    }
  });
});

Deno.test("typing: customer 1 and the admin agent 1 are two people, throttled apart", async () => {
  await withCast(async ({ running, admin }) => {
    const pia = await connectAs(running, "client:1");
    try {
      // 459 is customer 1's conversation; the admin may join any
      await pia.join(459);
      await admin.join(459);
      const piaMark = pia.mark();
      const adminMark = admin.mark();
      assert.deepEqual(await admin.expectOk("typing", { chatGroupId: 459 }), {
        ok: true,
        relayed: true,
      });
      // same id, another person: not a repeat
      assert.deepEqual(await pia.expectOk("typing", { chatGroupId: 459 }), {
        ok: true,
        relayed: true,
      });
      assert.deepEqual(await pia.next("typing", piaMark), {
        chatGroupId: 459,
        userId: 1,
        userType: "agent",
        userName: "Ada Admin",
        userImage: null,
        isTyping: true,
      });
      assert.deepEqual(await admin.next("typing", adminMark), {
        chatGroupId: 459,
        userId: 1,
        userType: "client",
        userName: "Pia",
        userImage: null,
        isTyping: true,
      });
    } finally {
      pia.close();
    }
  });
});

Deno.test("typing after losing access is refused and the socket leaves the room", async (t) => {
  // the periodic access check would take the agent out on its own: far away here, so
  // that it is the typing event that finds the change
  await withCast(async ({ running, agent, client }) => {
    await agent.join(456);
    await client.join(456);

    // 456 is transferred to department 2 and agent 124 (as the REST side would)
    await running.app.services.store.loadFixture(TRANSFER_456_TO_124);

    await t.step("ACCESS_DENIED (access_revoked), nothing relayed", async () => {
      const mark = client.mark();
      const { error } = await agent.expectError("ACCESS_DENIED", "typing", { chatGroupId: 456 });
      assert.deepEqual(error.details, { reason: "access_revoked" });
      await client.sync();
      assert.deepEqual(typingEvents(client, mark), []);
      const left = client.received.slice(mark).filter((r) => r.event === "userLeft");
      assert.equal(left.length, 1);
      const notice = left[0].args[0] as Record<string, unknown>;
      assert.equal(notice.userType, "agent");
      assert.equal(notice.userId, 123);
      assert.equal(notice.chatGroupId, 456);
    });

    await t.step("the agent is out of the room: no messages reach them", async () => {
      const mark = agent.mark();
      await client.expectOk("sendMessage", {
        message: "are you there?",
        chatGroupId: 456,
        clientId: 789,
      });
      await agent.sync();
      assert.deepEqual(agent.received.slice(mark).filter((r) => r.event === "receiveMessage"), []);
      // and typing again is refused as a non-member
      const again = await agent.expectError("ACCESS_DENIED", "stopTyping", { chatGroupId: 456 });
      assert.deepEqual(again.error.details, { reason: "not_a_member" });
    });
  }, { env: { ACCESS_RECHECK_INTERVAL: "600000" } });
});

Deno.test("typing: not relayed to the typist's own other tabs", async () => {
  await withCast(async ({ running, agent, client }) => {
    const secondTab = await connectAs(running, "agent:123");
    try {
      await agent.join(456);
      await client.join(456);
      await secondTab.join(456);
      const marks = [client.mark(), secondTab.mark()];
      await agent.expectOk("typing", { chatGroupId: 456 });
      await client.next("typing", marks[0]);
      await secondTab.sync();
      assert.equal(
        secondTab.received.slice(marks[1]).filter((r) => r.event === "typing").length,
        0,
        "John's other tab does not show John typing",
      );
    } finally {
      secondTab.close();
    }
  });
});
