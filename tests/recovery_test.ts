/**
 * Connection state recovery, asserted on raw frames: a client that comes
 * back with a session id and offset receives nothing of its conversations
 * (neither what it missed nor what is broadcast meanwhile) before its token
 * is verified; accepted, it gets what it missed once, after its CONNECT, and
 * only of the conversations its person may still enter.
 */

import assert from "node:assert/strict";
import { TRANSFER_456_TO_124 } from "./support/people.ts";
import { closeAll, connectUsers, type TestClient, tokenFor } from "./support/clients.ts";
import { RawSocket } from "./support/raw_protocol.ts";
import { type RunningApp, startApp } from "./support/server.ts";

const ENV = { SEED_FILE: "demo/fixture.json", ACCESS_RECHECK_INTERVAL: "600000" };

interface Dropped {
  pid: string;
  offset: string;
}

/**
 * Agent 123 and customer 789 in conversation 456; the agent's transport
 * drops (the server keeps its session), then the customer writes `missed`.
 */
async function dropAgent(
  running: RunningApp,
  clients: (TestClient | undefined)[],
  missed: string,
  whileAway: () => Promise<void> = () => Promise.resolve(),
): Promise<Dropped & { customer: TestClient }> {
  const [agent, customer] = await connectUsers(running, ["agent:123", "client:789"], clients);
  await agent.join(456);
  await customer.join(456);
  const mark = agent.mark();
  await customer.expectOk("sendMessage", { message: "before", chatGroupId: 456, clientId: 789 });
  await agent.next("receiveMessage", mark);
  // what socket.io-client would send on its own reconnect
  const state = agent.socket as unknown as { _pid: string; _lastOffset: string };
  const dropped = { pid: state._pid, offset: state._lastOffset };
  assert.equal(typeof dropped.pid, "string");
  assert.equal(typeof dropped.offset, "string");
  const id = agent.socket.id!;
  agent.socket.io.engine.close();
  for (let i = 0; i < 200 && running.app.io.of("/").sockets.has(id); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(running.app.io.of("/").sockets.has(id), false, "the server saw the drop");
  await whileAway();
  await customer.expectOk("sendMessage", { message: missed, chatGroupId: 456, clientId: 789 });
  return { ...dropped, customer };
}

/**
 * Comes back on a raw WebSocket with `auth` (+ the session id and offset),
 * while the server broadcasts `live` to conversation 456 every few ms;
 * returns every text frame until 300 ms after the CONNECT or CONNECT_ERROR.
 */
async function comeBack(
  running: RunningApp,
  dropped: Dropped,
  auth: Record<string, unknown>,
  live: string,
): Promise<string[]> {
  const raw = new RawSocket(
    `ws://127.0.0.1:${running.port}/socket.io/?EIO=4&transport=websocket`,
  );
  const frames: string[] = [];
  let n = 0;
  const broadcasting = setInterval(() => {
    running.app.io.to("chat_456").emit("receiveMessage", {
      chatGroupId: 456,
      chat_message: `${live} ${n++}`,
    });
  }, 2);
  try {
    const open = await raw.nextText();
    assert.equal(open[0], "0", "Engine.IO open");
    raw.send(`40${JSON.stringify({ ...auth, pid: dropped.pid, offset: dropped.offset })}`);
    let answered = false;
    while (!answered) {
      const frame = await raw.nextText();
      frames.push(frame);
      answered = frame.startsWith("40") || frame.startsWith("44");
    }
    const until = Date.now() + 300;
    while (Date.now() < until) {
      const frame = await Promise.race([
        raw.next().catch(() => null),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), until - Date.now())),
      ]);
      if (typeof frame === "string") frames.push(frame);
      if (frame === null) break;
    }
    return frames;
  } finally {
    clearInterval(broadcasting);
    await raw.close();
  }
}

function events(frames: readonly string[]): { name: string; payload: Record<string, unknown> }[] {
  return frames.filter((f) => f.startsWith("42")).map((f) => {
    const [name, payload] = JSON.parse(f.slice(2));
    return { name, payload };
  });
}

Deno.test("a refused recovering handshake receives no chat text, missed or live", async (t) => {
  const running = await startApp(ENV);
  const clients: (TestClient | undefined)[] = [];
  try {
    const refusals: [string, () => Promise<Record<string, unknown>>, string][] = [
      [
        "another person's token",
        async () => ({ token: await tokenFor(running, "client:790") }),
        "ACCESS_DENIED",
      ],
      [
        "a token that does not verify",
        () => Promise.resolve({ token: "not.a.jwt" }),
        "AUTH_REQUIRED",
      ],
      ["no token", () => Promise.resolve({}), "AUTH_REQUIRED"],
    ];
    for (const [what, auth, code] of refusals) {
      await t.step(what, async () => {
        const dropped = await dropAgent(running, clients, `secret missed (${what})`);
        const frames = await comeBack(running, dropped, await auth(), "secret live");
        const refusal = frames.find((f) => f.startsWith("44"));
        assert.ok(refusal, `refused: ${frames.join(" | ")}`);
        assert.equal(JSON.parse(refusal.slice(2)).data.code, code);
        const leaked = frames.filter((f) => f.includes("secret") || f.includes("before"));
        assert.deepEqual(leaked, [], "no chat text on the wire");
        assert.deepEqual(events(frames), [], "no event at all");
        await closeAll(undefined, clients.splice(0));
      });
    }
  } finally {
    await closeAll(running, clients);
  }
});

Deno.test("an accepted recovery replays what was missed once, after CONNECT, then live", async () => {
  const running = await startApp(ENV);
  const clients: (TestClient | undefined)[] = [];
  try {
    const dropped = await dropAgent(running, clients, "missed while away");
    const frames = await comeBack(
      running,
      dropped,
      { token: await tokenFor(running, "agent:123") },
      "live",
    );
    const connectAt = frames.findIndex((f) => f.startsWith("40"));
    assert.ok(connectAt >= 0, `connected: ${frames.join(" | ")}`);
    assert.equal(JSON.parse(frames[connectAt].slice(2)).pid, dropped.pid, "same session");
    const messages = events(frames).filter((e) => e.name === "receiveMessage");
    const texts = messages.map((m) => String(m.payload.chat_message));
    assert.deepEqual(texts.filter((m) => m === "missed while away"), ["missed while away"]);
    assert.equal(texts.includes("before"), false, "nothing before the offset");
    assert.equal(texts[0], "missed while away", "missed first, then live");
    const firstEvent = frames.findIndex((f) => f.startsWith("42"));
    assert.ok(firstEvent > connectAt, "after CONNECT");
    // live broadcasts reach it once it is back, numbered without gaps from the first one seen
    const live = texts.filter((m) => m.startsWith("live ")).map((m) => Number(m.slice(5)));
    assert.ok(live.length > 0, "live broadcasts after the recovery");
    assert.deepEqual(live, live.map((_, i) => live[0] + i), "no live broadcast lost or reordered");
  } finally {
    await closeAll(running, clients);
  }
});

Deno.test("a recovery leaves out a conversation lost while away: nothing of it replayed", async () => {
  const running = await startApp(ENV);
  const clients: (TestClient | undefined)[] = [];
  try {
    const dropped = await dropAgent(running, clients, "secret after the transfer", async () => {
      // transferred to agent 124 of department 2 while agent 123 was away
      await running.app.services.store.loadFixture(TRANSFER_456_TO_124);
    });
    const frames = await comeBack(
      running,
      dropped,
      { token: await tokenFor(running, "agent:123") },
      "secret live",
    );
    assert.ok(frames.some((f) => f.startsWith("40")), `connected: ${frames.join(" | ")}`);
    assert.deepEqual(frames.filter((f) => f.includes("secret")), [], "nothing of 456 on the wire");
    const left = events(frames).filter((e) => e.name === "chat:left");
    assert.deepEqual(left.map((e) => e.payload), [{ chatGroupId: 456, reason: "access_revoked" }]);
  } finally {
    await closeAll(running, clients);
  }
});
