/**
 * End to end: `typing` / `stopTyping` through the real server with
 * socket.io-client sockets (agent 123 and client 789 in room 456; admin 1
 * and agent 124 outside it).
 */

import assert from "node:assert/strict";
import { type TestClient, withCast } from "./support/clients.ts";

Deno.test("typing and stopTyping: relayed to the other members only", async (t) => {
  await withCast(async ({ agent, client, otherAgent, admin }) => {
    const everyone = [agent, client, otherAgent, admin];
    await agent.join(456);
    await client.join(456);

    const syncAll = async (): Promise<void> => {
      for (const c of everyone) await c.sync();
    };
    const typingEvents = (c: TestClient): unknown[] => {
      return c.received.filter((r) => r.event === "typing" || r.event === "stopTyping")
        .map((r) => ({ event: r.event, payload: r.args[0] }));
    };

    await t.step("agent typing / stopTyping reach the client with isTyping", async () => {
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
      await syncAll();
      assert.deepEqual(typingEvents(client), [
        {
          event: "typing",
          payload: { chatGroupId: 456, userType: "agent", userId: 123, isTyping: true },
        },
        {
          event: "stopTyping",
          payload: { chatGroupId: 456, userType: "agent", userId: 123, isTyping: false },
        },
      ]);
      // not echoed to the sender, not sent to non-members (department staff included)
      assert.deepEqual(typingEvents(agent), []);
      assert.deepEqual(typingEvents(admin), []);
      assert.deepEqual(typingEvents(otherAgent), []);
    });

    await t.step(
      "client typing reaches the agent; the seed's optional fields may be left out",
      async () => {
        const mark = agent.mark();
        await client.expectOk("typing", { chatGroupId: 456 });
        assert.deepEqual(await agent.next("typing", mark), {
          chatGroupId: 456,
          userType: "client",
          userId: 789,
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
      await syncAll();
      assert.deepEqual(typingEvents(agent).slice(agentBefore), [
        {
          event: "stopTyping",
          payload: { chatGroupId: 456, userType: "client", userId: 789, isTyping: false },
        },
      ]);
      // expectOk asserted that no error event came back
      assert.equal(client.count("error"), 0);
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
      await syncAll();
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
