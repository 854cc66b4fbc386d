/**
 * Engine.IO v4 protocol compliance, case by case.
 *
 * Every step checks what one case of the official Engine.IO v4 test suite
 * (socketio/engine.io-protocol, `test-suite/test-suite.js`) checks; the step
 * name is `<describe path> › <case name>` so it maps to the suite. The server
 * is configured as the suite assumes: path `/engine.io/`, pingInterval 300,
 * pingTimeout 200, maxPayload 1e6, and an echo of every message.
 *
 * Our own code (the suite's is not copied): raw `fetch` and Deno's WebSocket
 * client speak the wire protocol directly.
 */

import assert from "node:assert/strict";
import { Engine, type EngineSocket } from "../src/engine/mod.ts";
import {
  assertHandshake,
  assertRefusedWebSocket,
  PING_INTERVAL,
  PING_TIMEOUT,
  type RawSession,
  rawSession,
  sleep,
} from "./support/raw_protocol.ts";

/** A running engine for one case, with the echo the suite expects. */
interface Ctx extends Omit<RawSession, "closeSockets"> {
  /** `http://127.0.0.1:PORT/engine.io/` */
  url: string;
  /** `ws://127.0.0.1:PORT/engine.io/` */
  wsUrl: string;
  /** Reasons the server gave for closing its sessions, in order. */
  closeReasons: string[];
}

async function withEngine(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const engine = new Engine({
    path: "/engine.io/",
    pingInterval: PING_INTERVAL,
    pingTimeout: PING_TIMEOUT,
    maxHttpBufferSize: 1e6,
  });
  engine.on("connection", (socket: EngineSocket) => {
    socket.on("data", (data: string | Uint8Array) => socket.send(data));
    socket.on("close", (reason: string) => closeReasons.push(reason));
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, engine.handler());
  const base = `127.0.0.1:${server.addr.port}/engine.io/`;
  const session = rawSession(base);
  const closeReasons: string[] = [];
  const ctx: Ctx = {
    closeReasons,
    url: `http://${base}`,
    wsUrl: `ws://${base}`,
    ws: session.ws,
    request: session.request,
    initLongPollingSession: session.initLongPollingSession,
  };
  try {
    await fn(ctx);
  } finally {
    engine.close();
    await session.closeSockets();
    await server.shutdown();
  }
}

Deno.test("Engine.IO v4 protocol compliance (engine.io-protocol test-suite)", async (t) => {
  // ---- handshake › HTTP long-polling
  await t.step(
    "handshake › HTTP long-polling › successfully opens a session",
    () =>
      withEngine(async (ctx) => {
        const { status, body } = await ctx.request("EIO=4&transport=polling");
        assert.equal(status, 200);
        assert.equal(body[0], "0");
        assertHandshake(JSON.parse(body.substring(1)), ["websocket"]);
      }),
  );

  await t.step(
    "handshake › HTTP long-polling › fails with an invalid 'EIO' query parameter",
    () =>
      withEngine(async (ctx) => {
        assert.equal((await ctx.request("transport=polling")).status, 400);
        assert.equal((await ctx.request("EIO=abc&transport=polling")).status, 400);
      }),
  );

  await t.step(
    "handshake › HTTP long-polling › fails with an invalid 'transport' query parameter",
    () =>
      withEngine(async (ctx) => {
        assert.equal((await ctx.request("EIO=4")).status, 400);
        assert.equal((await ctx.request("EIO=4&transport=abc")).status, 400);
      }),
  );

  await t.step(
    "handshake › HTTP long-polling › fails with an invalid request method",
    () =>
      withEngine(async (ctx) => {
        assert.equal(
          (await ctx.request("EIO=4&transport=polling", { method: "POST" })).status,
          400,
        );
        assert.equal((await ctx.request("EIO=4&transport=polling", { method: "PUT" })).status, 400);
      }),
  );

  // ---- handshake › WebSocket
  await t.step(
    "handshake › WebSocket › successfully opens a session",
    () =>
      withEngine(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        const data = await socket.nextText();
        assert.equal(data[0], "0");
        assertHandshake(JSON.parse(data.substring(1)), []);
        await socket.close();
      }),
  );

  await t.step(
    "handshake › WebSocket › fails with an invalid 'EIO' query parameter",
    () =>
      withEngine(async (ctx) => {
        await assertRefusedWebSocket(ctx, "transport=websocket");
        await assertRefusedWebSocket(ctx, "EIO=abc&transport=websocket");
      }),
  );

  await t.step(
    "handshake › WebSocket › fails with an invalid 'transport' query parameter",
    () =>
      withEngine(async (ctx) => {
        await assertRefusedWebSocket(ctx, "EIO=4");
        await assertRefusedWebSocket(ctx, "EIO=4&transport=abc");
      }),
  );

  // ---- message › HTTP long-polling
  for (
    const [name, payload] of [
      ["sends and receives a payload containing one plain text packet", "4hello"],
      [
        "sends and receives a payload containing several plain text packets",
        "4test1\x1e4test2\x1e4test3",
      ],
      [
        "sends and receives a payload containing plain text and binary packets",
        "4hello\x1ebAQIDBA==",
      ],
    ] as const
  ) {
    await t.step(`message › HTTP long-polling › ${name}`, () =>
      withEngine(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const push = await ctx.request(`EIO=4&transport=polling&sid=${sid}`, {
          method: "POST",
          body: payload,
        });
        assert.equal(push.status, 200);
        assert.equal(push.body, "ok");
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 200);
        assert.equal(poll.body, payload);
      }));
  }

  await t.step(
    "message › HTTP long-polling › closes the session upon invalid packet format",
    () =>
      withEngine(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        // the suite expects 400 here and tolerates only an abnormally closed request
        let pushStatus: number | "network error";
        try {
          pushStatus = (await ctx.request(`EIO=4&transport=polling&sid=${sid}`, {
            method: "POST",
            body: "abc",
          })).status;
        } catch {
          pushStatus = "network error";
        }
        assert.ok(pushStatus === 400 || pushStatus === "network error", `POST got ${pushStatus}`);
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 400);
      }),
  );

  await t.step(
    "message › HTTP long-polling › closes the session upon duplicate poll requests",
    () =>
      withEngine(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const [first, second] = await Promise.all([
          ctx.request(`EIO=4&transport=polling&sid=${sid}`),
          sleep(5).then(() => ctx.request(`EIO=4&transport=polling&sid=${sid}&t=burst`)),
        ]);
        assert.equal(first.status, 200);
        assert.equal(first.body, "1");
        // the suite accepts 400 or 500 (the Node.js implementation answers 500)
        assert.ok([400, 500].includes(second.status), `second poll got ${second.status}`);
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 400);
      }),
  );

  // ---- message › WebSocket
  await t.step(
    "message › WebSocket › sends and receives a plain text packet",
    () =>
      withEngine(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.waitOpen();
        await socket.next(); // handshake
        socket.send("4hello");
        assert.equal(await socket.next(), "4hello");
        await socket.close();
      }),
  );

  await t.step(
    "message › WebSocket › sends and receives a binary packet",
    () =>
      withEngine(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // handshake
        socket.send(Uint8Array.from([1, 2, 3, 4]));
        const data = await socket.next();
        assert.ok(data instanceof ArrayBuffer, "expected a binary frame");
        assert.deepEqual(data, Uint8Array.from([1, 2, 3, 4]).buffer);
        await socket.close();
      }),
  );

  await t.step(
    "message › WebSocket › closes the session upon invalid packet format",
    () =>
      withEngine(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // handshake
        socket.send("abc");
        await socket.waitCloseAnsweringPings();
        assert.deepEqual(ctx.closeReasons, ["parse error"]);
      }),
  );

  // ---- heartbeat › HTTP long-polling
  await t.step(
    "heartbeat › HTTP long-polling › sends ping/pong packets",
    () =>
      withEngine(async (ctx) => {
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
    "heartbeat › HTTP long-polling › closes the session upon ping timeout",
    () =>
      withEngine(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        await sleep(PING_INTERVAL + PING_TIMEOUT);
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 400);
      }),
  );

  // ---- heartbeat › WebSocket
  await t.step("heartbeat › WebSocket › sends ping/pong packets", () =>
    withEngine(async (ctx) => {
      const socket = ctx.ws("EIO=4&transport=websocket");
      await socket.next(); // handshake
      for (let i = 0; i < 3; i++) {
        assert.equal(await socket.next(), "2");
        socket.send("3");
      }
      await socket.close();
    }));

  await t.step(
    "heartbeat › WebSocket › closes the session upon ping timeout",
    () =>
      withEngine(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.waitClose();
      }),
  );

  // ---- close
  await t.step(
    "close › HTTP long-polling › forcefully closes the session",
    () =>
      withEngine(async (ctx) => {
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
    "close › WebSocket › forcefully closes the session",
    () =>
      withEngine(async (ctx) => {
        const socket = ctx.ws("EIO=4&transport=websocket");
        await socket.next(); // handshake
        socket.send("1");
        await socket.waitClose();
      }),
  );

  // ---- upgrade
  await t.step(
    "upgrade › successfully upgrades from HTTP long-polling to WebSocket",
    () =>
      withEngine(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const socket = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket.waitOpen();
        socket.send("2probe");
        assert.equal(await socket.next(), "3probe");
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 200);
        assert.equal(poll.body, "6"); // noop ends the pending long-poll cleanly
        socket.send("5");
        socket.send("4hello");
        assert.equal(await socket.next(), "4hello");
        await socket.close();
      }),
  );

  await t.step(
    "upgrade › ignores HTTP requests with same sid after upgrade",
    () =>
      withEngine(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const socket = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket.waitOpen();
        socket.send("2probe");
        socket.send("5");
        const poll = await ctx.request(`EIO=4&transport=polling&sid=${sid}`);
        assert.equal(poll.status, 400);
        socket.send("4hello");
        // the suite listens only from here on, after "3probe" has come
        assert.equal(await socket.next(), "3probe");
        assert.equal(await socket.next(), "4hello");
        await socket.close();
      }),
  );

  await t.step(
    "upgrade › ignores WebSocket connection with same sid after upgrade",
    () =>
      withEngine(async (ctx) => {
        const sid = await ctx.initLongPollingSession();
        const socket = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket.waitOpen();
        socket.send("2probe");
        socket.send("5");
        const socket2 = ctx.ws(`EIO=4&transport=websocket&sid=${sid}`);
        await socket2.waitClose();
        socket.send("4hello");
        assert.equal(await socket.next(), "3probe");
        assert.equal(await socket.next(), "4hello");
        await socket.close();
      }),
  );
});
