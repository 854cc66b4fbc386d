/**
 * src/membership.ts: connections and conversation members shared by every
 * server process through one KV file. Each test runs two (or three)
 * `Membership` instances with distinct process ids on one KV file, each on
 * its own KV handle, with fake clocks. The heartbeat period is long (60 s),
 * so no heartbeat timer fires while a test runs: a process is "killed" by
 * moving the observer's clock past four periods, or by removing its
 * heartbeat key (what KV expiry does to a process that stopped beating).
 */

import assert from "node:assert/strict";
import { Membership } from "../src/membership.ts";
import { personKey, type PersonRef } from "../src/store/mod.ts";

const BEAT = 60_000;
const T0 = Date.UTC(2026, 11, 2, 9, 0, 0);

const AGENT_123: PersonRef = { kind: "agent", id: 123 };
const AGENT_5: PersonRef = { kind: "agent", id: 5 };
const CLIENT_5: PersonRef = { kind: "client", id: 5 };
const CLIENT_789: PersonRef = { kind: "client", id: 789 };

interface Clock {
  now: () => number;
  advance: (ms: number) => void;
}

function clock(start = T0): Clock {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

interface Node {
  members: Membership;
  kv: Deno.Kv;
  clock: Clock;
}

/** `n` processes on one temporary KV file, each with its own handle and clock, started. */
async function cluster(n: number): Promise<{ nodes: Node[]; close: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "servana_membership_" });
  const path = `${dir}/shared.kv`;
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) {
    const kv = await Deno.openKv(path);
    const c = clock();
    const members = new Membership(kv, { processId: `p${i + 1}`, beatMs: BEAT, now: c.now });
    await members.start();
    nodes.push({ members, kv, clock: c });
  }
  return {
    nodes,
    close: async () => {
      for (const node of nodes) await node.members.close();
      for (const node of nodes) node.kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function keys(kv: Deno.Kv): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of kv.list({ prefix: ["m"] })) found.push(JSON.stringify(entry.key));
  return found;
}

function sorted(people: PersonRef[]): string[] {
  return people.map(personKey).sort();
}

Deno.test("Membership: connections, first and last, the cap per person", async (t) => {
  const { nodes, close } = await cluster(2);
  const [a, b] = nodes.map((node) => node.members);
  try {
    await t.step("the first connection is first; one on another process is not", async () => {
      assert.deepEqual(await a.connect(AGENT_123, "s1", { max: 2 }), {
        accepted: true,
        first: true,
        count: 1,
      });
      assert.deepEqual(await b.connect(AGENT_123, "s2", { max: 2 }), {
        accepted: true,
        first: false,
        count: 2,
      });
      assert.equal(await a.connectionCount(AGENT_123), 2);
      assert.equal(await b.connectionCount(AGENT_123), 2);
    });

    await t.step("at the cap another connection is refused and nothing is written", async () => {
      const before = await keys(nodes[0].kv);
      assert.deepEqual(await a.connect(AGENT_123, "s3", { max: 2 }), {
        accepted: false,
        first: false,
        count: 2,
      });
      assert.deepEqual(await keys(nodes[0].kv), before);
      assert.equal(await b.connectionCount(AGENT_123), 2);
    });

    await t.step("the same socket again does not take a second slot", async () => {
      assert.deepEqual(await a.connect(AGENT_123, "s1", { max: 2 }), {
        accepted: true,
        first: false,
        count: 2,
      });
      assert.equal(await a.connectionCount(AGENT_123), 2);
    });

    await t.step("agent 5 and customer 5 have a cap each", async () => {
      assert.deepEqual(await a.connect(AGENT_5, "x", { max: 1 }), {
        accepted: true,
        first: true,
        count: 1,
      });
      assert.deepEqual(await b.connect(CLIENT_5, "y", { max: 1 }), {
        accepted: true,
        first: true,
        count: 1,
      });
      assert.equal((await a.connect(AGENT_5, "z", { max: 1 })).accepted, false);
      assert.equal(await a.connectionCount(CLIENT_5), 1);
    });

    await t.step("disconnect: last only when no connection is left, on any process", async () => {
      assert.deepEqual(await b.disconnect(AGENT_123, "s1"), { last: false });
      assert.equal(await a.connectionCount(AGENT_123), 1);
      // a slot is free again
      assert.equal((await a.connect(AGENT_123, "s3", { max: 2 })).accepted, true);
      assert.deepEqual(await a.disconnect(AGENT_123, "s2"), { last: false });
      assert.deepEqual(await a.disconnect(AGENT_123, "s3"), { last: true });
      assert.equal(await b.connectionCount(AGENT_123), 0);
      assert.deepEqual(await b.disconnect(CLIENT_5, "y"), { last: true });
      assert.equal(await a.connectionCount(AGENT_5), 1);
    });

    await t.step("coming back after the last one left is first again", async () => {
      assert.equal((await b.connect(AGENT_123, "s4", { max: 2 })).first, true);
    });
  } finally {
    await close();
  }
});

Deno.test("Membership: concurrent handshakes on two processes respect the cap", async (t) => {
  const { nodes, close } = await cluster(2);
  const [a, b] = nodes.map((node) => node.members);
  try {
    await t.step("ten at once, cap three: three accepted, one of them first", async () => {
      const results = await Promise.all(
        Array.from(
          { length: 10 },
          (_, i) => (i % 2 ? a : b).connect(CLIENT_789, `s${i}`, { max: 3 }),
        ),
      );
      assert.equal(results.filter((r) => r.accepted).length, 3);
      assert.equal(results.filter((r) => r.first).length, 1);
      assert.equal(await a.connectionCount(CLIENT_789), 3);
    });

    await t.step("closing them all at once: exactly one is last", async () => {
      const connected: string[] = [];
      for await (const entry of nodes[0].kv.list({ prefix: ["m", "conn", "client:789"] })) {
        connected.push(entry.key[3] as string);
      }
      assert.equal(connected.length, 3);
      const results = await Promise.all(
        connected.map((socketId, i) => (i % 2 ? a : b).disconnect(CLIENT_789, socketId)),
      );
      assert.equal(results.filter((r) => r.last).length, 1);
      assert.equal(await b.connectionCount(CLIENT_789), 0);
    });
  } finally {
    await close();
  }
});

Deno.test("Membership: conversation members", async (t) => {
  const { nodes, close } = await cluster(2);
  const [a, b] = nodes.map((node) => node.members);
  try {
    await t.step("join: first per person, members are the distinct people", async () => {
      assert.deepEqual(await a.join(456, AGENT_123, "a1"), {
        first: true,
        members: [AGENT_123],
      });
      const joined = await b.join(456, CLIENT_789, "c1");
      assert.equal(joined.first, true);
      assert.deepEqual(sorted(joined.members), ["agent:123", "client:789"]);
      const again = await b.join(456, AGENT_123, "a2");
      assert.equal(again.first, false);
      assert.deepEqual(sorted(again.members), ["agent:123", "client:789"]);
      assert.deepEqual(sorted(await a.members(456)), ["agent:123", "client:789"]);
    });

    await t.step("conversations are separate", async () => {
      assert.deepEqual(await a.members(457), []);
      assert.deepEqual(await a.members(45), []);
      assert.equal((await a.join(457, AGENT_123, "a1")).first, true);
      assert.deepEqual(sorted(await b.members(456)), ["agent:123", "client:789"]);
    });

    await t.step("agent 5 and customer 5 are two members", async () => {
      await a.join(458, AGENT_5, "x");
      const { first, members } = await b.join(458, CLIENT_5, "y");
      assert.equal(first, true);
      assert.deepEqual(sorted(members), ["agent:5", "client:5"]);
    });

    await t.step("leave: last when the person's last socket there left", async () => {
      assert.deepEqual(await b.leave(456, AGENT_123, "a1"), { last: false });
      assert.deepEqual(sorted(await a.members(456)), ["agent:123", "client:789"]);
      assert.deepEqual(await a.leave(456, AGENT_123, "a2"), { last: true });
      assert.deepEqual(await b.members(456), [CLIENT_789]);
      // still in 457 with the same socket
      assert.deepEqual(await b.members(457), [AGENT_123]);
      assert.deepEqual(await a.leave(456, CLIENT_789, "c1"), { last: true });
      assert.deepEqual(await a.members(456), []);
    });
  } finally {
    await close();
  }
});

Deno.test("Membership: a dead process's entries are ignored at once", async (t) => {
  const { nodes, close } = await cluster(2);
  const [a, b] = nodes.map((node) => node.members);
  try {
    await a.connect(AGENT_123, "a-1", { max: 2 });
    await b.connect(AGENT_123, "b-1", { max: 2 });
    await b.connect(CLIENT_789, "b-2", { max: 2 });
    await a.join(456, AGENT_123, "a-1");
    await b.join(456, CLIENT_789, "b-2");
    assert.equal(await a.connectionCount(AGENT_123), 2);
    assert.deepEqual(sorted(await a.members(456)), ["agent:123", "client:789"]);

    await t.step("seen from a, b's heartbeat is four periods old", async () => {
      nodes[0].clock.advance(4 * BEAT);
      assert.equal(await a.connectionCount(AGENT_123), 1);
      assert.equal(await a.connectionCount(CLIENT_789), 0);
      assert.deepEqual(await a.members(456), [AGENT_123]);
    });

    await t.step("the cap counts live connections only; the dead ones are cleared", async () => {
      assert.deepEqual(await a.connect(AGENT_123, "a-2", { max: 2 }), {
        accepted: true,
        first: false,
        count: 2,
      });
      assert.deepEqual(await a.connect(CLIENT_789, "a-3", { max: 1 }), {
        accepted: true,
        first: true,
        count: 1,
      });
      const left = await keys(nodes[0].kv);
      assert.ok(!left.includes(JSON.stringify(["m", "conn", "agent:123", "b-1"])), `${left}`);
    });

    await t.step("joining again after the old socket's process died is first", async () => {
      const { first, members } = await a.join(456, CLIENT_789, "a-3");
      assert.equal(first, true);
      assert.deepEqual(sorted(members), ["agent:123", "client:789"]);
      assert.ok(
        !(await keys(nodes[0].kv)).includes(
          JSON.stringify(["m", "member", 456, "client:789", "b-2"]),
        ),
      );
    });
  } finally {
    await close();
  }
});

Deno.test("Membership: reap removes a dead process's entries and reports who went", async (t) => {
  const { nodes, close } = await cluster(2);
  const [a, b] = nodes.map((node) => node.members);
  try {
    await a.connect(AGENT_123, "a-1", { max: 5 });
    await b.connect(AGENT_123, "b-1", { max: 5 });
    await b.connect(CLIENT_789, "b-2", { max: 5 });
    await b.connect(CLIENT_789, "b-3", { max: 5 });
    await b.join(456, CLIENT_789, "b-2");

    await t.step("a live process is not reaped", async () => {
      nodes[0].clock.advance(4 * BEAT - 1);
      assert.deepEqual(await a.reap(), []);
      assert.equal(await a.connectionCount(CLIENT_789), 2);
    });

    await t.step("a dead one is: only people with no connection left are reported", async () => {
      // four periods old now; a's answer about b is cached for a second
      nodes[0].clock.advance(1);
      assert.deepEqual(await a.reap(), []);
      nodes[0].clock.advance(999);
      assert.deepEqual(await a.reap(), [CLIENT_789]);
      // nothing of b is left but its heartbeat key, which KV expires by itself
      const left = await keys(nodes[0].kv);
      assert.deepEqual(left.filter((key) => key.includes('"p2"') || key.includes('"b-')), [
        JSON.stringify(["m", "proc", "p2"]),
      ]);
      assert.equal(await a.connectionCount(AGENT_123), 1);
      assert.deepEqual(await a.members(456), []);
    });

    await t.step("reaping again finds nothing; a process never reaps itself", async () => {
      assert.deepEqual(await a.reap(), []);
      // a's own heartbeat is as old as b's was, by a's clock
      nodes[0].clock.advance(10 * BEAT);
      assert.deepEqual(await a.reap(), []);
      assert.equal(await a.connectionCount(AGENT_123), 1);
      assert.ok((await keys(nodes[0].kv)).includes(JSON.stringify(["m", "procs", "p1"])));
    });
  } finally {
    await close();
  }
});

/** 20 customers connected through p3, customer 1000 also through p1; then p3's heartbeat expires. */
async function deadThirdProcess(nodes: Node[]): Promise<void> {
  const [a, , c] = nodes.map((node) => node.members);
  for (let i = 0; i < 20; i++) {
    await c.connect({ kind: "client", id: 1000 + i }, `c-${i}`, { max: 5 });
  }
  await a.connect({ kind: "client", id: 1000 }, "a-0", { max: 5 });
  // p3 stops beating and KV expires its heartbeat key
  await nodes[0].kv.delete(["m", "proc", "p3"]);
  // past the second for which a and b cache what they know of p3
  nodes[0].clock.advance(1000);
  nodes[1].clock.advance(1000);
}

const GONE = Array.from({ length: 19 }, (_, i) => `client:${1001 + i}`).sort();

Deno.test("Membership: a dead process is reaped by one process, the next finds nothing", async () => {
  const { nodes, close } = await cluster(3);
  const [a, b] = nodes.map((node) => node.members);
  try {
    await deadThirdProcess(nodes);
    assert.deepEqual(sorted(await b.reap()), GONE);
    assert.deepEqual(await a.reap(), []);
    assert.equal(await b.connectionCount({ kind: "client", id: 1000 }), 1);
    const left = await keys(nodes[0].kv);
    assert.deepEqual(left.filter((key) => key.includes('"p3"') || key.includes('"c-')), []);
  } finally {
    await close();
  }
});

Deno.test({
  // failed with "TypeError: database is locked" before reap() retried its commits
  name: "Membership: two processes reaping at once claim each dead process once",
  async fn() {
    const { nodes, close } = await cluster(3);
    const [a, b] = nodes.map((node) => node.members);
    try {
      await deadThirdProcess(nodes);
      const [fromA, fromB] = await Promise.all([a.reap(), b.reap()]);
      assert.ok(fromA.length === 0 || fromB.length === 0, "both reaped p3");
      assert.deepEqual(sorted([...fromA, ...fromB]), GONE);
      assert.equal(await b.connectionCount({ kind: "client", id: 1000 }), 1);
      const left = await keys(nodes[0].kv);
      assert.deepEqual(left.filter((key) => key.includes('"p3"') || key.includes('"c-')), []);
    } finally {
      await close();
    }
  },
});

Deno.test({
  // reap() used to report client 9 once per dead process
  name: "Membership: a person whose connections were on two dead processes is reported once",
  async fn() {
    const { nodes, close } = await cluster(3);
    const [a, b, c] = nodes.map((node) => node.members);
    try {
      const client9: PersonRef = { kind: "client", id: 9 };
      await b.connect(client9, "b-9", { max: 5 });
      await c.connect(client9, "c-9", { max: 5 });
      nodes[0].clock.advance(4 * BEAT);
      assert.deepEqual(await a.reap(), [client9]);
    } finally {
      await close();
    }
  },
});

Deno.test("Membership: close removes everything the process wrote", async () => {
  const { nodes, close } = await cluster(2);
  const [a, b] = nodes.map((node) => node.members);
  try {
    await a.connect(AGENT_123, "a-1", { max: 5 });
    await a.join(456, AGENT_123, "a-1");
    await b.connect(CLIENT_789, "b-1", { max: 5 });
    await a.close();
    await a.close(); // twice is harmless
    assert.equal(await b.connectionCount(AGENT_123), 0);
    assert.deepEqual(await b.members(456), []);
    const left = await keys(nodes[1].kv);
    assert.ok(left.every((key) => !key.includes('"p1"') && !key.includes('"a-1"')), `${left}`);
    assert.equal(await b.connectionCount(CLIENT_789), 1);
  } finally {
    await close();
  }
});

Deno.test("Membership: removing what was never recorded, or twice, reports no one leaving", async () => {
  const { nodes, close } = await cluster(1);
  const [a] = nodes.map((node) => node.members);
  try {
    assert.deepEqual(await a.leave(456, AGENT_123, "never-joined"), { last: false });
    await a.connect(AGENT_123, "a-1", { max: 5 });
    assert.deepEqual(await a.disconnect(AGENT_123, "a-1"), { last: true });
    assert.deepEqual(
      await a.disconnect(AGENT_123, "a-1"),
      { last: false },
      "a repeat changes nothing",
    );
  } finally {
    await close();
  }
});
