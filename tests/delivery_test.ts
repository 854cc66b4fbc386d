/**
 * No lost messages under network drops: six members of chat group 456
 * (client 789, agent 123 and admin 1, two sockets each, over WebSocket and
 * over long-polling with upgrade) reach the server through their own
 * {@linkcode ChaosProxy}, which resets their TCP connections (RST, no close
 * frame) several times while two senders keep sending acked messages. Short
 * outages come back inside the recovery window (socket.io replays what was
 * missed); one outage per member lasts longer than the window (the member
 * joins again and backfills with `getMessages`). Afterwards every acked
 * message is with every member exactly once, recovery replayed nothing twice,
 * and each sender's messages arrived in order. The measured delivery rate is
 * printed.
 */

import assert from "node:assert/strict";
import { io as connect, type Socket } from "socket.io-client";
import { setLogSink } from "../src/log.ts";
import { ChaosProxy } from "./support/chaos_proxy.ts";
import { MemberClient } from "./support/delivery_client.ts";
import { tokenFor } from "./support/clients.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const GROUP = 456;
const WINDOW_MS = 1_500;
/** Short outages: back well inside the window. */
const SHORT_HOLDS = [0, 150, 300];
/** One long outage per member: longer than the window plus heartbeat detection. */
const LONG_HOLD = WINDOW_MS + 1_200;
const CUTS_PER_MEMBER = 4;
const CUT_SPACING_MS = 1_700;

const MEMBERS = [
  { who: "client:789", transports: ["websocket"] },
  { who: "client:789", transports: ["polling", "websocket"] },
  { who: "agent:123", transports: ["websocket"] },
  { who: "agent:123", transports: ["polling", "websocket"] },
  { who: "agent:1", transports: ["websocket"] },
  { who: "agent:1", transports: ["polling"] },
];

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function connectSender(running: RunningApp, who: string): Promise<Socket> {
  const socket = connect(running.url, {
    forceNew: true,
    reconnection: false,
    transports: ["websocket"],
    auth: { token: await tokenFor(running, who) },
  });
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  socket.once("connect", () => resolve());
  socket.once("connect_error", reject);
  await promise;
  const joined = await socket.timeout(5_000).emitWithAck("joinChatGroup", { groupId: GROUP });
  assert.equal(joined.ok, true, JSON.stringify(joined));
  return socket;
}

/** Sends until `stop` says so, one acked message at a time; returns the acked ids. */
async function sendLoop(socket: Socket, name: string, stop: () => boolean): Promise<number[]> {
  const acked: number[] = [];
  for (let i = 0; !stop(); i++) {
    const reply = await socket.timeout(5_000).emitWithAck("sendMessage", {
      message: `${name} #${i}`,
      chatGroupId: GROUP,
      clientId: 789,
      clientMessageId: `${name}-${i}`,
    });
    assert.equal(reply.ok, true, `${name} #${i}: ${JSON.stringify(reply)}`);
    assert.equal(reply.duplicate, false);
    acked.push(reply.chat_id);
    await sleep(10);
  }
  return acked;
}

/** Cuts member `index` CUTS_PER_MEMBER times; one of the outages outlasts the window. */
async function chaos(proxy: ChaosProxy, index: number): Promise<void> {
  await sleep(300 + index * 250);
  const longAt = index % CUTS_PER_MEMBER;
  for (let k = 0; k < CUTS_PER_MEMBER; k++) {
    const holdMs = k === longAt ? LONG_HOLD : SHORT_HOLDS[(index + k) % SHORT_HOLDS.length];
    proxy.cut({ holdMs });
    await sleep(holdMs + CUT_SPACING_MS);
  }
}

Deno.test("delivery: every acked message reaches every member exactly once through TCP resets", async () => {
  const logged: string[] = [];
  const previousSink = setLogSink({ write: (line) => void logged.push(line) });
  const running = await startApp({
    SEED_FILE: "demo/fixture.json",
    SOCKET_RECOVERY_WINDOW: String(WINDOW_MS),
    SOCKET_HEARTBEAT_INTERVAL: "500",
    SOCKET_HEARTBEAT_TIMEOUT: "1000",
    RATE_LIMIT_MESSAGES: "4000",
    RATE_LIMIT_WINDOW: "1000",
    ROOM_STATS_INTERVAL: "60000",
  });
  const proxies: ChaosProxy[] = [];
  const members: MemberClient[] = [];
  const senders: Socket[] = [];
  try {
    for (const [i, member] of MEMBERS.entries()) {
      const proxy = await ChaosProxy.start(running.port);
      proxies.push(proxy);
      members.push(
        new MemberClient({
          url: proxy.url,
          token: await tokenFor(running, member.who),
          chatGroupId: GROUP,
          transports: member.transports,
          name: `${member.who}/${member.transports.join("+")}#${i}`,
        }),
      );
    }
    await Promise.all(members.map((m) => m.settle()));
    senders.push(
      await connectSender(running, "client:789"),
      await connectSender(running, "agent:123"),
    );

    let stopping = false;
    const sending = Promise.all([
      sendLoop(senders[0], "client", () => stopping),
      sendLoop(senders[1], "agent", () => stopping),
    ]);
    await Promise.all(proxies.map((proxy, i) => chaos(proxy, i)));
    stopping = true;
    const acked = (await sending).flat();
    await Promise.all(members.map((m) => m.settle()));

    // what the user sees: every acked message, exactly once, at every member
    const ackedSet = new Set(acked);
    assert.equal(ackedSet.size, acked.length, "acked ids are distinct");
    let delivered = 0;
    const report = [];
    const problems: string[] = [];
    for (const member of members) {
      const missing = acked.filter((id) => !member.messages.has(id));
      delivered += acked.length - missing.length;
      const seen = new Set<number>();
      const duplicates = member.live.filter((id) => seen.has(id) || !seen.add(id));
      report.push({
        member: member.name,
        missing: missing.length,
        liveDuplicates: duplicates.length,
        ...member.stats,
        disconnects: [...new Set(member.stats.disconnects)].join(","),
      });
      if (missing.length) {
        problems.push(`${member.name} misses acked ${missing.join(",")}`);
        console.log(member.name, member.timeline);
      }
      if (duplicates.length) problems.push(`${member.name} got ${duplicates.join(",")} twice`);
      // each sender's messages arrived in the order they were acked
      for (const sender of [789, 123]) {
        const ids = member.live.filter((_, i) => member.liveSenders[i] === sender);
        const sorted = [...ids].sort((a, b) => a - b);
        if (ids.join() !== sorted.join()) {
          problems.push(`${member.name}: sender ${sender} out of order`);
        }
      }
    }
    const rate = delivered / (acked.length * members.length);
    console.log(
      JSON.stringify({
        deliveryRate: rate,
        acked: acked.length,
        members: members.length,
        resets: proxies.reduce((n, p) => n + p.resets, 0),
      }),
    );
    console.table(report);
    assert.deepEqual(problems, []);
    assert.equal(rate, 1);

    // both paths were exercised: recovery inside the window, backfill beyond it
    const recovered = members.reduce((n, m) => n + m.stats.recovered, 0);
    const replayed = members.reduce((n, m) => n + m.stats.replayed, 0);
    const backfilled = members.reduce((n, m) => n + m.stats.backfilled, 0);
    assert.ok(recovered > 0, "some reconnects were recovered");
    assert.ok(replayed > 0, "recovery replayed missed messages");
    assert.ok(backfilled > 0, "long gaps were backfilled from history");
    for (const member of members) {
      assert.ok(member.stats.fresh >= 2, `${member.name}: the long outage was not recovered`);
    }
  } finally {
    for (const sender of senders) sender.disconnect();
    await Promise.all(members.map((m) => m.close()));
    await Promise.all(proxies.map((p) => p.close()));
    await running.close();
    setLogSink(previousSink);
  }
  const failures = logged.filter((line) => line.includes('"level":"error"'));
  assert.deepEqual(failures, [], "no handler failed");
});
