/**
 * End to end: every error code of the contract (the seed's list plus
 * `SERVER_ERROR`) provoked at least once through the real server, as a
 * client sees it: a refused handshake's `connect_error`, or an `error`
 * event with a failed ack.
 */

import assert from "node:assert/strict";
import { ERROR_CODES } from "../src/errors.ts";
import { KvStore } from "../src/store/kv_store.ts";
import {
  closeAll,
  connectAs,
  type ErrorPayload,
  refusedConnection,
  type TestClient,
} from "./support/clients.ts";
import { FailingStore } from "./support/failing_store.ts";
import { startApp } from "./support/server.ts";

function assertErrorShape(payload: ErrorPayload, code: string): void {
  assert.equal(payload.code, code);
  assert.equal(typeof payload.message, "string");
  assert.ok(payload.message.length > 0);
  for (const key of Object.keys(payload)) {
    assert.ok(["code", "message", "details"].includes(key), `unexpected key ${key}`);
  }
}

Deno.test("every error code reaches the client through the real server", async (t) => {
  const seen = new Set<string>();
  const kv = await Deno.openKv(":memory:");
  const store = new FailingStore(new KvStore(kv));
  const running = await startApp(
    { SEED_FILE: "demo/fixture.json", RATE_LIMIT_STATUS: "1" },
    { kv, store },
  );
  const clients: (TestClient | undefined)[] = [];
  try {
    await t.step("AUTH_REQUIRED: handshake without a token, or with garbage", async () => {
      for (const token of [null, "not-a-jwt"]) {
        const err = await refusedConnection(running, token);
        assert.equal(err.message, "AUTH_REQUIRED");
        assertErrorShape(err.data as ErrorPayload, "AUTH_REQUIRED");
      }
      seen.add("AUTH_REQUIRED");
    });

    await t.step("USER_NOT_FOUND: a valid token for nobody in the store", async () => {
      const { agent, customer } = running.app.devTokens;
      assert.ok(agent && customer);
      const tokens = [
        // an agent's token whose Supabase user has no sys_user row
        await agent("00000000-0000-4000-8000-000000000999"),
        // a customer's token for a client_id that does not exist
        await customer({ clientId: 99999, clientNumber: "9990000000" }),
      ];
      for (const token of tokens) {
        const err = await refusedConnection(running, token);
        assert.equal(err.message, "USER_NOT_FOUND");
        assertErrorShape(err.data as ErrorPayload, "USER_NOT_FOUND");
      }
      seen.add("USER_NOT_FOUND");
    });

    const agent = await connectAs(running, "agent:123");
    clients.push(agent);
    const client = await connectAs(running, "client:789");
    clients.push(client);

    const provoke = async (c: TestClient, code: string, event: string, payload?: unknown) => {
      const args = payload === undefined ? [] : [payload];
      const { error } = await c.expectError(code, event, ...args);
      assertErrorShape(error, code);
      seen.add(code);
      return error;
    };

    await t.step("ACCESS_DENIED: a client asks for admin statistics", async () => {
      await provoke(client, "ACCESS_DENIED", "getRoomStats");
      assert.equal(client.count("roomStatsUpdate"), 0);
    });

    await t.step("ROOM_NOT_FOUND: joining a group that does not exist", async () => {
      await provoke(agent, "ROOM_NOT_FOUND", "joinChatGroup", { groupId: 99999 });
    });

    await t.step("ROOM_INACTIVE: joining the resolved group 458", async () => {
      await provoke(client, "ROOM_INACTIVE", "joinChatGroup", { groupId: 458 });
      assert.equal(client.count("joinedRoom"), 0);
    });

    await t.step("INVALID_DATA: a string where a number belongs", async () => {
      const error = await provoke(agent, "INVALID_DATA", "joinChatGroup", { groupId: "456" });
      assert.deepEqual(
        (error.details as { issues: { field: string }[] }).issues.map((i) => i.field),
        ["groupId"],
      );
    });

    await t.step("RATE_LIMIT_EXCEEDED: a second status update (RATE_LIMIT_STATUS=1)", async () => {
      await agent.expectOk("userOnline", { userId: 123, userType: "agent" });
      const error = await provoke(agent, "RATE_LIMIT_EXCEEDED", "userHeartbeat", {
        userId: 123,
        timestamp: Date.now(),
      });
      const retryAfterMs = (error.details as { retryAfterMs: number }).retryAfterMs;
      assert.ok(Number.isInteger(retryAfterMs) && retryAfterMs > 0 && retryAfterMs <= 60_000);
    });

    await t.step("SERVER_ERROR: the store fails to write a message", async () => {
      await agent.join(456);
      await client.join(456);
      store.failAddMessage = true;
      await provoke(agent, "SERVER_ERROR", "sendMessage", {
        message: "lost",
        chatGroupId: 456,
        clientId: 789,
      });
      store.failAddMessage = false;
      await client.sync();
      assert.equal(client.count("receiveMessage"), 0);
    });

    await t.step("the apps' sendMessage gets the same codes as messageError", async () => {
      const cases: [string, Record<string, unknown>][] = [
        ["ROOM_INACTIVE", { chat_body: "hello?", chat_group_id: 458 }],
        ["ROOM_NOT_FOUND", { chat_body: "hello?", chat_group_id: 99999 }],
        ["INVALID_DATA", { chat_body: 42, chat_group_id: 456 }],
      ];
      for (const [code, payload] of cases) {
        const from = client.mark();
        const ack = await client.request("sendMessage", payload);
        const received = client.received.slice(from);
        assert.deepEqual(
          received.filter((r) => r.event === "error"),
          [],
          `${code}: no error event`,
        );
        const failures = received.filter((r) => r.event === "messageError");
        assert.equal(failures.length, 1, `${code}: one messageError`);
        const failure = failures[0].args[0] as ErrorPayload & { error: string };
        assert.equal(failure.code, code);
        assert.equal(typeof failure.message, "string");
        // the apps read `message`, the web app `error`
        assert.equal(failure.error, failure.message);
        const { error: _error, ...payloadFields } = failure;
        assert.deepEqual(ack, { ok: false, ...payloadFields });
      }
      await agent.sync();
      assert.equal(agent.count("receiveMessage"), 0);
    });

    assert.deepEqual([...seen].sort(), [...ERROR_CODES].sort());
  } finally {
    await closeAll(running, clients);
  }
});
