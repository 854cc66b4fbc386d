/**
 * The WebSocket transport (src/engine/websocket.ts) and the session's write
 * bound: clients that stop reading are disconnected once what waits for them
 * passes `maxBufferedBytes` (WebSocket and long-polling), frames over
 * `maxHttpBufferSize` close the session, and held-back packets keep their
 * order.
 */

import assert from "node:assert/strict";
import { Server } from "socket.io";
import { setImmediate } from "node:timers";
import { Engine, type EngineOptions, EngineSocket } from "../src/engine/mod.ts";
import { utf8LengthExceeds } from "../src/engine/parser.ts";
import { toEngineRequest } from "../src/engine/transport.ts";
import { WebSocketTransport } from "../src/engine/websocket.ts";
import { eventually, rawSession, TcpWebSocket } from "./support/raw_protocol.ts";

function start(options: EngineOptions) {
  const engine = new Engine(options);
  const io = new Server();
  io.bind(engine as never);
  const reasons: string[] = [];
  engine.on("connection", (s: EngineSocket) => s.on("close", (r: string) => reasons.push(r)));
  io.on("connection", (socket) => {
    // a flood the client asked for: `count` messages of `size` characters
    socket.on("flood", (count: number, size: number) => {
      const text = "x".repeat(size);
      for (let i = 0; i < count; i++) socket.emit("chunk", i, text);
    });
    socket.on("burst", (count: number) => {
      for (let i = 0; i < count; i++) socket.emit("n", i);
    });
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, engine.handler());
  const raw = rawSession(`127.0.0.1:${server.addr.port}/socket.io/`);
  return {
    engine,
    io,
    reasons,
    raw,
    port: server.addr.port,
    async close() {
      await raw.closeSockets();
      await io.close();
      await server.shutdown();
    },
  };
}

Deno.test("a WebSocket client that stops reading is disconnected at maxBufferedBytes", async () => {
  const h = start({ maxBufferedBytes: 256 * 1024 });
  try {
    const client = await TcpWebSocket.open(h.port, "/socket.io/?EIO=4&transport=websocket");
    client.sendText("40");
    await eventually(() => h.io.of("/").sockets.size === 1, "socket.io connected");
    client.pause();
    // 40 MB offered, far more than the loopback socket buffers hold
    client.sendText(`42["flood",400,100000]`);
    await eventually(() => h.engine.clients.size === 0, "the session closed");
    assert.deepEqual(h.reasons, ["transport error"]);
    assert.equal(h.io.of("/").sockets.size, 0);
    // the server's close frame waits behind the unread data: drop the connection
    client.destroy();
    await client.ended;
  } finally {
    await h.close();
  }
});

Deno.test("a polling client that stops polling is disconnected at maxBufferedBytes", async () => {
  const h = start({ maxBufferedBytes: 64 * 1024, pingInterval: 60_000, pingTimeout: 60_000 });
  try {
    const sid = await h.raw.initLongPollingSession();
    const url = `EIO=4&transport=polling&sid=${sid}`;
    assert.equal((await h.raw.request(url, { method: "POST", body: "40" })).status, 200);
    assert.match((await h.raw.request(url)).body, /^40\{"sid"/);
    // the flood is asked for, then no more polls
    const post = await h.raw.request(url, { method: "POST", body: `42["flood",100,1000]` });
    assert.equal(post.status, 200);
    await eventually(() => h.engine.clients.size === 0, "the session closed");
    assert.deepEqual(h.reasons, ["transport error"]);
    const late = await h.raw.request(url);
    assert.equal(late.status, 400);
  } finally {
    await h.close();
  }
});

Deno.test("a reading client gets every packet of a burst, in order, over WebSocket", async () => {
  const h = start({ maxBufferedBytes: 4 * 1024 * 1024 });
  try {
    const socket = h.raw.ws("EIO=4&transport=websocket");
    await socket.next();
    socket.send("40");
    await socket.next();
    socket.send(`42["burst",2000]`);
    const packets = await socket.nextPackets(2000);
    assert.deepEqual(packets, Array.from({ length: 2000 }, (_, i) => `42["n",${i}]`));
    assert.equal(h.engine.clients.size, 1);
  } finally {
    await h.close();
  }
});

Deno.test("a WebSocket frame over maxHttpBufferSize closes the session (1009), UTF-8 counted", async () => {
  const h = start({ maxHttpBufferSize: 1000 });
  try {
    // 42["x","…"] with 331 characters of 3 bytes each: 1,003 bytes in 341 characters
    const socket = h.raw.ws("EIO=4&transport=websocket");
    await socket.next();
    socket.send(`42["x","${"€".repeat(331)}"]`);
    const closed = await socket.waitClose();
    assert.equal(closed.code, 1009);
    assert.deepEqual(h.reasons, ["transport error"]);
    // with 330 of them (1,000 bytes) the session lives on
    const ok = h.raw.ws("EIO=4&transport=websocket");
    await ok.next();
    ok.send("40");
    assert.match(await ok.nextText(), /^40\{"sid"/);
    ok.send(`42["x","${"€".repeat(330)}"]`);
    ok.send("40/elsewhere,");
    assert.equal(await ok.nextText(), '44/elsewhere,{"message":"Invalid namespace"}');
    assert.equal(h.engine.clients.size, 1);
  } finally {
    await h.close();
  }
});

Deno.test("utf8LengthExceeds counts UTF-8 bytes in place", () => {
  const cases: string[] = [
    "",
    "a".repeat(1000),
    "é".repeat(500),
    "€".repeat(333),
    "😀".repeat(250),
    "a😀é€".repeat(60),
    "\ud800".repeat(100), // lone surrogates: U+FFFD, 3 bytes each
    "x\udc00y",
  ];
  const encoder = new TextEncoder();
  for (const text of cases) {
    const bytes = encoder.encode(text).byteLength;
    for (const limit of [0, bytes - 1, bytes, bytes + 1, 1000]) {
      if (limit < 0) continue;
      assert.equal(utf8LengthExceeds(text, limit), bytes > limit, `${bytes} bytes, limit ${limit}`);
    }
  }
});

/** A stand-in for Deno's server WebSocket: records frames; Deno "writes" them when told. */
class FakeWebSocket extends EventTarget {
  readyState: number = WebSocket.OPEN;
  binaryType = "blob";
  bufferedAmount = 0;
  readonly frames: (string | Uint8Array)[] = [];
  send(data: string | Uint8Array): void {
    this.frames.push(data);
    this.bufferedAmount += typeof data === "string" ? data.length : data.byteLength;
  }
  /** What Deno does on the event-loop turn after `send`: the frames are written. */
  written(): void {
    this.bufferedAmount = 0;
  }
  close(): void {
    this.readyState = WebSocket.CLOSED;
  }
}

/** A session on a {@linkcode FakeWebSocket} (its open packet is the first frame). */
function fakeSession(): {
  ws: FakeWebSocket;
  transport: WebSocketTransport;
  socket: EngineSocket;
} {
  const ws = new FakeWebSocket();
  const transport = new WebSocketTransport(ws as unknown as WebSocket, { maxHttpBufferSize: 1e6 });
  const request = toEngineRequest(new Request("http://127.0.0.1/socket.io/?EIO=4"), "127.0.0.1");
  const socket = new EngineSocket("sid", transport, request, {
    pingInterval: 25_000,
    pingTimeout: 20_000,
    upgradeTimeout: 10_000,
    maxHttpBufferSize: 1e6,
    upgrades: [],
    maxBufferedBytes: 1e6,
    closeTimeout: 1000,
    pending: null,
  });
  return { ws, transport, socket };
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

Deno.test("a packet that waits behind a send made while the last write was being spaced goes out", async () => {
  const { ws, socket } = fakeSession();
  try {
    ws.written();
    await new Promise((resolve) => setTimeout(resolve, 5));
    socket.send("a"); // at once
    socket.send("b"); // waits behind "a"
    ws.written();
    await nextTurn(); // "a" seen written: "b" is spaced after it
    socket.send("c"); // "b" and "c" go now, before the spacing ended
    socket.send("d"); // waits behind them
    assert.deepEqual(ws.frames.slice(1), ["4a", "4b", "4c"]);
    ws.written();
    await eventually(() => ws.frames.length === 5, "the packet that waited is written");
    assert.equal(ws.frames[4], "4d");
  } finally {
    socket.close(true);
  }
});

Deno.test("a packet right after the last frame was written goes out at once, the next in a frame of its own", async () => {
  // the suite's case again, with the client's CONNECT request arriving well within 1 ms of the
  // open packet: CONNECT must not wait for the spacing and then leave with the emit in one batch
  // (how long the emit waits is the next test's)
  const { ws, socket } = fakeSession();
  try {
    ws.written(); // the open packet's frame is written ...
    await nextTurn(); // ... and one turn passed, far less than WRITE_SPACING_MS
    socket.send('0{"sid":"x"}');
    socket.send('2["auth",{}]');
    assert.deepEqual(ws.frames.slice(1), ['40{"sid":"x"}'], "CONNECT goes out at once");
    ws.written();
    await eventually(() => ws.frames.length === 3, "the emit is written");
    assert.equal(ws.frames[2], '42["auth",{}]');
  } finally {
    socket.close(true);
  }
});

Deno.test("a packet queued behind a frame being written is not written right behind it", async () => {
  // the suite's case: socket.io writes CONNECT and the connection handler's first emit in one
  // tick; a client that attaches its next listener after handling CONNECT misses a frame that
  // came in the same TCP read, so the second must not follow on the turn the first was written
  const { ws, transport, socket } = fakeSession();
  try {
    assert.equal(ws.frames.length, 1); // the open packet
    ws.written();
    await eventually(() => !transport.holding, "the open packet's frame is written");
    await new Promise((resolve) => setTimeout(resolve, 5));
    socket.send('0{"sid":"x"}');
    socket.send('2["auth",{}]');
    assert.deepEqual(ws.frames.slice(1), ['40{"sid":"x"}'], "CONNECT goes out at once");
    ws.written();
    await nextTurn();
    await nextTurn();
    assert.deepEqual(ws.frames.slice(1), ['40{"sid":"x"}'], "the emit waits past that turn");
    await eventually(() => ws.frames.length === 3, "the emit is written");
    assert.equal(ws.frames[2], '42["auth",{}]');
    // with nothing queued, a packet still goes out at once
    ws.written();
    await eventually(() => !transport.holding, "the emit's frame is written");
    await new Promise((resolve) => setTimeout(resolve, 5));
    socket.send("a");
    socket.send("b");
    assert.deepEqual(ws.frames.slice(3), ["4a"]);
    ws.written();
    await eventually(() => ws.frames.length === 5, "the packet held behind it is written");
    assert.equal(ws.frames[4], "4b");
  } finally {
    socket.close(true);
  }
});
