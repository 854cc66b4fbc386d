import assert from "node:assert/strict";
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

Deno.test("parseFixture accepts the documented format and fills in defaults", () => {
  const fixture = parseFixture({
    departments: [{ id: 1, name: "Support" }],
    users: [
      {
        id: 123,
        authId: "agent-123",
        role: "agent",
        departments: [1],
        firstName: "John",
        lastName: "Doe",
      },
      { id: 789, authId: "client-789", role: "client" },
    ],
    chatGroups: [{ id: 456, clientId: 789 }],
  });
  assert.deepEqual(fixture.users?.[1], {
    id: 789,
    authId: "client-789",
    role: "client",
    departments: [],
    firstName: "",
    lastName: "",
  });
  assert.deepEqual(fixture.chatGroups, [
    { id: 456, clientId: 789, departmentId: null, agentId: null, status: "active" },
  ]);
  assert.deepEqual(parseFixture({}), { departments: [], users: [], chatGroups: [] });
});

Deno.test("parseFixture names the bad field", async (t) => {
  const cases: { name: string; json: unknown; path: string }[] = [
    { name: "not an object", json: [], path: "(root)" },
    {
      name: "bad role",
      json: { users: [{ id: 1, authId: "a", role: "boss" }] },
      path: "users[0].role",
    },
    {
      name: "missing authId",
      json: { users: [{ id: 1, role: "client" }] },
      path: "users[0].authId",
    },
    {
      name: "empty authId",
      json: { users: [{ id: 1, authId: "", role: "client" }] },
      path: "users[0].authId",
    },
    {
      name: "string id",
      json: { departments: [{ id: "1", name: "S" }] },
      path: "departments[0].id",
    },
    {
      name: "fractional id",
      json: { departments: [{ id: 1.5, name: "S" }] },
      path: "departments[0].id",
    },
    {
      name: "negative id",
      json: { chatGroups: [{ id: -4, clientId: 1 }] },
      path: "chatGroups[0].id",
    },
    {
      name: "bad status",
      json: { chatGroups: [{ id: 4, clientId: 1, status: "open" }] },
      path: "chatGroups[0].status",
    },
    {
      name: "bad department list",
      json: { users: [{ id: 1, authId: "a", role: "agent", departments: ["x"] }] },
      path: "users[0].departments[0]",
    },
    { name: "typo at top level", json: { chatgroups: [] }, path: "chatgroups: unknown key" },
    {
      name: "unknown key in a user",
      json: { users: [{ id: 1, authId: "a", role: "agent", dept: [1] }] },
      path: "users[0].dept: unknown key",
    },
    {
      name: "duplicate user id",
      json: {
        users: [{ id: 1, authId: "a", role: "agent" }, { id: 1, authId: "b", role: "agent" }],
      },
      path: "users[1]",
    },
    {
      name: "duplicate authId",
      json: {
        users: [{ id: 1, authId: "a", role: "agent" }, { id: 2, authId: "a", role: "agent" }],
      },
      path: "users[1]",
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
  await t.step("the error message lists the problems", () => {
    assert.throws(
      () => parseFixture({ users: [{ id: 1, authId: "a", role: "boss" }] }),
      /Invalid fixture: users\[0\]\.role: /,
    );
  });
});

Deno.test("loadFixtureFile loads demo/fixture.json into a store", async () => {
  const store = await openKvStore(":memory:");
  try {
    const path = new URL("../demo/fixture.json", import.meta.url);
    const fixture = await loadFixtureFile(store, path);
    assert.equal(fixture.users?.length, 5);
    assert.deepEqual(await store.getUserByAuthId("agent-123"), {
      id: 123,
      authId: "agent-123",
      role: "agent",
      departments: [1],
      firstName: "John",
      lastName: "Doe",
    });
    assert.deepEqual((await store.getUser(1))?.departments, [1, 2]);
    assert.equal((await store.getUser(1))?.role, "admin");
    assert.equal((await store.getUser(124))?.departments[0], 2);
    assert.deepEqual(await store.getChatGroup(458), {
      id: 458,
      clientId: 789,
      departmentId: 1,
      agentId: null,
      status: "closed",
    });
    assert.deepEqual(await store.countChatGroups(), { total: 3, active: 2 });
    await loadFixtureFile(store, path);
    assert.deepEqual(await store.countChatGroups(), { total: 3, active: 2 });
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
    await Deno.writeTextFile(bad, JSON.stringify({ users: [{ id: 1, authId: "a", role: "x" }] }));
    await assert.rejects(loadFixtureFile(store, bad), /bad\.json: users\[0\]\.role/);
    assert.equal(await store.getUser(1), null);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
