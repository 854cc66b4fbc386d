/**
 * Socket.IO v5 protocol compliance of socket.io's `Server` bound to our
 * Engine, case by case.
 *
 * Every step checks what one case of the official Socket.IO v5 test suite
 * (socketio/socket.io-protocol, `test-suite/test-suite.js`) checks; the step
 * name is `<describe path> › <case name>` so it maps to the suite. The server
 * is the one the suite's README describes: pingInterval 300, pingTimeout 200,
 * maxPayload 1e6, connectTimeout 1000, CORS `*`; on connection it emits
 * `auth` with the handshake auth, echoes `message` as `message-back` and
 * answers `message-with-ack` through the ack; namespace `/custom` emits `auth`.
 *
 * Our own code (the suite's is not copied): raw Engine.IO/Socket.IO packets
 * over `fetch` and Deno's WebSocket client, no socket.io-client.
 */

import assert from "node:assert/strict";
import { Server, type Socket } from "socket.io";
import { Engine } from "../src/engine/mod.ts";
import {
  assertHandshake,
  assertRefusedWebSocket,
  PING_INTERVAL,
  PING_TIMEOUT,
  type RawSession,
  rawSession,
  type RawSocket,
  sleep,
} from "./support/raw_protocol.ts";

/** A running socket.io server (on our Engine) for one case; raw access on `/socket.io/`. */
interface Ctx extends Omit<RawSession, "closeSockets"> {
  /** WebSocket session connected to the main namespace, `auth` packet consumed. */
  initSocketIOConnection(): Promise<RawSocket>;
}

function onConnection(socket: Socket): void {
  socket.emit("auth", socket.handshake.auth);
  socket.on("message", (...args: unknown[]) => {
    socket.emit("message-back", ...args);
  });
  socket.on("message-with-ack", (...args: unknown[]) => {
    const ack = args.pop() as (...reply: unknown[]) => void;
    ack(...args);
  });
}

async function withServer(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const engine = new Engine({
    pingInterval: PING_INTERVAL,
    pingTimeout: PING_TIMEOUT,
    maxHttpBufferSize: 1e6,
    cors: { origin: "*" },
  });
  const io = new Server({ connectTimeout: 1000 });
  io.bind(engine as never);
  io.on("connection", onConnection);
  io.of("/custom").on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, engine.handler());
  const base = `127.0.0.1:${server.addr.port}/socket.io/`;
  const session = rawSession(base);
  const ctx: Ctx = {
    ws: session.ws,
    request: session.request,
    initLongPollingSession: session.initLongPollingSession,
    async initSocketIOConnection() {
      const socket = ctx.ws("EIO=4&transport=websocket");
      await socket.next(); // Engine.IO handshake
      socket.send("40");
      await socket.next(); // Socket.IO handshake
      await socket.next(); // "auth" packet
      return socket;
    },
  };
  try {
    await fn(ctx);
  } finally {
    await io.close();
    await session.closeSockets();
    await server.shutdown();
  }
}

/** Checks a Socket.IO CONNECT reply `40[/nsp,]{"sid":…}`. */
function assertConnectReply(data: string, prefix: string): void {
  assert.ok(data.startsWith(prefix), `expected ${prefix}…, got ${data}`);
  const handshake = JSON.parse(data.substring(prefix.length));
  assert.deepEqual(Object.keys(handshake), ["sid"]);
  assert.equal(typeof handshake.sid, "string");
}

Deno.test("Socket.IO v5 protocol compliance (socket.io-protocol test-suite)", async (t) => {
  // ======== Engine.IO protocol (as seen through socket.io)
  await t.step(
    "Engine.IO › handshake › HTTP long-polling › should successfully open a session",
    () =>
      withServer(async (ctx) => {
        const { status, body } = await ctx.request("EIO=4&transport=polling");
        assert.equal(status, 200);
        assert.equal(body[0], "0");
        assertHandshake(JSON.parse(body.substring(1)), ["websocket"]);
      }),
  );

  await t.step(
    "Engine.IO › handshake › HTTP long-polling › should fail with an invalid 'EIO' query parameter",
    () =>
      withServer(async (ctx) => {
        assert.equal((await ctx.request("transport=polling")).status, 400);
        assert.equal((await ctx.request("EIO=abc&transport=polling")).status, 400);
      }),
  );

  await t.step(
    "Engine.IO › handshake › HTTP long-polling › should fail with an invalid 'transport' query parameter",
    () =>
      withServer(async (ctx) => {
        assert.equal((await ctx.request("EIO=4")).status, 400);
        assert.equal((await ctx.request("EIO=4&transport=abc")).status, 400);
      }),
  );

  await t.step(
    "Engine.IO › handshake › HTTP long-polling › should fail with an invalid request method",
    () =>
      withServer(async (ctx) => {
        const post = await ctx.request("EIO=4&transport=polling", { method: "POST" });
        assert.equal(post.status, 400);
        const put = await ctx.request("EIO=4&transport=polling", { method: "PUT" });
        assert.equal(put.status, 400);
      }),
  );

  await t.step(
    "Engine.IO › handshake › WebSocket › should successfully open a session",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        const data = await socket.nextText();
        assert.equal(data[0], "0");
        assertHandshake(JSON.parse(data.substring(1)), []);
        await socket.close();
      }),
  );

  await t.step(
    "Engine.IO › handshake › WebSocket › should fail with an invalid 'EIO' query parameter",
    () =>
      withServer(async (ctx) => {
        await assertRefusedWebSocket(ctx, "transport=websocket");
        await assertRefusedWebSocket(ctx, "EIO=abc&transport=websocket");
      }),
  );

  await t.step(
    "Engine.IO › handshake › WebSocket › should fail with an invalid 'transport' query parameter",
    () =>
      withServer(async (ctx) => {
        await assertRefusedWebSocket(ctx, "EIO=4");
        await assertRefusedWebSocket(ctx, "EIO=4&transport=abc");
      }),
  );

  await t.step(
    "Engine.IO › heartbeat › HTTP long-polling › should send ping/pong packets",
    () =>
      withServer(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        for (let i = 0; i < 3; i++) {
          const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
          assert.equal(poll.status, 200);
          assert.equal(poll.body, "2");
          const push = await ctx.request(`EIO=4&transport=polling&sid=${sid}`, {
            method: "POST",
            body: "3",
          });
          assert.equal(push.status, 200);
        }
      }),
  );

  await t.step(
    "Engine.IO › heartbeat › HTTP long-polling › should close the session upon ping timeout",
    () =>
      withServer(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        await sleep(PING_INTERVAL + PING_TIMEOUT);
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 400);
      }),
  );

  await t.step(
    "Engine.IO › heartbeat › WebSocket › should send ping/pong packets",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // handshake
        for (let i = 0; i < 3; i++) {
          assert.equal(await socket.next(), "2");
          socket.send("3");
        }
        await socket.close();
      }),
  );

  await t.step(
    "Engine.IO › heartbeat › WebSocket › should close the session upon ping timeout",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.waitClose();
      }),
  );

  await t.step(
    "Engine.IO › close › HTTP long-polling › should forcefully close the session",
    () =>
      withServer(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const [poll] = await Promise.all([
          ctx.request(`EIO=4&transport=polling&sid=${sid}`),
          ctx.request(`EIO=4&transport=polling&sid=${sid}`, { method: "POST", body: "1" }),
        ]);
        assert.equal(poll.status, 200);
        assert.equal(poll.body, "6");
        const poll2 = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll2.status, 400);
      }),
  );

  await t.step(
    "Engine.IO › close › WebSocket › should forcefully close the session",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // handshake
        socket.send("1");
        await socket.waitClose();
      }),
  );

  await t.step(
    "Engine.IO › upgrade › should successfully upgrade from HTTP long-polling to WebSocket",
    () =>
      withServer(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const socket = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket.waitOpen();
        socket.send("2probe");
        assert.equal(await socket.next(), "3probe");
        socket.send("5");
        await socket.close();
      }),
  );

  await t.step(
    "Engine.IO › upgrade › should ignore HTTP requests with same sid after upgrade",
    () =>
      withServer(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const socket = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket.waitOpen();
        socket.send("2probe");
        socket.send("5");
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 400);
        await socket.close();
      }),
  );

  await t.step(
    "Engine.IO › upgrade › should ignore WebSocket connection with same sid after upgrade",
    () =>
      withServer(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const socket = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket.waitOpen();
        socket.send("2probe");
        socket.send("5");
        const socket2 = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket2.waitClose();
        await socket.close();
      }),
  );

  // ======== Socket.IO protocol
  await t.step(
    "Socket.IO › connect › should allow connection to the main namespace",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // Engine.IO handshake
        socket.send("40");
        assertConnectReply(await socket.nextText(), "40");
        assert.equal(await socket.next(), '42["auth",{}]');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › connect › should allow connection to the main namespace with a payload",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // Engine.IO handshake
        socket.send('40{"token":"123"}');
        assertConnectReply(await socket.nextText(), "40");
        assert.equal(await socket.next(), '42["auth",{"token":"123"}]');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › connect › should allow connection to a custom namespace",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // Engine.IO handshake
        socket.send("40/custom,");
        assertConnectReply(await socket.nextText(), "40/custom,");
        assert.equal(await socket.next(), '42/custom,["auth",{}]');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › connect › should allow connection to a custom namespace with a payload",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // Engine.IO handshake
        socket.send('40/custom,{"token":"abc"}');
        assertConnectReply(await socket.nextText(), "40/custom,");
        assert.equal(await socket.next(), '42/custom,["auth",{"token":"abc"}]');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › connect › should disallow connection to an unknown namespace",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // Engine.IO handshake
        socket.send("40/random");
        assert.equal(await socket.next(), '44/random,{"message":"Invalid namespace"}');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › connect › should disallow connection with an invalid handshake",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // Engine.IO handshake
        socket.send("4abc");
        await socket.waitCloseAnsweringPings();
      }),
  );

  await t.step(
    "Socket.IO › connect › should close the connection if no handshake is received",
    () =>
      withServer(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.waitClose();
      }),
  );

  await t.step(
    "Socket.IO › disconnect › should disconnect from the main namespace",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send("41");
        assert.equal(await socket.next(), "2");
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › disconnect › should connect then disconnect from a custom namespace",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        await socket.next(); // ping
        socket.send("40/custom");
        await socket.next(); // Socket.IO handshake
        await socket.next(); // auth packet
        socket.send("41/custom");
        socket.send('42["message","message to main namespace"]');
        assert.equal(await socket.next(), '42["message-back","message to main namespace"]');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › message › should send a plain-text packet",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send('42["message",1,"2",{"3":[true]}]');
        assert.equal(await socket.next(), '42["message-back",1,"2",{"3":[true]}]');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › message › should send a packet with binary attachments",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
        socket.send(Uint8Array.from([1, 2, 3]));
        socket.send(Uint8Array.from([4, 5, 6]));
        const packets = await socket.nextPackets(3);
        assert.equal(
          packets[0],
          '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        );
        assert.deepEqual(packets[1], Uint8Array.from([1, 2, 3]).buffer);
        assert.deepEqual(packets[2], Uint8Array.from([4, 5, 6]).buffer);
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › message › should send a plain-text packet with an ack",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send('42456["message-with-ack",1,"2",{"3":[false]}]');
        assert.equal(await socket.next(), '43456[1,"2",{"3":[false]}]');
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › message › should send a packet with binary attachments and an ack",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send(
          '452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        );
        socket.send(Uint8Array.from([1, 2, 3]));
        socket.send(Uint8Array.from([4, 5, 6]));
        const packets = await socket.nextPackets(3);
        assert.equal(
          packets[0],
          '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        );
        assert.deepEqual(packets[1], Uint8Array.from([1, 2, 3]).buffer);
        assert.deepEqual(packets[2], Uint8Array.from([4, 5, 6]).buffer);
        await socket.close();
      }),
  );

  await t.step(
    "Socket.IO › message › should close the connection upon invalid format (unknown packet type)",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send("4abc");
        await socket.waitCloseAnsweringPings();
      }),
  );

  await t.step(
    "Socket.IO › message › should close the connection upon invalid format (invalid payload format)",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send("42{}");
        await socket.waitCloseAnsweringPings();
      }),
  );

  await t.step(
    "Socket.IO › message › should close the connection upon invalid format (invalid ack id)",
    () =>
      withServer(async (ctx) => {
        const socket = await ctx.initSocketIOConnection();
        socket.send('42abc["message-with-ack",1,"2",{"3":[false]}]');
        await socket.waitCloseAnsweringPings();
      }),
  );
});
