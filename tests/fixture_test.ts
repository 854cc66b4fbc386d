/**
 * src/store/fixture.ts: the fixture format (a small Servana database with
 * Servana's table and column names) is validated field by field, and
 * demo/fixture.json loads into a store as the people and conversations the
 * demo shows.
 */

import assert from "node:assert/strict";
import { ServanaError } from "../src/errors.ts";
import { FixtureError, loadFixtureFile, parseFixture } from "../src/store/fixture.ts";
import { openKvStore } from "../src/store/kv_store.ts";

function problemsOf(json: unknown): string[] {
  try {
    parseFixture(json);
  } catch (error) {
    assert.ok(error instanceof FixtureError, `expected FixtureError, got ${error}`);
    return error.problems;
  }
  assert.fail("parseFixture accepted an invalid fixture");
}

const UUID = "00000000-0000-4000-8000-000000000123";

Deno.test("parseFixture accepts the documented format and returns the rows as given", () => {
  const json = {
    department: [{ dept_id: 1, dept_name: "Support" }],
    role: [{ role_id: 2, role_name: "Agent" }],
    profile: [{ prof_id: 2, prof_firstname: "John", prof_lastname: "Doe" }],
    image: [{ img_id: 1, prof_id: 2, img_location: "https://x.example/j.png" }],
    sys_user: [{
      sys_user_id: 123,
      sys_user_email: "john@example.com",
      supabase_user_id: UUID,
      role_id: 2,
      prof_id: 2,
    }],
    sys_user_department: [{ sys_user_id: 123, dept_id: 1 }],
    client: [{
      client_id: 789,
      client_country_code: "+63",
      client_number: "9171234567",
      prof_id: null,
      client_is_active: true,
    }],
    chat_group: [
      { chat_group_id: 456, client_id: 789, dept_id: 1, sys_user_id: 123, status: "active" },
      { chat_group_id: 457, client_id: 789, status: null, created_at: "2026-12-01T09:00:00" },
      { chat_group_id: 458, client_id: 789, created_at: "2026-12-01T09:00:00+08:00" },
    ],
  };
  assert.deepEqual(parseFixture(structuredClone(json)), json);
  assert.deepEqual(parseFixture({}), {});
  assert.deepEqual(parseFixture({ sys_user: [] }), { sys_user: [] });
});

Deno.test("parseFixture names the bad field", async (t) => {
  const cases: { name: string; json: unknown; path: string }[] = [
    { name: "not an object", json: [], path: "(root)" },
    { name: "a table that is not a list", json: { client: {} }, path: "client" },
    {
      name: "missing sys_user_email",
      json: { sys_user: [{ sys_user_id: 1 }] },
      path: "sys_user[0].sys_user_email",
    },
    {
      name: "supabase_user_id not a uuid",
      json: { sys_user: [{ sys_user_id: 1, sys_user_email: "a@b", supabase_user_id: "agent-1" }] },
      path: "sys_user[0].supabase_user_id",
    },
    {
      name: "string id",
      json: { department: [{ dept_id: "1", dept_name: "S" }] },
      path: "department[0].dept_id",
    },
    {
      name: "fractional id",
      json: { department: [{ dept_id: 1.5, dept_name: "S" }] },
      path: "department[0].dept_id",
    },
    {
      name: "zero id",
      json: { role: [{ role_id: 0, role_name: "Agent" }] },
      path: "role[0].role_id",
    },
    {
      name: "negative id",
      json: { chat_group: [{ chat_group_id: -4, client_id: 1 }] },
      path: "chat_group[0].chat_group_id",
    },
    {
      name: "empty department name",
      json: { department: [{ dept_id: 1, dept_name: "" }] },
      path: "department[0].dept_name",
    },
    {
      name: "empty status (NULL is written null)",
      json: { chat_group: [{ chat_group_id: 4, client_id: 1, status: "" }] },
      path: "chat_group[0].status",
    },
    {
      name: "created_at not a time",
      json: { chat_group: [{ chat_group_id: 4, client_id: 1, created_at: "yesterday" }] },
      path: "chat_group[0].created_at",
    },
    {
      name: "active flag not a boolean",
      json: {
        client: [{
          client_id: 1,
          client_country_code: "+63",
          client_number: "1",
          client_is_active: "yes",
        }],
      },
      path: "client[0].client_is_active",
    },
    {
      name: "missing client_number",
      json: { client: [{ client_id: 1, client_country_code: "+63" }] },
      path: "client[0].client_number",
    },
    { name: "typo at top level", json: { chatgroup: [] }, path: "chatgroup: unknown key" },
    {
      name: "the old format's users table",
      json: { users: [{ id: 1, authId: "a", role: "agent" }] },
      path: "users: unknown key",
    },
    {
      name: "unknown column in a sys_user",
      json: { sys_user: [{ sys_user_id: 1, sys_user_email: "a@b", role: "agent" }] },
      path: "sys_user[0].role: unknown key",
    },
    {
      name: "duplicate sys_user id",
      json: {
        sys_user: [
          { sys_user_id: 1, sys_user_email: "a@b" },
          { sys_user_id: 1, sys_user_email: "c@d" },
        ],
      },
      path: "sys_user[1]: duplicate of sys_user[0] (1)",
    },
    {
      name: "duplicate client id",
      json: {
        client: [
          { client_id: 7, client_country_code: "+63", client_number: "1" },
          { client_id: 7, client_country_code: "+63", client_number: "2" },
        ],
      },
      path: "client[1]: duplicate of client[0] (7)",
    },
    {
      name: "duplicate sys_user_department pair",
      json: {
        sys_user_department: [
          { sys_user_id: 1, dept_id: 2 },
          { sys_user_id: 1, dept_id: 3 },
          { sys_user_id: 1, dept_id: 2 },
        ],
      },
      path: "sys_user_department[2]: duplicate of sys_user_department[0] (1/2)",
    },
    {
      name: "duplicate chat_group id",
      json: {
        chat_group: [{ chat_group_id: 4, client_id: 1 }, { chat_group_id: 4, client_id: 2 }],
      },
      path: "chat_group[1]: duplicate of chat_group[0] (4)",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const problems = problemsOf(c.json);
      assert.ok(
        problems.some((problem) => problem.startsWith(c.path)),
        `no problem names ${c.path}: ${JSON.stringify(problems)}`,
      );
    });
  }
  await t.step("agent 5 and customer 5 are not duplicates", () => {
    assert.doesNotThrow(() =>
      parseFixture({
        sys_user: [{ sys_user_id: 5, sys_user_email: "a@b" }],
        client: [{ client_id: 5, client_country_code: "+63", client_number: "1" }],
      })
    );
  });
  await t.step("every problem is listed, and the message lists them", () => {
    const json = { role: [{ role_id: 1, role_name: "" }], department: [{ dept_id: "x" }] };
    assert.equal(problemsOf(json).length, 3);
    assert.throws(
      () => parseFixture({ role: [{ role_id: 1, role_name: "" }] }),
      /^FixtureError: Invalid fixture: role\[0\]\.role_name: /,
    );
  });
});

Deno.test("loadFixtureFile loads demo/fixture.json into a store", async (t) => {
  const store = await openKvStore(":memory:");
  const path = new URL("../demo/fixture.json", import.meta.url);
  try {
    const fixture = await loadFixtureFile(store, path);
    assert.equal(fixture.sys_user?.length, 3);
    assert.equal(fixture.client?.length, 3);
    assert.equal(fixture.chat_group?.length, 4);

    await t.step("an agent: profile, role, departments, current picture", async () => {
      assert.deepEqual(await store.getPerson({ kind: "agent", id: 123 }), {
        kind: "agent",
        id: 123,
        role: "agent",
        authId: "00000000-0000-4000-8000-000000000123",
        email: "john@servana.example",
        roleName: "Agent",
        departments: [1],
        firstName: "John",
        lastName: "Doe",
        image: "https://images.example.com/profiles/john-doe.png",
        active: true,
      });
      assert.deepEqual(
        (await store.findAgentsByAuthId("00000000-0000-4000-8000-000000000123")).map((a) => a.id),
        [123],
      );
    });

    await t.step("the admin: role name Admin, both departments", async () => {
      const ada = await store.getPerson({ kind: "agent", id: 1 });
      assert.equal(ada?.kind, "agent");
      assert.equal(ada.role, "admin");
      assert.equal(ada.roleName, "Admin");
      assert.deepEqual(ada.departments, [1, 2]);
      assert.equal(ada.image, null);
      const jane = await store.getPerson({ kind: "agent", id: 124 });
      assert.equal(jane?.kind === "agent" && jane.role, "agent");
      assert.deepEqual(jane?.kind === "agent" && jane.departments, [2]);
    });

    await t.step("customers: number, country code, NULL last name is empty", async () => {
      assert.deepEqual(await store.getPerson({ kind: "client", id: 789 }), {
        kind: "client",
        id: 789,
        role: "client",
        number: "9171234567",
        countryCode: "+63",
        firstName: "Carla",
        lastName: "Client",
        image: "https://images.example.com/profiles/carla.png",
        active: true,
      });
      const pia = await store.getPerson({ kind: "client", id: 1 });
      assert.equal(pia?.firstName, "Pia");
      assert.equal(pia?.lastName, "");
      assert.equal(pia?.image, null);
    });

    await t.step("customer 1 and agent 1 are two people", async () => {
      assert.equal((await store.getPerson({ kind: "client", id: 1 }))?.firstName, "Pia");
      assert.equal((await store.getPerson({ kind: "agent", id: 1 }))?.firstName, "Ada");
      assert.equal(await store.getPerson({ kind: "client", id: 123 }), null);
      assert.equal(await store.getPerson({ kind: "agent", id: 789 }), null);
    });

    await t.step("departments and conversations", async () => {
      assert.deepEqual(await store.listDepartments(), [
        { id: 1, name: "Support", active: true },
        { id: 2, name: "Billing", active: true },
      ]);
      assert.deepEqual(await store.getChatGroup(456), {
        id: 456,
        clientId: 789,
        departmentId: 1,
        agentId: 123,
        status: "active",
        createdAt: "2026-12-01T09:00:00.000Z",
      });
      assert.deepEqual(await store.getChatGroup(458), {
        id: 458,
        clientId: 789,
        departmentId: 1,
        agentId: null,
        status: "resolved",
        createdAt: "2026-11-30T15:00:00.000Z",
      });
      assert.deepEqual(await store.listQueued([1, 2]), [
        { chatGroupId: 459, departmentId: 2, clientId: 1, createdAt: "2026-12-01T09:10:00.000Z" },
      ]);
      assert.deepEqual(await store.countChatGroups(), { total: 4, active: 2 });
    });

    await t.step("loading it again changes nothing", async () => {
      await loadFixtureFile(store, path);
      assert.deepEqual(await store.countChatGroups(), { total: 4, active: 2 });
      assert.deepEqual((await store.listAgents()).map((a) => a.id), [1, 123, 124]);
      assert.deepEqual(
        (await store.findAgentsByAuthId("00000000-0000-4000-8000-000000000123")).map((a) => a.id),
        [123],
      );
    });
  } finally {
    await store.close();
  }
});

Deno.test("loading a fixture: roles, pictures and active flags", async (t) => {
  const store = await openKvStore(":memory:");
  try {
    await store.loadFixture(parseFixture({
      role: [
        { role_id: 1, role_name: "Super ADMIN" },
        { role_id: 2, role_name: "Support agent" },
      ],
      profile: [{ prof_id: 1, prof_firstname: "A", prof_lastname: null }, { prof_id: 2 }],
      image: [
        { img_id: 1, prof_id: 1, img_location: "old.png", img_is_current: false },
        { img_id: 2, prof_id: 1, img_location: "a.png", img_is_current: true },
        { img_id: 3, prof_id: 1, img_location: "b.png", img_is_current: true },
        { img_id: 4, prof_id: 2, img_location: "none.png" },
      ],
      sys_user: [
        { sys_user_id: 1, sys_user_email: "a@x", role_id: 1, prof_id: 1 },
        { sys_user_id: 2, sys_user_email: "b@x", role_id: 2, prof_id: 2 },
        { sys_user_id: 3, sys_user_email: "c@x", sys_user_is_active: false },
        { sys_user_id: 4, sys_user_email: "d@x", sys_user_is_active: null },
      ],
      client: [
        { client_id: 1, client_country_code: "+63", client_number: "1" },
        { client_id: 2, client_country_code: "+63", client_number: "2", client_is_active: false },
        { client_id: 3, client_country_code: "+63", client_number: "3", client_is_active: null },
      ],
    }));
    const agent = async (id: number) => {
      const person = await store.getPerson({ kind: "agent", id });
      assert.ok(person?.kind === "agent", `agent ${id}`);
      return person;
    };
    await t.step("a role name containing admin, any case, is an admin", async () => {
      assert.equal((await agent(1)).role, "admin");
      assert.equal((await agent(1)).roleName, "Super ADMIN");
      assert.equal((await agent(2)).role, "agent");
    });
    await t.step("without a role: an agent, roleName null", async () => {
      assert.equal((await agent(3)).role, "agent");
      assert.equal((await agent(3)).roleName, null);
    });
    await t.step("the newest current picture; none when no image is current", async () => {
      assert.equal((await agent(1)).image, "b.png");
      assert.equal((await agent(2)).image, null);
    });
    await t.step("missing names are empty", async () => {
      assert.deepEqual([(await agent(1)).firstName, (await agent(1)).lastName], ["A", ""]);
      assert.deepEqual([(await agent(2)).firstName, (await agent(2)).lastName], ["", ""]);
      assert.equal((await agent(3)).authId, null);
    });
    await t.step(
      "active: absent is the column default (true), false and NULL are not",
      async () => {
        assert.equal((await agent(1)).active, true);
        assert.equal((await agent(3)).active, false);
        assert.equal((await agent(4)).active, false);
        assert.deepEqual((await store.listAgents()).map((a) => a.id), [1, 2]);
        const active = async (id: number) =>
          (await store.getPerson({ kind: "client", id }))?.active;
        assert.deepEqual([await active(1), await active(2), await active(3)], [true, false, false]);
      },
    );
  } finally {
    await store.close();
  }
});

Deno.test("loadFixtureFile names the file on bad JSON and on a bad field", async () => {
  const dir = await Deno.makeTempDir({ prefix: "servana_fixture_" });
  const store = await openKvStore(":memory:");
  try {
    const broken = `${dir}/broken.json`;
    await Deno.writeTextFile(broken, "{ not json");
    await assert.rejects(loadFixtureFile(store, broken), (error: unknown) => {
      assert.ok(error instanceof FixtureError);
      assert.match(error.message, /broken\.json: not valid JSON/);
      return true;
    });
    const bad = `${dir}/bad.json`;
    await Deno.writeTextFile(
      bad,
      JSON.stringify({
        department: [{ dept_id: 1, dept_name: "Support" }],
        sys_user: [{ sys_user_id: 1, sys_user_email: "a@b", supabase_user_id: "not-a-uuid" }],
      }),
    );
    await assert.rejects(loadFixtureFile(store, bad), (error: unknown) => {
      assert.ok(error instanceof FixtureError);
      assert.match(error.message, /bad\.json: sys_user\[0\]\.supabase_user_id/);
      assert.deepEqual(error.problems.map((p) => p.split(":")[0]), [
        "sys_user[0].supabase_user_id",
      ]);
      return true;
    });
    // nothing of a refused file is loaded, not even its valid tables
    assert.equal(await store.getPerson({ kind: "agent", id: 1 }), null);
    assert.deepEqual(await store.listDepartments(), []);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a reference to a row neither the fixture nor the store holds is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "servana_fixture_" });
  const store = await openKvStore(":memory:");
  try {
    const file = `${dir}/dangling.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        department: [{ dept_id: 1, dept_name: "Support" }],
        chat_group: [{ chat_group_id: 9, client_id: 999, dept_id: 1 }],
      }),
    );
    await assert.rejects(loadFixtureFile(store, file), (error: unknown) => {
      assert.ok(error instanceof ServanaError);
      assert.equal(error.code, "INVALID_DATA");
      assert.match(error.message, /chat_group 9 refers to unknown client 999/);
      return true;
    });
    assert.equal(await store.getChatGroup(9), null);
    assert.deepEqual(await store.listDepartments(), []);

    // a reference to a row loaded earlier is fine
    await store.loadFixture({
      client: [{ client_id: 999, client_country_code: "+63", client_number: "9" }],
    });
    await loadFixtureFile(store, file);
    assert.equal((await store.getChatGroup(9))?.clientId, 999);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
