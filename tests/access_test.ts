/**
 * src/access.ts: room names and every access rule, table-driven over the
 * demo fixture's people and groups plus the edge cases (unassigned groups,
 * groups without a department, inconsistent data such as a client listed in
 * a department).
 */

import assert from "node:assert/strict";
import {
  ADMINS_ROOM,
  canAccessChatGroup,
  canAccessDepartment,
  canSeePresenceOf,
  chatRoom,
  CLIENTS_ROOM,
  deptRoom,
  isAdmin,
  roomsOnConnect,
  STAFF_ROOM,
  userRoom,
  userTypeMatches,
} from "../src/access.ts";
import type { ChatGroup, Role, User } from "../src/store/mod.ts";

function user(id: number, role: Role, departments: number[] = []): User {
  return { id, authId: `${role}-${id}`, role, departments, firstName: "F", lastName: "L" };
}

function group(
  id: number,
  clientId: number,
  departmentId: number | null,
  agentId: number | null,
  status: ChatGroup["status"] = "active",
): ChatGroup {
  return { id, clientId, departmentId, agentId, status };
}

const ADMIN = user(1, "admin", [1, 2]);
const ADMIN_NO_DEPT = user(2, "admin");
const AGENT_123 = user(123, "agent", [1]);
const AGENT_124 = user(124, "agent", [2]);
const AGENT_NO_DEPT = user(125, "agent");
const CLIENT_789 = user(789, "client");
const CLIENT_790 = user(790, "client");
/** Inconsistent data: a client listed in a department gains nothing from it. */
const CLIENT_IN_DEPT = user(791, "client", [1]);

const G456 = group(456, 789, 1, 123); // client 789, dept 1, agent 123
const G457 = group(457, 790, 2, 124); // client 790, dept 2, agent 124
const G458 = group(458, 789, 1, null, "closed"); // client 789, dept 1, unassigned, closed
const G459 = group(459, 790, null, 125); // no department, assigned to agent 125
const G460 = group(460, 790, null, null); // no department, unassigned
const G461 = group(461, 791, 2, 124); // the inconsistent client's own group, dept 2

Deno.test("room names follow the seed", async (t) => {
  await t.step("chat room is the group id as a string", () => {
    assert.equal(chatRoom(456), "456");
    assert.equal(chatRoom(1), "1");
  });
  await t.step("department room is dept_${id}", () => {
    assert.equal(deptRoom(1), "dept_1");
    assert.equal(deptRoom(42), "dept_42");
  });
  await t.step("user room is user_${id}", () => {
    assert.equal(userRoom(123), "user_123");
    assert.equal(userRoom(789), "user_789");
  });
  await t.step("internal rooms", () => {
    assert.equal(ADMINS_ROOM, "admins");
    assert.equal(STAFF_ROOM, "staff");
    assert.equal(CLIENTS_ROOM, "clients");
  });
  await t.step("the kinds never collide for the same id", () => {
    for (const id of [1, 2, 123, 456, 789]) {
      const names = new Set([chatRoom(id), deptRoom(id), userRoom(id)]);
      assert.equal(names.size, 3);
      for (const internal of [ADMINS_ROOM, STAFF_ROOM, CLIENTS_ROOM]) {
        assert.ok(!names.has(internal));
      }
    }
  });
});

Deno.test("roomsOnConnect: by role", async (t) => {
  const cases: Array<[string, User, string[]]> = [
    ["client: own user room and clients", CLIENT_789, ["user_789", "clients"]],
    ["client listed in a department: no department room", CLIENT_IN_DEPT, [
      "user_791",
      "clients",
    ]],
    ["agent: user, staff, each department", AGENT_123, ["user_123", "staff", "dept_1"]],
    ["agent without departments", AGENT_NO_DEPT, ["user_125", "staff"]],
    ["admin: user, staff, each department, admins", ADMIN, [
      "user_1",
      "staff",
      "dept_1",
      "dept_2",
      "admins",
    ]],
    ["admin without departments", ADMIN_NO_DEPT, ["user_2", "staff", "admins"]],
  ];
  for (const [name, who, rooms] of cases) {
    await t.step(name, () => {
      assert.deepEqual(roomsOnConnect(who), rooms);
    });
  }
  await t.step("a client never joins staff, admins or a department room", () => {
    for (const room of roomsOnConnect(CLIENT_IN_DEPT)) {
      assert.ok(room !== STAFF_ROOM && room !== ADMINS_ROOM && !room.startsWith("dept_"));
    }
  });
  await t.step("an agent never joins admins or clients", () => {
    const rooms = roomsOnConnect(AGENT_123);
    assert.ok(!rooms.includes(ADMINS_ROOM));
    assert.ok(!rooms.includes(CLIENTS_ROOM));
  });
});

Deno.test("canAccessChatGroup: every rule", async (t) => {
  const cases: Array<[string, User, ChatGroup, boolean]> = [
    // clients: only their own groups
    ["client: own active group", CLIENT_789, G456, true],
    ["client: own closed group (status is checked elsewhere)", CLIENT_789, G458, true],
    ["client: another client's group", CLIENT_789, G457, false],
    ["client: another client's group without department", CLIENT_789, G460, false],
    ["client: own group without department, unassigned", CLIENT_790, G460, true],
    ["client listed in dept 1: not a dept-1 group of another client", CLIENT_IN_DEPT, G456, false],
    ["client listed in dept 1: own group in dept 2", CLIENT_IN_DEPT, G461, true],
    // agents: assigned or their departments'
    ["agent: assigned group in own department", AGENT_123, G456, true],
    ["agent: unassigned group in own department", AGENT_123, G458, true],
    ["agent: group of another department, assigned to another agent", AGENT_123, G457, false],
    ["agent: assigned group of another department", AGENT_124, G461, true],
    ["agent: assigned group without department", AGENT_NO_DEPT, G459, true],
    ["agent: unassigned group without department", AGENT_NO_DEPT, G460, false],
    ["agent: another agent's group without department", AGENT_123, G459, false],
    ["agent whose id is a group's clientId gains nothing", user(789, "agent"), G456, false],
    // admins: everything
    ["admin: group of own department", ADMIN, G456, true],
    ["admin: closed unassigned group", ADMIN, G458, true],
    ["admin: group without department", ADMIN, G460, true],
    ["admin without departments: any group", ADMIN_NO_DEPT, G457, true],
  ];
  for (const [name, who, chatGroup, expected] of cases) {
    await t.step(name, () => {
      assert.equal(canAccessChatGroup(who, chatGroup), expected);
    });
  }
});

Deno.test("canAccessDepartment: admins any, agents their own, clients none", async (t) => {
  const cases: Array<[string, User, number, boolean]> = [
    ["admin: own department", ADMIN, 1, true],
    ["admin: a department not listed", ADMIN, 9, true],
    ["admin without departments", ADMIN_NO_DEPT, 1, true],
    ["agent: own department", AGENT_123, 1, true],
    ["agent: another department", AGENT_123, 2, false],
    ["agent without departments", AGENT_NO_DEPT, 1, false],
    ["client", CLIENT_789, 1, false],
    ["client listed in the department", CLIENT_IN_DEPT, 1, false],
  ];
  for (const [name, who, departmentId, expected] of cases) {
    await t.step(name, () => {
      assert.equal(canAccessDepartment(who, departmentId), expected);
    });
  }
});

Deno.test("canSeePresenceOf: staff see everyone, clients only agents", () => {
  const roles: Role[] = ["client", "agent", "admin"];
  const expected: Record<Role, Record<Role, boolean>> = {
    client: { client: false, agent: true, admin: false },
    agent: { client: true, agent: true, admin: true },
    admin: { client: true, agent: true, admin: true },
  };
  for (const viewer of roles) {
    for (const subject of roles) {
      assert.equal(
        canSeePresenceOf(viewer, subject),
        expected[viewer][subject],
        `${viewer} sees ${subject}`,
      );
    }
  }
});

Deno.test("isAdmin: only the admin role", () => {
  assert.equal(isAdmin(ADMIN), true);
  assert.equal(isAdmin(ADMIN_NO_DEPT), true);
  assert.equal(isAdmin(AGENT_123), false);
  assert.equal(isAdmin(CLIENT_789), false);
});

Deno.test("userTypeMatches: a payload's userType must fit the token's role", async (t) => {
  const cases: Array<[Role, string, boolean]> = [
    ["client", "client", true],
    ["client", "agent", false],
    ["client", "admin", false],
    ["agent", "agent", true],
    ["agent", "client", false],
    ["agent", "admin", false],
    ["admin", "admin", true],
    ["admin", "agent", true],
    ["admin", "client", false],
    ["agent", "", false],
    ["agent", "Agent", false],
    ["admin", "superuser", false],
  ];
  for (const [role, claimed, expected] of cases) {
    await t.step(`${role} claiming ${JSON.stringify(claimed)}`, () => {
      assert.equal(userTypeMatches(role, claimed), expected);
    });
  }
});
