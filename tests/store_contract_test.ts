/**
 * One contract suite for every ChatStore adapter: Deno KV (`:memory:`) and
 * PostgreSQL (a real server started by tests/support/postgres.ts; skipped,
 * with a printed reason, where the binaries are absent).
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { ServanaError } from "../src/errors.ts";
import { KvStore, openKvStore } from "../src/store/kv_store.ts";
import { migrate } from "../src/store/migrate.ts";
import { openStore } from "../src/store/open.ts";
import type { AddMessageResult, ChatStore, Fixture, User } from "../src/store/mod.ts";
import { openPostgresStore, PostgresStore } from "../src/store/postgres_store.ts";
import { postgresAvailable, startPostgres } from "./support/postgres.ts";

const FIXTURE: Fixture = {
  departments: [{ id: 1, name: "Support" }, { id: 2, name: "Billing" }],
  users: [
    {
      id: 1,
      authId: "admin-1",
      role: "admin",
      departments: [2, 1],
      firstName: "Ada",
      lastName: "Admin",
    },
    {
      id: 123,
      authId: "agent-123",
      role: "agent",
      departments: [1],
      firstName: "John",
      lastName: "Doe",
    },
    {
      id: 124,
      authId: "agent-124",
      role: "agent",
      departments: [2],
      firstName: "Jane",
      lastName: "Roe",
    },
    {
      id: 789,
      authId: "client-789",
      role: "client",
      departments: [],
      firstName: "Carla",
      lastName: "Client",
    },
    {
      id: 790,
      authId: "client-790",
      role: "client",
      departments: [],
      firstName: "Chris",
      lastName: "Customer",
    },
  ],
  chatGroups: [
    { id: 456, clientId: 789, departmentId: 1, agentId: 123, status: "active" },
    { id: 457, clientId: 790, departmentId: 2, agentId: 124, status: "active" },
    { id: 458, clientId: 789, departmentId: 1, agentId: null, status: "closed" },
  ],
};

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Makes a fresh, empty store; `cleanup` runs after the store is closed. */
type StoreFactory = () => Promise<{ store: ChatStore; cleanup?: () => Promise<void> }>;

async function withStore(
  factory: StoreFactory,
  fn: (store: ChatStore) => Promise<void>,
): Promise<void> {
  const { store, cleanup } = await factory();
  try {
    await fn(store);
  } finally {
    await store.close();
    await cleanup?.();
  }
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ServanaError, `expected ServanaError, got ${error}`);
    assert.equal(error.code, code);
    return true;
  });
}

/** The shared contract: every step runs on a fresh store from `factory`. */
async function contract(t: Deno.TestContext, factory: StoreFactory): Promise<void> {
  await t.step("ping resolves and kind is set", async () => {
    await withStore(factory, async (store) => {
      await store.ping();
      assert.ok(store.kind === "kv" || store.kind === "postgres");
    });
  });

  await t.step("an empty store knows nobody", async () => {
    await withStore(factory, async (store) => {
      assert.equal(await store.getUser(123), null);
      assert.equal(await store.getUserByAuthId("agent-123"), null);
      assert.equal(await store.getDepartment(1), null);
      assert.equal(await store.getChatGroup(456), null);
      assert.deepEqual(await store.countChatGroups(), { total: 0, active: 0 });
      assert.deepEqual(await store.listMessages(456), []);
    });
  });

  await t.step("fixture: users, departments and chat groups are readable", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const john: User = {
        id: 123,
        authId: "agent-123",
        role: "agent",
        departments: [1],
        firstName: "John",
        lastName: "Doe",
      };
      assert.deepEqual(await store.getUser(123), john);
      assert.deepEqual(await store.getUserByAuthId("agent-123"), john);
      assert.deepEqual((await store.getUser(1))?.departments, [1, 2], "sorted departments");
      assert.deepEqual((await store.getUser(789))?.departments, []);
      assert.equal(await store.getUser(999), null);
      assert.equal(await store.getUserByAuthId("nobody"), null);
      assert.deepEqual(await store.getDepartment(2), { id: 2, name: "Billing" });
      assert.equal(await store.getDepartment(3), null);
      assert.deepEqual(await store.getChatGroup(456), {
        id: 456,
        clientId: 789,
        departmentId: 1,
        agentId: 123,
        status: "active",
      });
      assert.deepEqual(await store.getChatGroup(458), {
        id: 458,
        clientId: 789,
        departmentId: 1,
        agentId: null,
        status: "closed",
      });
      assert.equal(await store.getChatGroup(999), null);
      assert.deepEqual(await store.countChatGroups(), { total: 3, active: 2 });
    });
  });

  await t.step("fixture: loading twice changes nothing", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await store.loadFixture(FIXTURE);
      assert.deepEqual(await store.countChatGroups(), { total: 3, active: 2 });
      assert.deepEqual(await store.getUserByAuthId("client-790"), FIXTURE.users?.[4]);
    });
  });

  await t.step("fixture: updates apply, a changed authId leaves no stale index", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await store.loadFixture({
        departments: [{ id: 1, name: "Customer Support" }],
        users: [{
          id: 123,
          authId: "0b7f3c52-3f0e-4d7e-9a43-7f2a1c9e4b11",
          role: "admin",
          departments: [2],
          firstName: "Johnny",
          lastName: "Doe",
        }],
        chatGroups: [
          { id: 456, clientId: 789, departmentId: 2, agentId: null, status: "closed" },
          { id: 459, clientId: 790, departmentId: null, agentId: null, status: "active" },
        ],
      });
      assert.equal(await store.getUserByAuthId("agent-123"), null);
      const user = await store.getUserByAuthId("0b7f3c52-3f0e-4d7e-9a43-7f2a1c9e4b11");
      assert.deepEqual(user, {
        id: 123,
        authId: "0b7f3c52-3f0e-4d7e-9a43-7f2a1c9e4b11",
        role: "admin",
        departments: [2],
        firstName: "Johnny",
        lastName: "Doe",
      });
      assert.deepEqual(await store.getDepartment(1), { id: 1, name: "Customer Support" });
      assert.deepEqual(await store.getChatGroup(456), {
        id: 456,
        clientId: 789,
        departmentId: 2,
        agentId: null,
        status: "closed",
      });
      // 456 closed, 459 added active: 4 groups, active 457 and 459.
      assert.deepEqual(await store.countChatGroups(), { total: 4, active: 2 });
    });
  });

  await t.step("fixture: the old authId can be given to another user afterwards", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await store.loadFixture({ users: [{ ...FIXTURE.users![1], authId: "agent-123-new" }] });
      await store.loadFixture({ users: [{ ...FIXTURE.users![2], authId: "agent-123" }] });
      assert.equal((await store.getUserByAuthId("agent-123"))?.id, 124);
      assert.equal((await store.getUserByAuthId("agent-123-new"))?.id, 123);
    });
  });

  await t.step("fixture: an authId held by another user is refused", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await rejectsWithCode(
        store.loadFixture({ users: [{ ...FIXTURE.users![2], authId: "agent-123" }] }),
        "INVALID_DATA",
      );
      assert.equal((await store.getUserByAuthId("agent-123"))?.id, 123);
      assert.equal((await store.getUserByAuthId("agent-124"))?.id, 124);
    });
  });

  await t.step("fixture: unknown references are refused and nothing is written", async () => {
    await withStore(factory, async (store) => {
      await rejectsWithCode(
        store.loadFixture({
          users: [{
            id: 5,
            authId: "x-5",
            role: "agent",
            departments: [42],
            firstName: "",
            lastName: "",
          }],
        }),
        "INVALID_DATA",
      );
      assert.equal(await store.getUser(5), null);
      await rejectsWithCode(
        store.loadFixture({
          departments: [{ id: 1, name: "Support" }],
          chatGroups: [{ id: 9, clientId: 77, departmentId: 1, agentId: null, status: "active" }],
        }),
        "INVALID_DATA",
      );
      assert.equal(await store.getChatGroup(9), null);
      assert.equal(await store.getDepartment(1), null);
      assert.deepEqual(await store.countChatGroups(), { total: 0, active: 0 });
    });
  });

  await t.step("addMessage: increasing ids, ISO timestamps, fields kept", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const first = await store.addMessage({
        chatGroupId: 456,
        senderId: 789,
        senderType: "client",
        message: "Hello",
      });
      const second = await store.addMessage({
        chatGroupId: 457,
        senderId: 124,
        senderType: "agent",
        message: "Hi there",
        clientMessageId: "c-1",
      });
      assert.equal(first.created, true);
      assert.equal(second.created, true);
      assert.ok(Number.isInteger(first.message.id) && first.message.id > 0);
      assert.ok(second.message.id > first.message.id);
      assert.match(first.message.createdAt, ISO);
      assert.ok(Math.abs(Date.parse(first.message.createdAt) - Date.now()) < 60_000);
      assert.deepEqual({ ...first.message, createdAt: "" }, {
        id: first.message.id,
        chatGroupId: 456,
        senderId: 789,
        senderType: "client",
        message: "Hello",
        createdAt: "",
        clientMessageId: null,
      });
      assert.equal(second.message.clientMessageId, "c-1");
      assert.deepEqual(await store.listMessages(456), [first.message]);
      assert.deepEqual(await store.listMessages(457), [second.message]);
    });
  });

  await t.step("addMessage: unknown group or sender is refused", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await rejectsWithCode(
        store.addMessage({ chatGroupId: 999, senderId: 789, senderType: "client", message: "x" }),
        "ROOM_NOT_FOUND",
      );
      await rejectsWithCode(
        store.addMessage({ chatGroupId: 456, senderId: 999, senderType: "client", message: "x" }),
        "USER_NOT_FOUND",
      );
      assert.deepEqual(await store.listMessages(456), []);
    });
  });

  await t.step("addMessage: a retried clientMessageId stores once", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const input = {
        chatGroupId: 456,
        senderId: 789,
        senderType: "client" as const,
        message: "Once",
        clientMessageId: "m-1",
      };
      const first = await store.addMessage(input);
      const retry = await store.addMessage({ ...input, message: "Once (retry)" });
      assert.equal(first.created, true);
      assert.equal(retry.created, false);
      assert.deepEqual(retry.message, first.message);
      const other = await store.addMessage({
        ...input,
        senderId: 123,
        senderType: "agent",
        message: "Same client id, other sender",
      });
      assert.equal(other.created, true);
      assert.notEqual(other.message.id, first.message.id);
      const noId = { chatGroupId: 456, senderId: 789, senderType: "client" as const, message: "a" };
      const a = await store.addMessage(noId);
      const b = await store.addMessage({ ...noId, clientMessageId: null });
      assert.equal(a.created && b.created, true, "messages without clientMessageId never dedupe");
      const list = await store.listMessages(456);
      assert.deepEqual(list.map((m) => m.message), [
        "Once",
        "Same client id, other sender",
        "a",
        "a",
      ]);
    });
  });

  await t.step("addMessage: concurrent retries with one clientMessageId store once", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const input = {
        chatGroupId: 456,
        senderId: 789,
        senderType: "client" as const,
        message: "race",
        clientMessageId: "race-1",
      };
      const results = await Promise.all(Array.from({ length: 8 }, () => store.addMessage(input)));
      assert.equal(results.filter((r) => r.created).length, 1);
      assert.equal(new Set(results.map((r) => r.message.id)).size, 1);
      assert.equal((await store.listMessages(456)).length, 1);
    });
  });

  await t.step("addMessage: concurrent distinct messages get distinct ids", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.addMessage({
            chatGroupId: 457,
            senderId: 790,
            senderType: "client",
            message: `m${i}`,
          })),
      );
      assert.equal(new Set(results.map((r) => r.message.id)).size, 20);
      assert.equal((await store.listMessages(457)).length, 20);
    });
  });

  await t.step("listMessages: ascending, newest `limit` before `before`", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const ids: number[] = [];
      for (let i = 0; i < 7; i++) {
        const { message } = await store.addMessage({
          chatGroupId: 456,
          senderId: i % 2 === 0 ? 789 : 123,
          senderType: i % 2 === 0 ? "client" : "agent",
          message: `m${i}`,
        });
        ids.push(message.id);
        // A message in another group must never show up in 456's history.
        await store.addMessage({
          chatGroupId: 457,
          senderId: 790,
          senderType: "client",
          message: "x",
        });
      }
      const all = await store.listMessages(456);
      assert.deepEqual(all.map((m) => m.id), ids);
      assert.deepEqual(all.map((m) => m.message), ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
      assert.deepEqual(
        (await store.listMessages(456, { limit: 3 })).map((m) => m.id),
        ids.slice(4),
      );
      assert.deepEqual(
        (await store.listMessages(456, { before: ids[4], limit: 2 })).map((m) => m.id),
        [ids[2], ids[3]],
      );
      assert.deepEqual(
        (await store.listMessages(456, { before: ids[4] })).map((m) => m.id),
        ids.slice(0, 4),
      );
      assert.deepEqual(await store.listMessages(456, { before: ids[0] }), []);
      assert.deepEqual(await store.listMessages(456, { limit: 0 }), []);
      assert.deepEqual(await store.listMessages(458), []);
      const many = await store.listMessages(457, { limit: 100 });
      assert.equal(many.length, 7);
    });
  });

  await t.step("listMessages: default limit is 50", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      for (let i = 0; i < 55; i++) {
        await store.addMessage({
          chatGroupId: 456,
          senderId: 789,
          senderType: "client",
          message: `${i}`,
        });
      }
      const page = await store.listMessages(456);
      assert.equal(page.length, 50);
      assert.equal(page[0].message, "5");
      assert.equal(page[49].message, "54");
    });
  });
}

Deno.test("ChatStore contract: KvStore (:memory:)", async (t) => {
  await contract(t, async () => ({ store: await openKvStore(":memory:") }));
});

Deno.test("KvStore: two instances over one KV file allocate distinct ids", async () => {
  const dir = await Deno.makeTempDir({ prefix: "servana_kv_" });
  const path = `${dir}/store.kv`;
  const a = new KvStore(await Deno.openKv(path));
  const b = new KvStore(await Deno.openKv(path));
  try {
    await a.loadFixture(FIXTURE);
    const send = (store: KvStore, i: number) =>
      store.addMessage({ chatGroupId: 456, senderId: 789, senderType: "client", message: `${i}` });
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => send(i % 2 === 0 ? a : b, i)),
    );
    const ids = results.map((r) => r.message.id);
    assert.equal(new Set(ids).size, 30);
    assert.equal((await b.listMessages(456, { limit: 100 })).length, 30);
    // Both instances see the same retried message once.
    const retry = { chatGroupId: 456, senderId: 789, senderType: "client" as const, message: "r" };
    const [r1, r2] = await Promise.all([
      a.addMessage({ ...retry, clientMessageId: "both" }),
      b.addMessage({ ...retry, clientMessageId: "both" }),
    ]);
    assert.equal(r1.message.id, r2.message.id);
    assert.deepEqual([r1.created, r2.created].sort(), [false, true]);
  } finally {
    await a.close();
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("KvStore: a burst of concurrent sends on one instance all succeed, ids 1..n", async () => {
  // racing for the id counter used to make half of a 1,000-send burst fail with write conflicts
  const store = await openKvStore(":memory:");
  try {
    await store.loadFixture(FIXTURE);
    const n = 1000;
    const results = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        store.addMessage({
          chatGroupId: 456 + (i % 2),
          senderId: i % 2 === 0 ? 789 : 790,
          senderType: "client",
          message: `burst ${i}`,
        })),
    );
    const rejected = results.filter((r) => r.status === "rejected");
    assert.equal(rejected.length, 0, String((rejected[0] as PromiseRejectedResult)?.reason));
    const ids = results.map((r) =>
      (r as PromiseFulfilledResult<AddMessageResult>).value.message.id
    );
    assert.deepEqual([...ids].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1));
  } finally {
    await store.close();
  }
});

Deno.test("openStore picks KV without a database URL", async () => {
  const fromKv = await openStore({ kv: await Deno.openKv(":memory:") });
  const fromPath = await openStore({ kvPath: ":memory:" });
  try {
    assert.ok(fromKv instanceof KvStore);
    assert.ok(fromPath instanceof KvStore);
    await fromPath.ping();
  } finally {
    await fromKv.close();
    await fromPath.close();
  }
});

const pgUnavailable = postgresAvailable();
if (pgUnavailable !== null) {
  console.log(`store_contract_test: PostgresStore contract skipped: ${pgUnavailable}`);
}

Deno.test({
  name: "ChatStore contract: PostgresStore (real PostgreSQL)",
  ignore: pgUnavailable !== null,
  async fn(t) {
    const pg = await startPostgres();
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    let counter = 0;
    try {
      await t.step("openStore picks PostgreSQL with a database URL (migrate option)", async () => {
        const store = await openStore({
          databaseUrl: pg.url,
          kvPath: ":memory:",
          postgres: { migrate: true, max: 1 },
        });
        try {
          assert.ok(store instanceof PostgresStore);
          await store.ping();
          await store.loadFixture(FIXTURE);
          assert.equal((await store.getUserByAuthId("agent-123"))?.id, 123);
        } finally {
          await store.close();
        }
      });

      await t.step("ping rejects while the database is away and recovers after", async () => {
        const store = await openPostgresStore(pg.url, { max: 2, connectTimeout: 2 });
        try {
          await store.ping();
          await pg.pause();
          await assert.rejects(store.ping());
          await pg.resume();
          await store.ping();
          assert.equal((await store.getUser(123))?.authId, "agent-123");
        } finally {
          await store.close();
        }
      });

      // Each store gets its own fresh database, migrated like production.
      await contract(t, async () => {
        const name = `contract_${++counter}`;
        await admin.unsafe(`create database ${name}`);
        const url = pg.url.replace(/\/postgres$/, `/${name}`);
        const sql = postgres(url, { max: 4, onnotice: () => {} });
        await migrate(sql);
        return {
          store: new PostgresStore(sql),
          cleanup: async () => {
            await admin.unsafe(`drop database ${name}`);
          },
        };
      });
    } finally {
      await admin.end();
      await pg.stop();
    }
  },
});
