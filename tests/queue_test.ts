/**
 * src/queue.ts: queued conversations go, oldest first, to the least-loaded
 * connected agent of their department who accepts chats, at most `maxActive`
 * each, ties round-robin; two processes draining at once never assign one
 * conversation twice. Every process here is a KvStore, an Availability, a
 * Membership and a QueueDrain over one KV file (one handle per process).
 */

import assert from "node:assert/strict";
import { Availability, type AvailabilityStatus } from "../src/availability.ts";
import { setLogSink } from "../src/log.ts";
import { Membership } from "../src/membership.ts";
import { type Assignment, QueueDrain } from "../src/queue.ts";
import { KvStore } from "../src/store/kv_store.ts";
import type { Agent, ChatGroup, Fixture, FixtureChatGroup, QueuedChat } from "../src/store/mod.ts";

interface Process {
  store: KvStore;
  availability: Availability;
  members: Membership;
  drain: QueueDrain;
  assigned: Array<{ group: ChatGroup; queued: QueuedChat }>;
}

/** `n` processes on one temporary KV file, with `fixture` loaded once. */
async function cluster(
  n: number,
  fixture: Fixture,
  options: { maxActive: number; onAssigned?: () => void },
): Promise<{ processes: Process[]; close: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "servana_queue_" });
  const path = `${dir}/shared.kv`;
  const processes: Process[] = [];
  for (let i = 0; i < n; i++) {
    const kv = await Deno.openKv(path);
    const store = new KvStore(kv);
    if (i === 0) await store.loadFixture(fixture);
    const availability = new Availability(kv);
    // a long heartbeat period: no timer fires during a test, every process stays alive
    const members = new Membership(kv, { processId: `p${i + 1}`, beatMs: 60_000 });
    await members.start();
    const assigned: Process["assigned"] = [];
    const drain = new QueueDrain({
      store,
      availability,
      members,
      kv,
      maxActive: options.maxActive,
      onAssigned: (group, queued) => {
        assigned.push({ group, queued });
        options.onAssigned?.();
      },
    });
    processes.push({ store, availability, members, drain, assigned });
  }
  return {
    processes,
    close: async () => {
      for (const p of processes) await p.members.close();
      for (const p of processes) await p.store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Agents (id → departments), one customer per conversation, and the given groups. */
function fixtureOf(agents: Record<number, number[]>, groups: FixtureChatGroup[]): Fixture {
  const clientIds = [...new Set(groups.map((g) => g.client_id))];
  return {
    department: [1, 2].map((id) => ({ dept_id: id, dept_name: `Dept ${id}` })),
    role: [{ role_id: 2, role_name: "Agent" }],
    sys_user: Object.keys(agents).map((id) => ({
      sys_user_id: Number(id),
      sys_user_email: `agent${id}@servana.example`,
      role_id: 2,
    })),
    sys_user_department: Object.entries(agents).flatMap(([id, depts]) =>
      depts.map((dept) => ({ sys_user_id: Number(id), dept_id: dept }))
    ),
    client: clientIds.map((id) => ({
      client_id: id,
      client_country_code: "+63",
      client_number: String(9_170_000_000 + id),
    })),
    chat_group: groups,
  };
}

/** A queued, unassigned conversation created `minute` minutes after 09:00. */
function queued(id: number, dept: number, minute: number): FixtureChatGroup {
  const at = new Date(Date.UTC(2026, 11, 2, 9, minute)).toISOString();
  return { chat_group_id: id, client_id: id, dept_id: dept, status: "queued", created_at: at };
}

function active(id: number, dept: number, agentId: number): FixtureChatGroup {
  return {
    chat_group_id: id,
    client_id: id,
    dept_id: dept,
    sys_user_id: agentId,
    status: "active",
  };
}

async function agentOf(p: Process, id: number): Promise<Agent> {
  const person = await p.store.getPerson({ kind: "agent", id });
  assert.ok(person?.kind === "agent", `agent ${id}`);
  return person;
}

/** An agent connected (through `p`) and accepting chats. */
async function online(p: Process, id: number, status: AvailabilityStatus = "accepting_chats") {
  const agent = await agentOf(p, id);
  await p.members.connect({ kind: "agent", id }, `socket-${id}`, { max: 5 });
  await p.availability.connected(agent, `socket-${id}`);
  if (status !== "accepting_chats") await p.availability.set(agent, status, `socket-${id}`);
  return agent;
}

function pairs(assignments: Assignment[]): Array<[number, number]> {
  return assignments.map((a) => [a.chatGroupId, a.agentId]);
}

Deno.test("QueueDrain: oldest first, to the least-loaded agent", async () => {
  const { processes: [p], close } = await cluster(
    1,
    fixtureOf({ 11: [1], 12: [1] }, [
      active(1, 1, 11),
      active(2, 1, 11),
      active(3, 1, 12),
      queued(101, 1, 30),
      queued(102, 1, 10), // the oldest
    ]),
    { maxActive: 5 },
  );
  try {
    const john = await online(p, 11);
    await online(p, 12);
    // loads: 11 → 2, 12 → 1. 102 (oldest) → 12 (now 2); then 101: a tie, the first turn → 11
    const assignments = await p.drain.drainFor(john);
    assert.deepEqual(pairs(assignments), [[102, 12], [101, 11]]);
    const group = await p.store.getChatGroup(102);
    assert.deepEqual([group?.agentId, group?.status], [12, "active"]);
    assert.deepEqual(p.assigned.map((a) => [a.group.id, a.group.agentId, a.queued.chatGroupId]), [
      [102, 12, 102],
      [101, 11, 101],
    ]);
    assert.deepEqual(await p.store.listQueued([1]), []);
  } finally {
    await close();
  }
});

Deno.test("QueueDrain: ties go round-robin in a department", async () => {
  const { processes: [p], close } = await cluster(
    1,
    fixtureOf({ 11: [1], 12: [1] }, [queued(101, 1, 1), queued(102, 1, 2), queued(103, 1, 3)]),
    { maxActive: 5 },
  );
  try {
    const john = await online(p, 11);
    await online(p, 12);
    // 101: tie (0, 0), first turn → 11; 102: 12 has fewer; 103: tie (1, 1), second turn → 12
    assert.deepEqual(pairs(await p.drain.drainFor(john)), [[101, 11], [102, 12], [103, 12]]);
  } finally {
    await close();
  }
});

Deno.test("QueueDrain: nobody holds more than maxActive; the rest stays queued", async () => {
  const { processes: [p], close } = await cluster(
    1,
    fixtureOf({ 11: [1], 12: [1] }, [
      active(1, 1, 11),
      active(2, 1, 11),
      active(3, 1, 12),
      queued(101, 1, 1),
      queued(102, 1, 2),
      queued(103, 1, 3),
    ]),
    { maxActive: 2 },
  );
  try {
    const john = await online(p, 11);
    await online(p, 12);
    assert.deepEqual(pairs(await p.drain.drainFor(john)), [[101, 12]]);
    assert.deepEqual((await p.store.listQueued([1])).map((q) => q.chatGroupId), [102, 103]);
    assert.deepEqual(
      [...(await p.store.activeLoads([11, 12])).entries()],
      [[11, 2], [12, 2]],
    );
    // draining again changes nothing
    assert.deepEqual(await p.drain.drainFor(john), []);
  } finally {
    await close();
  }
});

Deno.test("QueueDrain: only connected agents accepting chats, of the conversation's department", async (t) => {
  const { processes: [p], close } = await cluster(
    1,
    fixtureOf({ 11: [1], 12: [1], 13: [1], 14: [1], 21: [2], 22: [1, 2] }, [
      queued(101, 1, 1),
      queued(201, 2, 2),
    ]),
    { maxActive: 5 },
  );
  try {
    await t.step("an agent who does not accept chats drains nothing", async () => {
      const busy = await online(p, 12, "not_accepting_chats");
      assert.deepEqual(await p.drain.drainFor(busy), []);
      const away = await agentOf(p, 14);
      assert.deepEqual(await p.drain.drainFor(away), []);
      assert.equal((await p.store.listQueued([1])).length, 1);
    });

    await t.step("not connected, not accepting, other department: never picked", async () => {
      // 13 has an accepting entry but no live connection (its process died)
      await p.availability.connected(await agentOf(p, 13), "gone");
      // 21 accepts, but only dept 2
      await online(p, 21);
      // 22 triggers, accepts and is in both departments
      const both = await online(p, 22);
      assert.deepEqual(pairs(await p.drain.drainFor(both)), [[101, 22], [201, 21]]);
    });
  } finally {
    await close();
  }
});

Deno.test("QueueDrain: a failing assignment notice does not stop the drain", async () => {
  const { processes: [p], close } = await cluster(
    1,
    fixtureOf({ 11: [1] }, [queued(101, 1, 1), queued(102, 1, 2)]),
    {
      maxActive: 5,
      onAssigned: () => {
        throw new Error("socket.io down");
      },
    },
  );
  const lines: Record<string, unknown>[] = [];
  const previous = setLogSink({ write: (line) => lines.push(JSON.parse(line)) });
  try {
    const john = await online(p, 11);
    assert.deepEqual(pairs(await p.drain.drainFor(john)), [[101, 11], [102, 11]]);
    assert.deepEqual(lines.map((l) => [l.level, l.msg, l.chatGroupId]), [
      ["warn", "assignment notice failed", 101],
      ["warn", "assignment notice failed", 102],
    ]);
  } finally {
    setLogSink(previous);
    await close();
  }
});

Deno.test("QueueDrain: two processes draining at once never assign a conversation twice", async () => {
  const agents = { 11: [1], 12: [1], 13: [1] };
  const groups = Array.from({ length: 30 }, (_, i) => queued(101 + i, 1, i));
  const { processes: [a, b], close } = await cluster(2, fixtureOf(agents, groups), {
    maxActive: 4,
  });
  try {
    const john = await online(a, 11);
    await online(b, 12);
    const jane = await online(b, 13);
    const [fromA, fromB] = await Promise.all([a.drain.drainFor(john), b.drain.drainFor(jane)]);
    const all = [...fromA, ...fromB];
    const ids = all.map((x) => x.chatGroupId);
    assert.equal(new Set(ids).size, ids.length, `assigned twice: ${ids}`);
    // three agents, four each
    assert.equal(all.length, 12);
    const loads = await a.store.activeLoads([11, 12, 13]);
    assert.deepEqual([...loads.values()], [4, 4, 4]);
    for (const { chatGroupId, agentId } of all) {
      const group = await b.store.getChatGroup(chatGroupId);
      assert.deepEqual([group?.agentId, group?.status], [agentId, "active"]);
    }
    // the notices match the assignments, one per conversation
    const noticed = [...a.assigned, ...b.assigned].map((x) => x.group.id).sort((x, y) => x - y);
    assert.deepEqual(noticed, [...ids].sort((x, y) => x - y));
    assert.equal((await a.store.listQueued([1])).length, 18);
  } finally {
    await close();
  }
});
