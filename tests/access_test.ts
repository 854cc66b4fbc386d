/**
 * src/access.ts: room names and every access rule, table-driven over the
 * demo fixture's people and groups plus the edge cases (unassigned groups,
 * groups without a department, inactive people, agents and customers that
 * share a number).
 */

import assert from "node:assert/strict";
import {
  ADMINS_ROOM,
  agentRoom,
  canAccessChatGroup,
  canSeePresenceOf,
  chatGroupOfRoom,
  chatRoom,
  chatRooms,
  claimMatches,
  CLIENTS_ROOM,
  customerRoom,
  departmentRoom,
  departmentRooms,
  isAdmin,
  isConnectionRoom,
  kindOfUserType,
  otherSidePresent,
  personRoom,
  roomsOnConnect,
  STAFF_ROOM,
} from "../src/access.ts";
import type { Agent, ChatGroup, Customer, Person, PersonRef, Role } from "../src/store/mod.ts";

function agent(
  id: number,
  role: "agent" | "admin",
  departments: number[] = [],
  active = true,
): Agent {
  return {
    kind: "agent",
    id,
    role,
    authId: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`,
    email: `agent${id}@servana.example`,
    roleName: role === "admin" ? "Admin" : "Agent",
    departments,
    firstName: "F",
    lastName: "L",
    image: null,
    active,
  };
}

function customer(id: number, active = true): Customer {
  return {
    kind: "client",
    id,
    role: "client",
    number: "9171234567",
    countryCode: "+63",
    firstName: "C",
    lastName: "",
    image: null,
    active,
  };
}

function group(
  id: number,
  clientId: number,
  departmentId: number | null,
  agentId: number | null,
  status: ChatGroup["status"] = "active",
): ChatGroup {
  return { id, clientId, departmentId, agentId, status, createdAt: null };
}

const ADMIN = agent(1, "admin", [1, 2]);
const ADMIN_NO_DEPT = agent(2, "admin");
const AGENT_123 = agent(123, "agent", [1]);
const AGENT_124 = agent(124, "agent", [2]);
const AGENT_NO_DEPT = agent(125, "agent");
const CLIENT_789 = customer(789);
const CLIENT_790 = customer(790);
/** Customer 1 shares its number with admin 1 (two id spaces). */
const CLIENT_1 = customer(1);

const G456 = group(456, 789, 1, 123); // client 789, dept 1, agent 123
const G457 = group(457, 790, 2, 124); // client 790, dept 2, agent 124
const G458 = group(458, 789, 1, null, "resolved"); // client 789, dept 1, unassigned, resolved
const G459 = group(459, 1, 2, null, "queued"); // client 1, dept 2, queued, unassigned
const G460 = group(460, 790, null, 125); // no department, assigned to agent 125
const G461 = group(461, 790, null, null, null); // no department, unassigned, NULL status
const G462 = group(462, 123, 2, null); // customer 123 (the number of agent 123), dept 2

Deno.test("room names are Servana's", async (t) => {
  await t.step("conversation: chat_<id>, with the seed's <id> as an alias", () => {
    assert.equal(chatRoom(456), "chat_456");
    assert.deepEqual(chatRooms(456), ["chat_456", "456"]);
    assert.deepEqual(chatRooms(1), ["chat_1", "1"]);
  });
  await t.step("department: department_<id>, with the seed's dept_<id> as an alias", () => {
    assert.equal(departmentRoom(1), "department_1");
    assert.deepEqual(departmentRooms(42), ["department_42", "dept_42"]);
  });
  await t.step("people: agent_<sys_user_id> and client_<client_id>", () => {
    assert.equal(agentRoom(123), "agent_123");
    assert.equal(customerRoom(789), "client_789");
    assert.equal(personRoom({ kind: "agent", id: 5 }), "agent_5");
    assert.equal(personRoom({ kind: "client", id: 5 }), "client_5");
  });
  await t.step("no two kinds of room share a name for the same id", () => {
    for (const id of [1, 2, 5, 123, 456, 789]) {
      const names = [
        ...chatRooms(id),
        ...departmentRooms(id),
        agentRoom(id),
        `user_${id}`,
        customerRoom(id),
        ADMINS_ROOM,
        STAFF_ROOM,
        CLIENTS_ROOM,
      ];
      assert.equal(new Set(names).size, names.length, `names of ${id}: ${names}`);
    }
  });
});

Deno.test("chatGroupOfRoom: the conversation of a chat_<id> room", async (t) => {
  const cases: Array<[string, number | null]> = [
    ["chat_456", 456],
    ["chat_1", 1],
    ["456", null], // the seed alias is not read back
    ["chat_0", null],
    ["chat_", null],
    ["chat_-4", null],
    ["chat_4x", null],
    ["xchat_4", null],
    ["chat_99999999999999999", null], // 17 digits
    ["chat_9999999999999999", null], // 16 digits, above MAX_SAFE_INTEGER
    ["department_1", null],
    ["client_789", null],
  ];
  for (const [room, expected] of cases) {
    await t.step(JSON.stringify(room), () => {
      assert.equal(chatGroupOfRoom(room), expected);
    });
  }
  await t.step("reads back what chatRoom writes", () => {
    for (const id of [1, 456, Number.MAX_SAFE_INTEGER]) {
      assert.equal(chatGroupOfRoom(chatRoom(id)), id);
    }
  });
});

Deno.test("roomsOnConnect: by kind and role", async (t) => {
  const cases: Array<[string, Person, string[]]> = [
    ["customer: own room and clients", CLIENT_789, ["client_789", "clients"]],
    ["customer 1 is not admin 1", CLIENT_1, ["client_1", "clients"]],
    ["agent: own rooms, staff, each department under both names", AGENT_123, [
      "agent_123",
      "user_123",
      "staff",
      "department_1",
      "dept_1",
    ]],
    ["agent without departments", AGENT_NO_DEPT, ["agent_125", "user_125", "staff"]],
    ["admin: own rooms, staff, each department, admins", ADMIN, [
      "agent_1",
      "user_1",
      "staff",
      "department_1",
      "dept_1",
      "department_2",
      "dept_2",
      "admins",
    ]],
    ["admin without departments", ADMIN_NO_DEPT, ["agent_2", "user_2", "staff", "admins"]],
  ];
  for (const [name, who, rooms] of cases) {
    await t.step(name, () => {
      assert.deepEqual(roomsOnConnect(who), rooms);
    });
  }
  await t.step("a customer never joins staff, admins, a department or an agent room", () => {
    for (const room of roomsOnConnect(CLIENT_1)) {
      assert.ok(
        room !== STAFF_ROOM && room !== ADMINS_ROOM && !/^(department|dept|agent|user)_/.test(room),
        room,
      );
    }
  });
  await t.step("an agent never joins admins or clients", () => {
    const rooms = roomsOnConnect(AGENT_123);
    assert.ok(!rooms.includes(ADMINS_ROOM));
    assert.ok(!rooms.includes(CLIENTS_ROOM));
  });
  await t.step("every room handed out on connection is a connection room", () => {
    for (const who of [CLIENT_789, AGENT_123, ADMIN, ADMIN_NO_DEPT]) {
      for (const room of roomsOnConnect(who)) assert.ok(isConnectionRoom(room), room);
    }
  });
});

Deno.test("isConnectionRoom: people, departments and roles, never conversations", async (t) => {
  const cases: Array<[string, boolean]> = [
    ["agent_1", true],
    ["user_1", true],
    ["client_789", true],
    ["department_2", true],
    ["dept_2", true],
    ["admins", true],
    ["staff", true],
    ["clients", true],
    ["chat_456", false],
    ["456", false],
    ["agent_", false],
    ["agent_x", false],
    ["admins2", false],
    ["team_1", false],
  ];
  for (const [room, expected] of cases) {
    await t.step(room, () => {
      assert.equal(isConnectionRoom(room), expected);
    });
  }
});

Deno.test("canAccessChatGroup: every rule", async (t) => {
  const cases: Array<[string, Person, ChatGroup, boolean]> = [
    // customers: only their own conversations
    ["customer: own active group", CLIENT_789, G456, true],
    ["customer: own resolved group (status is checked elsewhere)", CLIENT_789, G458, true],
    ["customer: another customer's group", CLIENT_789, G457, false],
    ["customer: another customer's group without department", CLIENT_789, G460, false],
    ["customer: own group without department, unassigned", CLIENT_790, G461, true],
    ["customer 1: own queued group", CLIENT_1, G459, true],
    ["customer 1 gains nothing from admin 1's rights", CLIENT_1, G456, false],
    ["customer 123 gains nothing from agent 123's assignment", customer(123), G456, false],
    ["customer 123: own group", customer(123), G462, true],
    // agents: assigned or their departments'
    ["agent: assigned group in own department", AGENT_123, G456, true],
    ["agent: unassigned group in own department", AGENT_123, G458, true],
    ["agent: group of another department, assigned to another agent", AGENT_123, G457, false],
    ["agent: queued group of own department", AGENT_124, G459, true],
    ["agent: queued group of another department", AGENT_123, G459, false],
    ["agent: assigned group without department", AGENT_NO_DEPT, G460, true],
    ["agent: unassigned group without department", AGENT_NO_DEPT, G461, false],
    ["agent: another agent's group without department", AGENT_123, G460, false],
    ["agent 123 gains nothing from being customer 123's number", AGENT_123, G462, false],
    ["agent whose id is a group's clientId gains nothing", agent(789, "agent"), G456, false],
    // admins: everything
    ["admin: group of own department", ADMIN, G456, true],
    ["admin: resolved unassigned group", ADMIN, G458, true],
    ["admin: group without department", ADMIN, G461, true],
    ["admin without departments: any group", ADMIN_NO_DEPT, G457, true],
    // inactive people: nothing, whatever else holds
    ["inactive customer: own group", customer(789, false), G456, false],
    ["inactive agent: assigned group", agent(123, "agent", [1], false), G456, false],
    ["inactive agent: department's group", agent(123, "agent", [1], false), G458, false],
    ["inactive admin: any group", agent(1, "admin", [1, 2], false), G456, false],
  ];
  for (const [name, who, chatGroup, expected] of cases) {
    await t.step(name, () => {
      assert.equal(canAccessChatGroup(who, chatGroup), expected);
    });
  }
});

Deno.test("canSeePresenceOf: staff see everyone, customers only agents", () => {
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
  assert.equal(isAdmin(CLIENT_1), false);
});

Deno.test("claimMatches: a payload's userId / userType must name the token's person", async (t) => {
  const cases: Array<[string, Person, { userId?: number; userType?: string }, boolean]> = [
    ["customer: own id and client", CLIENT_789, { userId: 789, userType: "client" }, true],
    ["customer: own id only", CLIENT_789, { userId: 789 }, true],
    ["customer: nothing claimed", CLIENT_789, {}, true],
    ["customer: userType only", CLIENT_789, { userType: "client" }, true],
    ["customer: another id", CLIENT_789, { userId: 790, userType: "client" }, false],
    ["customer: own id as agent", CLIENT_789, { userId: 789, userType: "agent" }, false],
    ["customer: own id as admin", CLIENT_789, { userId: 789, userType: "admin" }, false],
    ["customer 1 claiming to be admin 1", CLIENT_1, { userId: 1, userType: "admin" }, false],
    ["agent: own id and agent", AGENT_123, { userId: 123, userType: "agent" }, true],
    ["agent: own id as client", AGENT_123, { userId: 123, userType: "client" }, false],
    ["agent: own id as admin", AGENT_123, { userId: 123, userType: "admin" }, false],
    ["agent: another id", AGENT_123, { userId: 124, userType: "agent" }, false],
    ["agent: another id only", AGENT_123, { userId: 124 }, false],
    ["admin: as admin", ADMIN, { userId: 1, userType: "admin" }, true],
    ["admin: as agent", ADMIN, { userId: 1, userType: "agent" }, true],
    ["admin: as client", ADMIN, { userId: 1, userType: "client" }, false],
    ["admin: another id", ADMIN, { userId: 2, userType: "admin" }, false],
    ["agent: empty userType", AGENT_123, { userId: 123, userType: "" }, false],
    ["agent: capitalised userType", AGENT_123, { userId: 123, userType: "Agent" }, false],
    ["admin: unknown userType", ADMIN, { userId: 1, userType: "superuser" }, false],
  ];
  for (const [name, who, claimed, expected] of cases) {
    await t.step(name, () => {
      assert.equal(claimMatches(who, claimed), expected);
    });
  }
});

Deno.test("kindOfUserType: client is a customer, agent and admin are agents", () => {
  assert.equal(kindOfUserType("client"), "client");
  assert.equal(kindOfUserType("agent"), "agent");
  assert.equal(kindOfUserType("admin"), "agent");
});

Deno.test("otherSidePresent: an agent for a customer's message, the customer for an agent's", async (t) => {
  const c789: PersonRef = { kind: "client", id: 789 };
  const a123: PersonRef = { kind: "agent", id: 123 };
  const a124: PersonRef = { kind: "agent", id: 124 };
  const cases: Array<[string, PersonRef, PersonRef[], boolean]> = [
    ["nobody", c789, [], false],
    ["only the sender", c789, [c789], false],
    ["customer sends, agent present", c789, [c789, a123], true],
    ["agent sends, customer present", a123, [a123, c789], true],
    ["agent sends, only agents present", a123, [a123, a124], false],
    [
      "agent 5 sends, customer 5 present",
      { kind: "agent", id: 5 },
      [{ kind: "client", id: 5 }],
      true,
    ],
    [
      "customer 5 sends, agent 5 present",
      { kind: "client", id: 5 },
      [{ kind: "agent", id: 5 }],
      true,
    ],
  ];
  for (const [name, sender, members, expected] of cases) {
    await t.step(name, () => {
      assert.equal(otherSidePresent(sender, members), expected);
    });
  }
});
