/**
 * One contract suite for every ChatStore adapter: Deno KV (`:memory:`) and
 * PostgreSQL on a Servana-shaped database (tests/support/servana_schema.sql,
 * written from ../shared/servana/schema.md, with the additive migration
 * applied) and on an empty database migrated from scratch (a fresh install).
 * PostgreSQL is a real server started by tests/support/postgres.ts (skipped,
 * with a printed reason, where the binaries are absent).
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { ServanaError } from "../src/errors.ts";
import { ID_SHARDS, KvStore, openKvStore } from "../src/store/kv_store.ts";
import { migrate } from "../src/store/migrate.ts";
import { openStore } from "../src/store/open.ts";
import type { AddMessageResult, ChatStore, Fixture, PersonRef } from "../src/store/mod.ts";
import {
  openPostgresStore,
  postgresOptions,
  PostgresStore,
  SchemaError,
} from "../src/store/postgres_store.ts";
import { postgresAvailable, startPostgres } from "./support/postgres.ts";

const JOHN_AUTH = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const ADA_AUTH = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
const JANE_AUTH = "1b2c3d4e-5f6a-4b7c-9d8e-9f0a1b2c3d4e";

const FIXTURE: Fixture = {
  department: [
    { dept_id: 1, dept_name: "Support", dept_is_active: true },
    { dept_id: 2, dept_name: "Billing" },
    { dept_id: 3, dept_name: "Closed desk", dept_is_active: false },
  ],
  role: [{ role_id: 1, role_name: "Admin" }, { role_id: 2, role_name: "Agent" }],
  profile: [
    { prof_id: 1, prof_firstname: "Ada", prof_lastname: "Admin" },
    { prof_id: 2, prof_firstname: "John", prof_lastname: "Doe" },
    { prof_id: 3, prof_firstname: "Jane", prof_lastname: "Roe" },
    { prof_id: 4, prof_firstname: "Carla", prof_lastname: "Client" },
    { prof_id: 5, prof_firstname: "Chris", prof_lastname: "Customer" },
    { prof_id: 6, prof_firstname: "Pia", prof_lastname: null },
  ],
  image: [
    {
      img_id: 1,
      prof_id: 2,
      img_location: "https://img.example/john-old.png",
      img_is_current: false,
    },
    { img_id: 2, prof_id: 2, img_location: "https://img.example/john.png", img_is_current: true },
    { img_id: 3, prof_id: 4, img_location: "https://img.example/carla.png", img_is_current: true },
  ],
  sys_user: [
    {
      sys_user_id: 1,
      sys_user_email: "ada@example.com",
      supabase_user_id: ADA_AUTH,
      role_id: 1,
      prof_id: 1,
    },
    {
      sys_user_id: 123,
      sys_user_email: "john@example.com",
      supabase_user_id: JOHN_AUTH,
      role_id: 2,
      prof_id: 2,
      sys_user_is_active: true,
    },
    {
      sys_user_id: 124,
      sys_user_email: "jane@example.com",
      supabase_user_id: JANE_AUTH,
      role_id: 2,
      prof_id: 3,
    },
  ],
  sys_user_department: [
    { sys_user_id: 1, dept_id: 2 },
    { sys_user_id: 1, dept_id: 1 },
    { sys_user_id: 123, dept_id: 1 },
    { sys_user_id: 124, dept_id: 2 },
  ],
  client: [
    { client_id: 789, client_country_code: "+63", client_number: "9171234567", prof_id: 4 },
    { client_id: 790, client_country_code: "+63", client_number: "9181234567", prof_id: 5 },
    {
      client_id: 1,
      client_country_code: "+63",
      client_number: "9191234567",
      prof_id: 6,
      client_is_active: true,
    },
  ],
  chat_group: [
    {
      chat_group_id: 456,
      client_id: 789,
      dept_id: 1,
      sys_user_id: 123,
      status: "active",
      created_at: "2026-12-01T09:00:00Z",
    },
    { chat_group_id: 457, client_id: 790, dept_id: 2, sys_user_id: 124, status: "active" },
    { chat_group_id: 458, client_id: 789, dept_id: 1, sys_user_id: null, status: "resolved" },
    {
      chat_group_id: 459,
      client_id: 1,
      dept_id: 2,
      sys_user_id: null,
      status: "queued",
      created_at: "2026-12-01T09:10:00Z",
    },
    {
      chat_group_id: 460,
      client_id: 790,
      dept_id: 2,
      sys_user_id: null,
      status: "queued",
      created_at: "2026-12-01T08:00:00Z",
    },
    { chat_group_id: 461, client_id: 790, dept_id: 1, sys_user_id: null, status: null },
  ],
};

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const CARLA: PersonRef = { kind: "client", id: 789 };
const JOHN: PersonRef = { kind: "agent", id: 123 };

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
      assert.deepEqual(await store.findAgentsByAuthId(JOHN_AUTH), []);
      assert.equal(await store.getPerson(JOHN), null);
      assert.equal(await store.getPerson(CARLA), null);
      assert.deepEqual(await store.getPeople([JOHN, CARLA]), []);
      assert.deepEqual(await store.listAgents(), []);
      assert.deepEqual(await store.listDepartments(), []);
      assert.equal(await store.getDepartment(1), null);
      assert.equal(await store.getChatGroup(456), null);
      assert.deepEqual(await store.getChatGroups([456]), []);
      assert.equal(await store.getConversation(456), null);
      assert.deepEqual(await store.countChatGroups(), { total: 0, active: 0 });
      assert.deepEqual(await store.listMessages(456), []);
      assert.deepEqual(await store.listQueued([1, 2]), []);
      assert.deepEqual(await store.activeLoads([123]), new Map([[123, 0]]));
    });
  });

  await t.step(
    "fixture: agents, customers, departments and conversations are readable",
    async () => {
      await withStore(factory, async (store) => {
        await store.loadFixture(FIXTURE);
        const john = {
          kind: "agent",
          id: 123,
          role: "agent",
          authId: JOHN_AUTH,
          email: "john@example.com",
          roleName: "Agent",
          departments: [1],
          firstName: "John",
          lastName: "Doe",
          image: "https://img.example/john.png",
          active: true,
        };
        assert.deepEqual(await store.getPerson(JOHN), john);
        assert.deepEqual(await store.findAgentsByAuthId(JOHN_AUTH), [john]);
        assert.deepEqual(
          await store.findAgentsByAuthId("00000000-0000-4000-8000-00000000dead"),
          [],
        );
        assert.deepEqual(await store.findAgentsByAuthId("agent-123"), [], "not a uuid: nobody");
        const ada = await store.getPerson({ kind: "agent", id: 1 });
        assert.equal(ada?.role, "admin", "role name containing 'admin' (any case)");
        assert.deepEqual(ada?.kind === "agent" && ada.departments, [1, 2], "sorted departments");
        assert.equal(ada?.image, null);
        assert.deepEqual(await store.getPerson(CARLA), {
          kind: "client",
          id: 789,
          role: "client",
          number: "9171234567",
          countryCode: "+63",
          firstName: "Carla",
          lastName: "Client",
          image: "https://img.example/carla.png",
          active: true,
        });
        // separate id spaces: customer 1 is not agent 1
        const pia = await store.getPerson({ kind: "client", id: 1 });
        assert.equal(pia?.kind, "client");
        assert.equal(pia?.firstName, "Pia");
        assert.equal(pia?.lastName, "", "a NULL name is an empty string");
        assert.notEqual(pia?.firstName, ada?.firstName);
        assert.equal(await store.getPerson({ kind: "client", id: 123 }), null);
        assert.equal(await store.getPerson({ kind: "agent", id: 789 }), null);
        const people = await store.getPeople([JOHN, CARLA, { kind: "client", id: 999 }]);
        assert.deepEqual(people.map((p) => `${p.kind}:${p.id}`).sort(), [
          "agent:123",
          "client:789",
        ]);
        assert.deepEqual((await store.listAgents()).map((a) => a.id).sort((a, b) => a - b), [
          1,
          123,
          124,
        ]);
        assert.deepEqual(await store.getDepartment(2), { id: 2, name: "Billing", active: true });
        assert.deepEqual(await store.getDepartment(3), {
          id: 3,
          name: "Closed desk",
          active: false,
        });
        assert.deepEqual((await store.listDepartments()).map((d) => d.id), [1, 2, 3]);
        assert.deepEqual(await store.getChatGroup(456), {
          id: 456,
          clientId: 789,
          departmentId: 1,
          agentId: 123,
          status: "active",
          createdAt: "2026-12-01T09:00:00.000Z",
        });
        assert.equal((await store.getChatGroup(458))?.status, "resolved");
        assert.equal((await store.getChatGroup(461))?.status, null);
        assert.equal(await store.getChatGroup(999), null);
        assert.deepEqual(
          (await store.getChatGroups([456, 458, 999])).map((g) => g.id).sort(),
          [456, 458],
        );
        const conversation = await store.getConversation(456);
        assert.equal(conversation?.group.id, 456);
        assert.equal(conversation?.customer?.number, "9171234567");
        assert.deepEqual(conversation?.department, { id: 1, name: "Support", active: true });
        assert.equal((await store.getConversation(461))?.department?.name, "Support");
        assert.deepEqual(await store.countChatGroups(), { total: 6, active: 2 });
      });
    },
  );

  await t.step("fixture: inactive people are read with active false", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await store.loadFixture({
        sys_user: [{ ...FIXTURE.sys_user![1], sys_user_is_active: false }],
        client: [{ ...FIXTURE.client![0], client_is_active: null }],
      });
      assert.deepEqual((await store.findAgentsByAuthId(JOHN_AUTH)).map((a) => a.active), [false]);
      assert.equal((await store.getPerson(CARLA))?.active, false, "NULL is not active");
      assert.ok(!(await store.listAgents()).some((a) => a.id === 123), "listAgents: active only");
    });
  });

  await t.step("fixture: two accounts with one login are both found", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await store.loadFixture({
        sys_user: [{ ...FIXTURE.sys_user![2], supabase_user_id: JOHN_AUTH }],
      });
      assert.deepEqual(
        (await store.findAgentsByAuthId(JOHN_AUTH)).map((a) => a.id).sort((a, b) => a - b),
        [123, 124],
      );
      assert.deepEqual(await store.findAgentsByAuthId(JANE_AUTH), []);
    });
  });

  await t.step("fixture: loading twice changes nothing; updates apply", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await store.loadFixture(FIXTURE);
      assert.deepEqual(await store.countChatGroups(), { total: 6, active: 2 });
      await store.loadFixture({
        department: [{ dept_id: 1, dept_name: "Customer Support" }],
        profile: [{ prof_id: 2, prof_firstname: "Johnny", prof_lastname: "Doe" }],
        image: [
          {
            img_id: 2,
            prof_id: 2,
            img_location: "https://img.example/john.png",
            img_is_current: false,
          },
        ],
        sys_user: [{ ...FIXTURE.sys_user![1], role_id: 1 }],
        sys_user_department: [{ sys_user_id: 123, dept_id: 2 }],
        chat_group: [{
          chat_group_id: 456,
          client_id: 789,
          dept_id: 2,
          sys_user_id: null,
          status: "resolved",
        }],
      });
      const john = await store.getPerson(JOHN);
      assert.equal(john?.firstName, "Johnny");
      assert.equal(john?.role, "admin");
      assert.equal(john?.image, null, "no current picture any more");
      assert.deepEqual(john?.kind === "agent" && john.departments, [1, 2]);
      assert.equal((await store.getDepartment(1))?.name, "Customer Support");
      assert.deepEqual(await store.getChatGroup(456), {
        id: 456,
        clientId: 789,
        departmentId: 2,
        agentId: null,
        status: "resolved",
        createdAt: (await store.getChatGroup(456))?.createdAt ?? null,
      });
      assert.deepEqual(await store.countChatGroups(), { total: 6, active: 1 });
    });
  });

  await t.step("fixture: unknown references are refused and nothing is written", async () => {
    await withStore(factory, async (store) => {
      await rejectsWithCode(
        store.loadFixture({
          profile: [{ prof_id: 9, prof_firstname: "X", prof_lastname: "Y" }],
          sys_user: [{ sys_user_id: 5, sys_user_email: "x@example.com", role_id: 42, prof_id: 9 }],
        }),
        "INVALID_DATA",
      );
      assert.equal(await store.getPerson({ kind: "agent", id: 5 }), null);
      await rejectsWithCode(
        store.loadFixture({
          department: [{ dept_id: 1, dept_name: "Support" }],
          chat_group: [{ chat_group_id: 9, client_id: 77, dept_id: 1 }],
        }),
        "INVALID_DATA",
      );
      assert.equal(await store.getChatGroup(9), null);
      assert.equal(await store.getDepartment(1), null);
      assert.deepEqual(await store.countChatGroups(), { total: 0, active: 0 });
    });
  });

  await t.step(
    "addMessage: growing ids per conversation, UTC ISO times, the sender kept",
    async () => {
      await withStore(factory, async (store) => {
        await store.loadFixture(FIXTURE);
        const first = await store.addMessage({ chatGroupId: 456, sender: CARLA, body: "Hello" });
        const second = await store.addMessage({ chatGroupId: 456, sender: JOHN, body: "Hi there" });
        const elsewhere = await store.addMessage({
          chatGroupId: 457,
          sender: { kind: "agent", id: 124 },
          body: "x",
        });
        assert.equal(first.created, true);
        assert.ok(Number.isSafeInteger(first.message.id) && first.message.id > 0);
        assert.ok(second.message.id > first.message.id);
        assert.notEqual(elsewhere.message.id, first.message.id);
        assert.match(first.message.createdAt, ISO);
        assert.ok(Math.abs(Date.parse(first.message.createdAt) - Date.now()) < 60_000);
        assert.deepEqual({ ...first.message, createdAt: "" }, {
          id: first.message.id,
          chatGroupId: 456,
          body: "Hello",
          createdAt: "",
          sender: CARLA,
          deliveredAt: null,
          readAt: null,
        });
        assert.deepEqual(await store.listMessages(456), [first.message, second.message]);
        assert.deepEqual(await store.listMessages(457), [elsewhere.message]);
      });
    },
  );

  await t.step("addMessage: text is stored exactly as given", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const text = "Tom & Jerry &amp; 5 < 6 — ünïcødé 漢字 😀 \"quoted\" 'single'";
      const { message } = await store.addMessage({ chatGroupId: 456, sender: CARLA, body: text });
      assert.equal(message.body, text);
      assert.equal((await store.listMessages(456))[0].body, text);
      const long = "&漢".repeat(5000);
      const big = await store.addMessage({ chatGroupId: 456, sender: CARLA, body: long });
      assert.equal((await store.listMessages(456)).at(-1)?.body, long);
      assert.equal(big.message.body.length, 10_000);
    });
  });

  await t.step("addMessage: unknown group or sender is refused", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      await rejectsWithCode(
        store.addMessage({ chatGroupId: 999, sender: CARLA, body: "x" }),
        "ROOM_NOT_FOUND",
      );
      await rejectsWithCode(
        store.addMessage({ chatGroupId: 456, sender: { kind: "client", id: 999 }, body: "x" }),
        "USER_NOT_FOUND",
      );
      assert.deepEqual(await store.listMessages(456), []);
    });
  });

  await t.step(
    "addMessage: a retried clientMessageId stores once, per sender kind and id",
    async () => {
      await withStore(factory, async (store) => {
        await store.loadFixture(FIXTURE);
        const input = { chatGroupId: 456, sender: CARLA, body: "Once", clientMessageId: "m-1" };
        const first = await store.addMessage(input);
        const retry = await store.addMessage({ ...input, body: "Once (retry)" });
        assert.equal(first.created, true);
        assert.equal(retry.created, false);
        assert.deepEqual(retry.message, first.message);
        // agent 123 and customer 123 would be different senders: here agent 123 reuses the id
        const other = await store.addMessage({ ...input, sender: JOHN, body: "Same id, agent" });
        assert.equal(other.created, true);
        // customer 1 and agent 1 (same number) do not share dedupe entries
        const client1 = await store.addMessage({
          chatGroupId: 459,
          sender: { kind: "client", id: 1 },
          body: "client one",
          clientMessageId: "same",
        });
        const admin1 = await store.addMessage({
          chatGroupId: 459,
          sender: { kind: "agent", id: 1 },
          body: "agent one",
          clientMessageId: "same",
        });
        assert.equal(client1.created && admin1.created, true);
        assert.notEqual(client1.message.id, admin1.message.id);
        const noId = { chatGroupId: 456, sender: CARLA, body: "a" };
        const a = await store.addMessage(noId);
        const b = await store.addMessage({ ...noId, clientMessageId: null });
        assert.equal(a.created && b.created, true, "messages without clientMessageId never dedupe");
        assert.deepEqual((await store.listMessages(456)).map((m) => m.body), [
          "Once",
          "Same id, agent",
          "a",
          "a",
        ]);
      });
    },
  );

  await t.step("addMessage: concurrent retries with one clientMessageId store once", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const input = { chatGroupId: 456, sender: CARLA, body: "race", clientMessageId: "race-1" };
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
            chatGroupId: 456 + (i % 2),
            sender: { kind: "client", id: i % 2 ? 790 : 789 },
            body: `m${i}`,
          })),
      );
      assert.equal(new Set(results.map((r) => r.message.id)).size, 20);
      assert.equal((await store.listMessages(456)).length, 10);
      assert.equal((await store.listMessages(457)).length, 10);
    });
  });

  await t.step("markDelivered: delivery, and read when the other side was there", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const a = (await store.addMessage({ chatGroupId: 456, sender: CARLA, body: "a" })).message;
      const b = (await store.addMessage({ chatGroupId: 456, sender: CARLA, body: "b" })).message;
      const at = new Date("2026-12-02T10:00:00.123Z");
      await store.markDelivered(a, { at, read: false });
      await store.markDelivered(b, { at, read: true });
      const [ra, rb] = await store.listMessages(456);
      assert.equal(ra.deliveredAt, "2026-12-02T10:00:00.123Z");
      assert.equal(ra.readAt, null);
      assert.equal(rb.deliveredAt, "2026-12-02T10:00:00.123Z");
      assert.equal(rb.readAt, "2026-12-02T10:00:00.123Z");
    });
  });

  await t.step("markRead: the other side's delivered, unread messages, newest first", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const send = async (sender: PersonRef, body: string, delivered: boolean) => {
        const { message } = await store.addMessage({ chatGroupId: 456, sender, body });
        if (delivered) await store.markDelivered(message, { at: new Date(), read: false });
        return message.id;
      };
      const c1 = await send(CARLA, "c1", true);
      const a1 = await send(JOHN, "a1", true);
      const c2 = await send(CARLA, "c2", true);
      const c3 = await send(CARLA, "c3 (not delivered)", false);
      const at = new Date();
      // an agent joining reads the customer's messages; the newest delivered first
      assert.deepEqual(await store.markRead({ chatGroupId: 456, reader: "agent", at, limit: 1 }), [
        c2,
      ]);
      assert.deepEqual(await store.markRead({ chatGroupId: 456, reader: "agent", at, limit: 20 }), [
        c1,
      ]);
      assert.deepEqual(
        await store.markRead({ chatGroupId: 456, reader: "agent", at, limit: 20 }),
        [],
      );
      // the customer reads the agent's
      assert.deepEqual(
        await store.markRead({ chatGroupId: 456, reader: "client", at, limit: 20 }),
        [a1],
      );
      const byId = new Map((await store.listMessages(456)).map((m) => [m.id, m]));
      assert.equal(byId.get(c3)?.readAt, null, "undelivered messages stay unread");
      assert.equal(byId.get(c1)?.readAt !== null, true);
      // `since` leaves older messages alone
      const old = await send(CARLA, "old", true);
      assert.deepEqual(
        await store.markRead({
          chatGroupId: 456,
          reader: "agent",
          at,
          limit: 20,
          since: new Date(Date.now() + 60_000),
        }),
        [],
      );
      assert.deepEqual(await store.markRead({ chatGroupId: 456, reader: "agent", at, limit: 20 }), [
        old,
      ]);
    });
  });

  await t.step("queue: queued, unassigned conversations of departments, oldest first", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      assert.deepEqual(
        (await store.listQueued([2])).map((q) => [q.chatGroupId, q.departmentId, q.clientId]),
        [[460, 2, 790], [459, 2, 1]],
      );
      assert.deepEqual(await store.listQueued([1]), [], "458 is resolved, 461 has no status");
      assert.deepEqual(
        await store.activeLoads([123, 124, 1]),
        new Map([[123, 1], [124, 1], [1, 0]]),
      );
    });
  });

  await t.step("assignQueued: once, only while queued, at most maxActive", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const assigned = await store.assignQueued(460, 124, { maxActive: 5 });
      assert.equal(assigned?.agentId, 124);
      assert.equal(assigned?.status, "active");
      assert.equal((await store.getChatGroup(460))?.agentId, 124);
      assert.equal(await store.assignQueued(460, 1, { maxActive: 5 }), null, "already assigned");
      assert.equal(await store.assignQueued(456, 1, { maxActive: 5 }), null, "not queued");
      assert.equal(await store.assignQueued(459, 124, { maxActive: 2 }), null, "124 holds 2");
      assert.deepEqual((await store.listQueued([2])).map((q) => q.chatGroupId), [459]);
      assert.deepEqual(await store.activeLoads([124]), new Map([[124, 2]]));
      assert.deepEqual(await store.countChatGroups(), { total: 6, active: 3 });
      const race = await Promise.all([
        store.assignQueued(459, 1, { maxActive: 5 }),
        store.assignQueued(459, 124, { maxActive: 5 }),
        store.assignQueued(459, 123, { maxActive: 5 }),
      ]);
      assert.equal(race.filter((g) => g !== null).length, 1, "one conversation, one assignment");
    });
  });

  await t.step("listMessages: ascending, newest `limit` before `before`, default 50", async () => {
    await withStore(factory, async (store) => {
      await store.loadFixture(FIXTURE);
      const ids: number[] = [];
      for (let i = 0; i < 7; i++) {
        const { message } = await store.addMessage({
          chatGroupId: 456,
          sender: i % 2 === 0 ? CARLA : JOHN,
          body: `m${i}`,
        });
        ids.push(message.id);
        await store.addMessage({
          chatGroupId: 457,
          sender: { kind: "client", id: 790 },
          body: "x",
        });
      }
      assert.deepEqual((await store.listMessages(456)).map((m) => m.id), ids);
      assert.deepEqual(
        (await store.listMessages(456, { limit: 3 })).map((m) => m.id),
        ids.slice(4),
      );
      assert.deepEqual(
        (await store.listMessages(456, { before: ids[4], limit: 2 })).map((m) => m.id),
        [ids[2], ids[3]],
      );
      assert.deepEqual(await store.listMessages(456, { before: ids[0] }), []);
      assert.deepEqual(await store.listMessages(456, { limit: 0 }), []);
      for (let i = 0; i < 50; i++) {
        await store.addMessage({ chatGroupId: 458, sender: CARLA, body: `${i}` });
      }
      await store.addMessage({ chatGroupId: 458, sender: CARLA, body: "newest" });
      const page = await store.listMessages(458);
      assert.equal(page.length, 50);
      assert.equal(page[0].body, "1");
      assert.equal(page[49].body, "newest");
    });
  });
}

Deno.test("ChatStore contract: KvStore (:memory:)", async (t) => {
  await contract(t, async () => ({ store: await openKvStore(":memory:") }));
});

/** Two KvStores over one KV file (two processes), closed and removed after `fn`. */
async function withTwoKvStores(fn: (a: KvStore, b: KvStore) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "servana_kv_" });
  const path = `${dir}/store.kv`;
  const a = new KvStore(await Deno.openKv(path));
  const b = new KvStore(await Deno.openKv(path));
  try {
    await fn(a, b);
  } finally {
    await a.close();
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("KvStore: two instances over one KV file allocate distinct ids, dedupe once", async () => {
  await withTwoKvStores(async (a, b) => {
    await a.loadFixture(FIXTURE);
    const results = await Promise.all(
      Array.from(
        { length: 30 },
        (_, i) =>
          (i % 2 === 0 ? a : b).addMessage({ chatGroupId: 456, sender: CARLA, body: `${i}` }),
      ),
    );
    assert.equal(new Set(results.map((r) => r.message.id)).size, 30);
    assert.equal((await b.listMessages(456, { limit: 100 })).length, 30);
    const retry = { chatGroupId: 456, sender: CARLA, body: "r", clientMessageId: "both" };
    const [r1, r2] = await Promise.all([a.addMessage(retry), b.addMessage(retry)]);
    assert.equal(r1.message.id, r2.message.id);
    assert.deepEqual([r1.created, r2.created].sort(), [false, true]);
  });
});

Deno.test("KvStore: the delivery update after a send keeps what another process wrote meanwhile", async () => {
  await withTwoKvStores(async (a, b) => {
    await a.loadFixture(FIXTURE);
    const { message } = await a.addMessage({ chatGroupId: 456, sender: CARLA, body: "hello" });
    // the other process marks it delivered and read first
    const readAt = new Date("2026-12-02T10:00:00.000Z");
    await b.markDelivered(message, { at: readAt, read: true });
    // this process's own update (nobody of the other side here) must not undo that read
    const deliveredAt = new Date("2026-12-02T10:00:01.000Z");
    await a.markDelivered(message, { at: deliveredAt, read: false });
    const [stored] = await b.listMessages(456);
    assert.equal(stored.deliveredAt, deliveredAt.toISOString());
    assert.equal(stored.readAt, readAt.toISOString());
  });
});

Deno.test("KvStore: a burst of concurrent sends to many conversations all succeed, ids per counter", async () => {
  // one global counter used to serialize every message of every conversation
  const store = await openKvStore(":memory:");
  try {
    const groups = Array.from({ length: 40 }, (_, i) => ({
      chat_group_id: 1000 + i,
      client_id: 789,
      dept_id: 1,
      status: "active",
    }));
    await store.loadFixture({ ...FIXTURE, chat_group: groups });
    const n = 1000;
    const results = await Promise.allSettled(
      Array.from(
        { length: n },
        (_, i) =>
          store.addMessage({ chatGroupId: 1000 + (i % 40), sender: CARLA, body: `burst ${i}` }),
      ),
    );
    const rejected = results.filter((r) => r.status === "rejected");
    assert.equal(rejected.length, 0, String((rejected[0] as PromiseRejectedResult)?.reason));
    const messages = results.map((r) =>
      (r as PromiseFulfilledResult<AddMessageResult>).value.message
    );
    assert.equal(new Set(messages.map((m) => m.id)).size, n);
    for (const m of messages) assert.equal(m.id % ID_SHARDS, m.chatGroupId % ID_SHARDS);
    for (const group of groups) {
      const ids = (await store.listMessages(group.chat_group_id, { limit: 200 })).map((m) => m.id);
      assert.equal(ids.length, n / 40);
      assert.deepEqual(ids, [...ids].sort((x, y) => x - y), "ascending within a conversation");
    }
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
  console.log(`store_contract_test: PostgresStore tests skipped: ${pgUnavailable}`);
}

const SERVANA_SCHEMA = await Deno.readTextFile(
  new URL("./support/servana_schema.sql", import.meta.url),
);

/** Columns of every table of the public schema: `table.column type nullable default`. */
async function columns(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ t: string }[]>`
    select table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' ||
      coalesce(column_default, '-') as t
    from information_schema.columns where table_schema = 'public'
    order by table_name, column_name`;
  return rows.map((row) => row.t);
}

Deno.test({
  name: "PostgresStore: on Servana's own schema and on an empty database",
  ignore: pgUnavailable !== null,
  async fn(t) {
    const pg = await startPostgres();
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    let counter = 0;
    async function database(servana: boolean): Promise<{ url: string; drop: () => Promise<void> }> {
      const name = `store_${++counter}`;
      await admin.unsafe(`create database ${name}`);
      const url = pg.url.replace(/\/postgres$/, `/${name}`);
      if (servana) {
        const sql = postgres(url, { max: 1, onnotice: () => {} });
        await sql.unsafe(SERVANA_SCHEMA).simple();
        await sql.end();
      }
      return {
        url,
        drop: async () => void await admin.unsafe(`drop database ${name} with (force)`),
      };
    }
    try {
      await t.step(
        "a Servana database without the migration: start-up names what is missing",
        async () => {
          const db = await database(true);
          const store = await openPostgresStore(db.url, { max: 1 });
          try {
            await assert.rejects(store.ping(), (error: unknown) => {
              assert.ok(error instanceof SchemaError);
              assert.deepEqual(error.missing, ["realtime_message_dedupe"]);
              assert.match(error.message, /realtime_message_dedupe/);
              assert.doesNotMatch(error.message, /\n/);
              return true;
            });
          } finally {
            await store.close();
            await db.drop();
          }
        },
      );

      await t.step(
        "the migration is additive: applied twice, no Servana column changes",
        async () => {
          const db = await database(true);
          const sql = postgres(db.url, { max: 1, onnotice: () => {} });
          try {
            const before = await columns(sql);
            const triggersBefore =
              await sql`select tgname, tgfoid::regproc::text as fn from pg_trigger
            where not tgisinternal order by tgname`;
            assert.deepEqual((await migrate(sql)).applied.length, 1);
            assert.deepEqual((await migrate(sql)).applied, [], "recorded: nothing applied twice");
            const after = await columns(sql);
            for (const column of before) assert.ok(after.includes(column), `kept as is: ${column}`);
            const added = after.filter((c) => !before.includes(c));
            assert.ok(added.length > 0);
            for (const column of added) {
              assert.match(
                column,
                /^(realtime_message_dedupe|servana_migrations)\./,
                `added: ${column}`,
              );
            }
            const triggersAfter =
              await sql`select tgname, tgfoid::regproc::text as fn from pg_trigger
            where not tgisinternal order by tgname`;
            assert.deepEqual(triggersAfter, triggersBefore, "Servana's own triggers kept");
          } finally {
            await sql.end();
            await db.drop();
          }
        },
      );

      await t.step(
        "an empty database: the migration creates what a fresh install needs",
        async () => {
          const db = await database(false);
          const sql = postgres(db.url, { max: 1, onnotice: () => {} });
          try {
            await migrate(sql);
            await migrate(sql);
            const store = new PostgresStore(postgres(db.url, postgresOptions(db.url, { max: 2 })));
            try {
              await store.ping();
              await store.loadFixture(FIXTURE);
              const { message } = await store.addMessage({
                chatGroupId: 456,
                sender: JOHN,
                body: "hi",
              });
              assert.equal(message.sender?.kind, "agent");
              const [group] =
                await sql`select first_response_at from chat_group where chat_group_id = 456`;
              assert.ok(group.first_response_at !== null, "the analytics trigger exists and fired");
            } finally {
              await store.close();
            }
          } finally {
            await sql.end();
            await db.drop();
          }
        },
      );

      await t.step("messages land in chat as the original backend writes them", async () => {
        const db = await database(true);
        const sql = postgres(db.url, { max: 1, onnotice: () => {} });
        const store = await openPostgresStore(db.url, { max: 2, migrate: true });
        try {
          await store.loadFixture(FIXTURE);
          const fromClient =
            (await store.addMessage({ chatGroupId: 456, sender: CARLA, body: "hello & <3" }))
              .message;
          const fromAgent =
            (await store.addMessage({ chatGroupId: 456, sender: JOHN, body: "hi" })).message;
          await store.markDelivered(fromAgent, { at: new Date(), read: true });
          const rows = await sql`
            select chat_id, chat_body, chat_group_id, sys_user_id, client_id,
              chat_created_at::text as created, (now() at time zone 'utc')::text as utc_now,
              chat_delivered_at::text as delivered, chat_read_at::text as read
            from chat order by chat_id`;
          assert.equal(rows.length, 2);
          assert.equal(rows[0].chat_body, "hello & <3");
          assert.equal(Number(rows[0].client_id), 789);
          assert.equal(rows[0].sys_user_id, null, "sys_user_id xor client_id");
          assert.equal(Number(rows[1].sys_user_id), 123);
          assert.equal(rows[1].client_id, null);
          // UTC wall-clock time in the no-time-zone column
          const created = Date.parse(rows[0].created.replace(" ", "T") + "Z");
          const utcNow = Date.parse(rows[0].utc_now.replace(" ", "T") + "Z");
          assert.ok(Math.abs(utcNow - created) < 60_000, `${rows[0].created} is UTC now`);
          assert.equal(Date.parse(fromClient.createdAt), created);
          assert.equal(rows[0].delivered, null);
          assert.ok(rows[1].delivered !== null && rows[1].read !== null);
          const [group] = await sql`select first_response_at::text as t from chat_group
            where chat_group_id = 456`;
          assert.equal(group.t, rows[1].created, "Servana's trigger: the agent's first reply");
          const [dedupe] = await sql`select count(*)::int as n from realtime_message_dedupe`;
          assert.equal(dedupe.n, 0);
          await sql`update chat_group set status = 'resolved' where chat_group_id = 456`;
          assert.equal((await store.getChatGroup(456))?.status, "resolved");
        } finally {
          await store.close();
          await sql.end();
          await db.drop();
        }
      });

      await t.step("dedupe entries older than the window are forgotten", async () => {
        const db = await database(true);
        const store = await openPostgresStore(db.url, {
          max: 2,
          migrate: true,
          dedupeWindowMs: 1000,
        });
        try {
          await store.loadFixture(FIXTURE);
          const input = { chatGroupId: 456, sender: CARLA, body: "x", clientMessageId: "w-1" };
          const first = await store.addMessage(input);
          assert.equal((await store.addMessage(input)).created, false);
          await new Promise((resolve) => setTimeout(resolve, 1100));
          const later = await store.addMessage(input);
          assert.equal(later.created, true);
          assert.notEqual(later.message.id, first.message.id);
        } finally {
          await store.close();
          await db.drop();
        }
      });

      await t.step("ping rejects while the database is away and recovers after", async () => {
        const db = await database(true);
        const store = await openPostgresStore(db.url, { max: 2, connectTimeout: 2, migrate: true });
        try {
          await store.ping();
          await pg.pause();
          await assert.rejects(store.ping());
          await pg.resume();
          await store.ping();
        } finally {
          await store.close();
          await db.drop();
        }
      });

      await t.step("openStore picks PostgreSQL with a database URL", async () => {
        const db = await database(false);
        const store = await openStore({
          databaseUrl: db.url,
          kvPath: ":memory:",
          postgres: { migrate: true, max: 1 },
        });
        try {
          assert.ok(store instanceof PostgresStore);
          await store.ping();
        } finally {
          await store.close();
          await db.drop();
        }
      });

      for (const servana of [true, false]) {
        await t.step(
          `contract on ${servana ? "a Servana-shaped" : "an empty"} database`,
          async (t) => {
            await contract(t, async () => {
              const db = await database(servana);
              const sql = postgres(db.url, { max: 1, onnotice: () => {} });
              await migrate(sql);
              await sql.end();
              return {
                store: await openPostgresStore(db.url, { max: 4 }),
                cleanup: db.drop,
              };
            });
          },
        );
      }
    } finally {
      await admin.end();
      await pg.stop();
    }
  },
});
