/**
 * The Deno-native Engine.IO server under socket.io, driven by the official
 * socket.io-client and by raw HTTP/WebSocket requests.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Server, type Socket as ServerSocket } from "socket.io";
import { io as connect, type Socket as ClientSocket } from "socket.io-client";
import { type ConnectionError, Engine, type EngineOptions } from "../src/engine/mod.ts";

interface Harness {
  engine: Engine;
  io: Server;
  url: string;
  port: number;
  errors: ConnectionError[];
  clients: ClientSocket[];
  client(options?: Record<string, unknown>): ClientSocket;
  close(): Promise<void>;
}

function start(options: EngineOptions = {}, port = 0, bare = false): Harness {
  const engine = new Engine(options);
  const io = new Server();
  if (bare) {
    // raw Engine.IO sessions echoing every message
    engine.on("connection", (s) => s.on("data", (d: string) => s.send(d)));
  } else {
    io.bind(engine as never);
  }
  const errors: ConnectionError[] = [];
  engine.on("connection_error", (e: ConnectionError) => errors.push(e));
  io.on("connection", (socket: ServerSocket) => {
    socket.on("echo", (...args: unknown[]) => {
      const ack = args.pop();
      if (typeof ack === "function") ack(...args);
    });
    socket.on("ask", async (question: string, ack: (a: unknown) => void) => {
      const answer = await socket.timeout(2000).emitWithAck("question", question);
      ack(answer);
    });
    socket.on("volatile-burst", (n: number) => {
      for (let i = 0; i < n; i++) socket.volatile.emit("tick", i);
    });
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, engine.handler());
  const clients: ClientSocket[] = [];
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    engine,
    io,
    url,
    port: server.addr.port,
    errors,
    clients,
    client(opts = {}) {
      const c = connect(url, { forceNew: true, reconnection: false, ...opts });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.disconnect();
      if (bare) engine.close();
      else await io.close();
      await server.shutdown();
    },
  };
}

function once<T = unknown>(
  target: { once(event: string, fn: (...a: never[]) => void): unknown },
  event: string,
): Promise<T> {
  return new Promise((resolve) => target.once(event, ((value: T) => resolve(value)) as never));
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const MODES: { name: string; transports: string[]; expect: string }[] = [
  { name: "websocket only", transports: ["websocket"], expect: "websocket" },
  { name: "polling only", transports: ["polling"], expect: "polling" },
  {
    name: "polling upgraded to websocket",
    transports: ["polling", "websocket"],
    expect: "websocket",
  },
];

Deno.test("socket.io-client works over every transport mode", async (t) => {
  const h = await start({ pingInterval: 200, pingTimeout: 400 });
  try {
    for (const mode of MODES) {
      await t.step(mode.name, async () => {
        const c = h.client({ transports: mode.transports });
        await once(c, "connect");
        if (mode.expect === "websocket" && c.io.engine.transport.name !== "websocket") {
          await once(c.io.engine, "upgrade");
        }
        assert.equal(c.io.engine.transport.name, mode.expect);
        // acks client -> server, with a binary attachment both ways
        const reply = await c.emitWithAck("echo", {
          text: "héllo ✓",
          bin: new Uint8Array([1, 2, 3]),
        });
        assert.equal(reply.text, "héllo ✓");
        assert.deepEqual([...new Uint8Array(reply.bin)], [1, 2, 3]);
        // acks server -> client
        c.on("question", (q: string, ack: (a: string) => void) => ack(q.toUpperCase()));
        assert.equal(await c.emitWithAck("ask", "why"), "WHY");
        // survives several heartbeats (pingInterval 200 ms, pingTimeout 400 ms)
        await delay(900);
        assert.equal(c.connected, true);
        const server = h.io.sockets.sockets.get(c.id!);
        assert.equal(server?.conn.transport.name, mode.expect);
        c.disconnect();
      });
    }
  } finally {
    await h.close();
  }
});

Deno.test("large binary payloads round-trip on every transport", async () => {
  const h = await start();
  try {
    for (const mode of MODES) {
      const c = h.client({ transports: mode.transports });
      await once(c, "connect");
      const data = new Uint8Array(200_000).map((_, i) => i % 251);
      const reply = await c.emitWithAck("echo", data);
      assert.equal(Buffer.compare(Buffer.from(reply), Buffer.from(data)), 0, mode.name);
      c.disconnect();
    }
  } finally {
    await h.close();
  }
});

Deno.test("volatile emits are delivered while the transport is writable", async () => {
  const h = await start();
  try {
    const c = h.client({ transports: ["websocket"] });
    await once(c, "connect");
    const ticks: number[] = [];
    c.on("tick", (i: number) => ticks.push(i));
    c.emit("volatile-burst", 50);
    await delay(300);
    // a WebSocket is always writable here, so none is dropped
    assert.deepEqual(ticks, Array.from({ length: 50 }, (_, i) => i));
  } finally {
    await h.close();
  }
});

Deno.test("heartbeat: a client that stops answering pings is closed", async () => {
  const h = await start({ pingInterval: 100, pingTimeout: 150 });
  try {
    // raw WebSocket client that never answers pings
    const ws = new WebSocket(`ws://127.0.0.1:${h.port}/socket.io/?EIO=4&transport=websocket`);
    const frames: string[] = [];
    ws.onmessage = (e) => frames.push(String(e.data));
    const closed = new Promise<void>((r) => (ws.onclose = () => r()));
    const serverClose = new Promise<string>((resolve) => {
      h.engine.once("connection", (s) => s.once("close", (reason: string) => resolve(reason)));
    });
    assert.equal(await serverClose, "ping timeout");
    await closed;
    assert.match(
      frames[0],
      /^0\{"sid":"[\w-]{20}","upgrades":\[\],"pingInterval":100,"pingTimeout":150,"maxPayload":1000000\}$/,
    );
    assert.ok(frames.includes("2"), "server sent a ping");
    assert.equal(h.engine.clientsCount, 0);
  } finally {
    await h.close();
  }
});

Deno.test("heartbeat: socket.io-client answering pings stays connected", async () => {
  // short interval so many heartbeats happen; a timeout with room for a loaded CI machine
  const h = await start({ pingInterval: 80, pingTimeout: 1000 });
  try {
    const c = h.client({ transports: ["polling"] });
    await once(c, "connect");
    let pings = 0;
    c.io.engine.on("ping", () => pings++);
    await delay(800);
    assert.equal(c.connected, true);
    assert.ok(pings >= 5, `expected several pings, got ${pings}`);
    assert.equal(h.engine.clientsCount, 1);
  } finally {
    await h.close();
  }
});

Deno.test("error replies match the reference server", async (t) => {
  const h = await start({ transports: ["polling", "websocket"] });
  const base = `http://127.0.0.1:${h.port}/socket.io/`;
  async function expectError(
    input: string,
    init: RequestInit,
    status: number,
    body: unknown,
  ): Promise<void> {
    const res = await fetch(base + input, init);
    assert.equal(res.status, status);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.deepEqual(await res.json(), body);
  }
  try {
    await t.step(
      "unknown transport",
      () =>
        expectError("?EIO=4&transport=carrier-pigeon", {}, 400, {
          code: 0,
          message: "Transport unknown",
        }),
    );
    await t.step(
      "missing transport",
      () => expectError("?EIO=4", {}, 400, { code: 0, message: "Transport unknown" }),
    );
    await t.step(
      "unknown session id",
      () =>
        expectError("?EIO=4&transport=polling&sid=nope", {}, 400, {
          code: 1,
          message: "Session ID unknown",
        }),
    );
    await t.step(
      "bad handshake method",
      () =>
        expectError("?EIO=4&transport=polling", { method: "POST", body: "4x" }, 400, {
          code: 2,
          message: "Bad handshake method",
        }),
    );
    await t.step(
      "websocket transport without upgrade",
      () => expectError("?EIO=4&transport=websocket", {}, 400, { code: 3, message: "Bad request" }),
    );
    await t.step("EIO 3 refused", () =>
      expectError("?EIO=3&transport=polling", {}, 400, {
        code: 5,
        message: "Unsupported protocol version",
      }));
    await t.step("missing EIO refused", () =>
      expectError("?transport=polling", {}, 400, {
        code: 5,
        message: "Unsupported protocol version",
      }));
    await t.step("transport mismatch on an existing session", async () => {
      const open = await (await fetch(base + "?EIO=4&transport=polling")).text();
      const sid = JSON.parse(open.slice(1)).sid;
      await expectError(`?EIO=4&transport=websocket&sid=${sid}`, {}, 400, {
        code: 3,
        message: "Bad request",
      });
      h.engine.clients.get(sid)?.close(true);
    });
    await t.step("every refusal is reported as connection_error", () => {
      assert.deepEqual(h.errors.map((e) => e.code), [0, 0, 1, 2, 3, 5, 5, 3]);
      const e = h.errors[0];
      assert.equal(e.message, "Transport unknown");
      assert.deepEqual(e.context, { transport: "carrier-pigeon" });
      assert.equal(e.req.remoteAddress, "127.0.0.1");
    });
    await t.step("unknown session id on a websocket upgrade", async () => {
      const res = await fetch(base + "?EIO=4&transport=websocket&sid=nope", {
        headers: { upgrade: "websocket", connection: "Upgrade" },
      });
      assert.equal(res.status, 400);
      assert.equal(await res.text(), "Session ID unknown");
    });
  } finally {
    await h.close();
  }
});

Deno.test("allowRequest refuses a handshake with 403 and the given message", async () => {
  const h = await start({
    allowRequest: (req) => req._query.token === "let-me-in" ? true : { message: "go away" },
  });
  try {
    const refused = await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(refused.status, 403);
    assert.deepEqual(await refused.json(), { code: 4, message: "go away" });
    assert.equal(h.errors.at(-1)?.code, 4);
    const c = h.client({ transports: ["polling"], query: { token: "let-me-in" } });
    await once(c, "connect");
    const denied = h.client({ transports: ["polling"] });
    const err = await once<Error>(denied, "connect_error");
    assert.match(err.message, /xhr poll error/);
  } finally {
    await h.close();
  }
});

Deno.test("maxHttpBufferSize: oversized POST gets 413, oversized frame closes the session", async (t) => {
  const h = await start({ maxHttpBufferSize: 1000 });
  try {
    await t.step("polling", async () => {
      const open = await (await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`)).text();
      const sid = JSON.parse(open.slice(1)).sid;
      const url = `${h.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
      const big = await fetch(url, { method: "POST", body: "4" + "x".repeat(1500) });
      assert.equal(big.status, 413);
      await big.body?.cancel();
      const small = await fetch(url, { method: "POST", body: "4" + "x".repeat(500) });
      assert.equal(small.status, 200);
      assert.equal(await small.text(), "ok");
      h.engine.clients.get(sid)?.close(true);
    });
    await t.step("websocket", async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${h.port}/socket.io/?EIO=4&transport=websocket`);
      const reason = new Promise<string>((resolve) => {
        h.engine.once("connection", (s) => s.once("close", (r: string) => resolve(r)));
      });
      const closed = new Promise<number>((r) => (ws.onclose = (e) => r(e.code)));
      await new Promise((r) => (ws.onopen = r));
      ws.send("4" + "y".repeat(2000));
      assert.equal(await reason, "transport error");
      assert.equal(await closed, 1009);
    });
  } finally {
    await h.close();
  }
});

Deno.test("CORS: allowlist, credentials and preflight", async () => {
  const h = await start({ cors: { origin: ["http://app.example"], credentials: true } });
  try {
    const pre = await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`, {
      method: "OPTIONS",
      headers: {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "http://app.example");
    assert.equal(pre.headers.get("access-control-allow-credentials"), "true");
    assert.equal(pre.headers.get("access-control-allow-headers"), "content-type");
    assert.match(pre.headers.get("access-control-allow-methods") ?? "", /POST/);

    const ok = await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { origin: "http://app.example" },
    });
    assert.equal(ok.headers.get("access-control-allow-origin"), "http://app.example");
    assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
    const sid = JSON.parse((await ok.text()).slice(1)).sid;
    h.engine.clients.get(sid)?.close(true);

    const foreign = await fetch(`${h.url}/socket.io/?EIO=4&transport=foo`, {
      headers: { origin: "http://evil.example" },
    });
    assert.equal(foreign.status, 400);
    assert.equal(foreign.headers.get("access-control-allow-origin"), null);
    await foreign.body?.cancel();
  } finally {
    await h.close();
  }
});

Deno.test("raw polling session: open, message, batched payload, close packet", async () => {
  const h = await start({}, 0, true);
  try {
    const open = await (await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`)).text();
    assert.equal(open[0], "0");
    const handshake = JSON.parse(open.slice(1));
    assert.deepEqual(Object.keys(handshake).sort(), [
      "maxPayload",
      "pingInterval",
      "pingTimeout",
      "sid",
      "upgrades",
    ]);
    assert.deepEqual(handshake.upgrades, ["websocket"]);
    const url = `${h.url}/socket.io/?EIO=4&transport=polling&sid=${handshake.sid}`;
    const post = await fetch(url, { method: "POST", body: "4one\x1e4two\x1ebAQID" });
    assert.equal(await post.text(), "ok");
    const poll = await fetch(url);
    assert.equal(poll.headers.get("content-type"), "text/plain; charset=UTF-8");
    assert.equal(await poll.text(), "4one\x1e4two\x1ebAQID");
    // the client closes
    const bye = await fetch(url, { method: "POST", body: "1" });
    assert.equal(await bye.text(), "ok");
    assert.equal(h.engine.clientsCount, 0);
  } finally {
    await h.close();
  }
});

Deno.test("raw upgrade: probe, noop to the pending poll, upgrade packet", async () => {
  const h = await start({}, 0, true);
  try {
    const open = await (await fetch(`${h.url}/socket.io/?EIO=4&transport=polling`)).text();
    const sid = JSON.parse(open.slice(1)).sid;
    const pollUrl = `${h.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    const pending = fetch(pollUrl).then((r) => r.text());
    const ws = new WebSocket(
      `ws://127.0.0.1:${h.port}/socket.io/?EIO=4&transport=websocket&sid=${sid}`,
    );
    const frames: string[] = [];
    const next = () => new Promise<string>((r) => (ws.onmessage = (e) => r(String(e.data))));
    await new Promise((r) => (ws.onopen = r));
    let frame = next();
    ws.send("2probe");
    assert.equal(await frame, "3probe");
    assert.equal(await pending, "6");
    ws.send("5");
    frame = next();
    ws.send("4after-upgrade");
    frames.push(await frame);
    assert.deepEqual(frames, ["4after-upgrade"]);
    assert.equal(h.engine.clients.get(sid)?.transport.name, "websocket");
    // polling is no longer accepted for this session
    const late = await fetch(pollUrl);
    assert.equal(late.status, 400);
    await late.body?.cancel();
    const closed = new Promise((r) => (ws.onclose = r));
    ws.close();
    await closed;
  } finally {
    await h.close();
  }
});

Deno.test("reconnection after a server restart", async () => {
  let h = await start();
  const port = h.port;
  const c = connect(h.url, { forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
  try {
    await once(c, "connect");
    const firstId = c.id;
    await h.io.close();
    // shut the HTTP server down and bring a new one up on the same port
    await h.close();
    await once(c, "disconnect");
    h = await start({}, port);
    await once(c, "connect");
    assert.notEqual(c.id, firstId);
    assert.equal(await c.emitWithAck("echo", 42), 42);
  } finally {
    c.disconnect();
    await h.close();
  }
});

Deno.test("engine.close() closes every session", async () => {
  const h = await start();
  try {
    const a = h.client({ transports: ["websocket"] });
    const b = h.client({ transports: ["polling"] });
    await Promise.all([once(a, "connect"), once(b, "connect")]);
    assert.equal(h.engine.clientsCount, 2);
    const reasons = Promise.all([once<string>(a, "disconnect"), once<string>(b, "disconnect")]);
    h.engine.close();
    const [wsReason, pollingReason] = await reasons;
    assert.equal(wsReason, "transport close");
    // as in the reference server: a poll in flight gets the close packet; between two
    // polls the session is dropped at once and the next poll is refused
    assert.ok(["transport close", "transport error"].includes(pollingReason), pollingReason);
    assert.equal(h.engine.clientsCount, 0);
  } finally {
    await h.close();
  }
});
