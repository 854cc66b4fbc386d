/**
 * Pending (not yet authenticated) sessions, src/engine/pending.ts through the
 * engine: per-address and total caps, the pending deadline, and the prompt
 * release of sessions socket.io gives up on. Raw Engine.IO requests only.
 */

import assert from "node:assert/strict";
import { Server } from "socket.io";
import {
  type ConnectionError,
  Engine,
  type EngineOptions,
  type EngineSocket,
} from "../src/engine/mod.ts";
import { PendingSessions } from "../src/engine/pending.ts";
import { eventually, rawSession, sleep } from "./support/raw_protocol.ts";

interface Harness {
  engine: Engine;
  io: Server;
  port: number;
  errors: ConnectionError[];
  raw: ReturnType<typeof rawSession>;
  close(): Promise<void>;
}

function start(options: EngineOptions, io = new Server()): Harness {
  const engine = new Engine(options);
  io.bind(engine as never);
  const errors: ConnectionError[] = [];
  engine.on("connection_error", (e: ConnectionError) => errors.push(e));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, engine.handler());
  const raw = rawSession(`127.0.0.1:${server.addr.port}/socket.io/`);
  return {
    engine,
    io,
    port: server.addr.port,
    errors,
    raw,
    async close() {
      await raw.closeSockets();
      await io.close();
      await server.shutdown();
    },
  };
}

async function handshake(
  port: number,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`, {
    headers,
  });
  return { status: res.status, body: await res.text() };
}

Deno.test("pending sessions: the per-address cap refuses further handshakes with 403 code 4", async () => {
  const h = start({ maxPendingPerAddress: 5, trustedProxies: ["127.0.0.1"] });
  try {
    const sids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { status, body } = await handshake(h.port);
      assert.equal(status, 200);
      sids.push(JSON.parse(body.slice(1)).sid);
    }
    const refused = await handshake(h.port);
    assert.equal(refused.status, 403);
    assert.deepEqual(JSON.parse(refused.body), { code: 4, message: "Too many pending sessions" });
    const error = h.errors.at(-1)!;
    assert.equal(error.code, 4);
    assert.deepEqual(error.context, {
      name: "PENDING_LIMIT",
      scope: "address",
      address: "127.0.0.1",
      pending: 5,
    });
    // a WebSocket handshake is a session too: refused before the upgrade
    const ws = await fetch(`http://127.0.0.1:${h.port}/socket.io/?EIO=4&transport=websocket`, {
      headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-version": "13" },
    });
    assert.equal(ws.status, 403);
    await ws.body?.cancel();
    // another client address (behind the trusted proxy) has its own allowance
    const other = await handshake(h.port, { "x-forwarded-for": "203.0.113.7" });
    assert.equal(other.status, 200);
    // once the application marks one authenticated, one more may come
    h.engine.clients.get(sids[0])!.markAuthenticated();
    assert.equal((await handshake(h.port)).status, 200);
    assert.equal((await handshake(h.port)).status, 403);
    // and closing a pending session frees its place
    h.engine.clients.get(sids[1])!.close(true);
    assert.equal((await handshake(h.port)).status, 200);
    assert.equal(h.engine.pendingCount, 6, "5 from 127.0.0.1 and 1 from 203.0.113.7");
  } finally {
    await h.close();
  }
});

Deno.test("pending sessions: thousands of handshakes from many addresses stop at the total cap", async () => {
  const h = start({ maxPending: 40, maxPendingPerAddress: 3, trustedProxies: ["127.0.0.1"] });
  try {
    const statuses = new Map<number, number>();
    let peak = 0;
    const lanes = Array.from({ length: 20 }, async (_, lane) => {
      for (let i = lane; i < 3000; i += 20) {
        // 1,000 addresses, three handshakes each
        const address = `198.51.${(i % 1000) >> 8}.${(i % 1000) & 0xff}`;
        const { status } = await handshake(h.port, { "x-forwarded-for": address });
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        peak = Math.max(peak, h.engine.clients.size);
      }
    });
    await Promise.all(lanes);
    assert.equal(statuses.get(200), 40);
    assert.equal(statuses.get(503), 2960, "the rest are refused: server busy");
    assert.equal(peak, 40);
    assert.equal(h.engine.clients.size, 40);
    assert.ok(h.errors.every((e) => e.context.scope === "total"));
  } finally {
    await h.close();
  }
});

Deno.test("pending sessions: closed at the deadline, authenticated ones stay", async () => {
  const io = new Server({ connectTimeout: 60_000 });
  // the application's auth middleware marks the session authenticated
  io.use((socket, next) => {
    if (socket.handshake.auth.token === "good") {
      (socket.conn as unknown as EngineSocket).markAuthenticated();
    }
    next();
  });
  const h = start({ pendingTimeout: 300, pingInterval: 60_000, pingTimeout: 60_000 }, io);
  try {
    // one WebSocket session authenticates, one connects to socket.io without a valid token
    const good = h.raw.ws("EIO=4&transport=websocket");
    await good.next();
    good.send('40{"token":"good"}');
    assert.match(await good.nextText(), /^40\{"sid":/);
    const bad = h.raw.ws("EIO=4&transport=websocket");
    await bad.next();
    bad.send('40{"token":"bad"}');
    assert.match(await bad.nextText(), /^40\{"sid":/);
    // and 250 anonymous sessions that never authenticate
    const polling: string[] = [];
    for (let i = 0; i < 200; i++) {
      const { status, body } = await handshake(h.port);
      assert.equal(status, 200);
      polling.push(JSON.parse(body.slice(1)).sid);
    }
    const sockets = Array.from({ length: 50 }, () => h.raw.ws("EIO=4&transport=websocket"));
    await Promise.all(sockets.map((s) => s.next()));

    await eventually(() => h.engine.clients.size === 1, "only the authenticated session left");
    assert.equal(h.engine.pendingCount, 0);
    const nsp = h.io.of("/");
    assert.equal(nsp.sockets.size, 1);
    assert.equal(
      (nsp as unknown as { _preConnectSockets: Map<string, unknown> })._preConnectSockets.size,
      0,
    );
    assert.equal(nsp.adapter.rooms.size, 1);
    // the expired ones: WebSockets closed, polls refused as unknown sessions
    await Promise.all(sockets.map((s) => s.waitClose()));
    await bad.waitClose();
    const poll = await h.raw.request(`EIO=4&transport=polling&sid=${polling[0]}`);
    assert.equal(poll.status, 400);
    assert.deepEqual(JSON.parse(poll.body), { code: 1, message: "Session ID unknown" });
    // the authenticated one still works
    good.send('42["x"]');
    await sleep(50);
    assert.equal(good.ws.readyState, WebSocket.OPEN);
  } finally {
    await h.close();
  }
});

Deno.test("socket.io's connect timeout frees a polling session that has packets waiting", async () => {
  // pingInterval 100: a ping is queued (no poll pending) before the connect timeout,
  // which once made close() wait for a drain that never came, until the ping timeout
  const io = new Server({ connectTimeout: 300 });
  const h = start({ pingInterval: 100, pingTimeout: 60_000, closeTimeout: 200 }, io);
  try {
    const sids: string[] = [];
    for (let i = 0; i < 100; i++) {
      const { body } = await handshake(h.port);
      sids.push(JSON.parse(body.slice(1)).sid);
    }
    assert.equal(h.engine.clients.size, 100);
    await eventually(() => h.engine.clients.size === 0, "every session freed");
    const poll = await h.raw.request(`EIO=4&transport=polling&sid=${sids[0]}`);
    assert.equal(poll.status, 400);
  } finally {
    await h.close();
  }
});

Deno.test("socket.io's connect timeout: a client still polling gets its packets and the close packet", async () => {
  const io = new Server({ connectTimeout: 300 });
  const h = start({ pingInterval: 100, pingTimeout: 60_000 }, io);
  try {
    const { body } = await handshake(h.port);
    const sid = JSON.parse(body.slice(1)).sid;
    await eventually(() => h.engine.clients.get(sid)?.readyState === "closing", "closing");
    // the next poll collects the queued ping, the one after it the close packet
    const poll = await h.raw.request(`EIO=4&transport=polling&sid=${sid}`);
    assert.equal(poll.status, 200);
    assert.equal(poll.body, "2");
    const last = await h.raw.request(`EIO=4&transport=polling&sid=${sid}`);
    assert.equal(last.status, 200);
    assert.equal(last.body, "6\x1e1", "noop + close, as the reference answers");
    assert.equal(h.engine.clients.size, 0);
  } finally {
    await h.close();
  }
});

Deno.test("PendingSessions: counts per address, refusals, deadline order", async () => {
  const expired: string[] = [];
  const make = (remoteAddress: string, name: string) => ({
    remoteAddress,
    expirePending() {
      expired.push(name);
    },
  });
  const pending = new PendingSessions({ timeoutMs: 50, maxPerAddress: 2, maxTotal: 3 });
  const a1 = make("a", "a1");
  const a2 = make("a", "a2");
  const b1 = make("b", "b1");
  assert.equal(pending.refusal("a"), null);
  pending.add(a1);
  pending.add(a2);
  assert.equal(pending.refusal("a"), "address");
  assert.equal(pending.refusal("b"), null);
  pending.add(b1);
  assert.equal(pending.refusal("c"), "total");
  pending.remove(a1);
  assert.equal(pending.countFor("a"), 1);
  assert.equal(pending.refusal("a"), null);
  await eventually(() => expired.length === 2, "both expired");
  assert.deepEqual(expired, ["a2", "b1"]);
  assert.equal(pending.size, 0);
  assert.equal(pending.countFor("a"), 0);
  pending.clear();
});
