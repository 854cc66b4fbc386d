/**
 * Engine-level memory: sessions that end badly leave nothing behind. Our
 * engine with socket.io bound and no application handlers; clients that
 * open sessions and go away without a goodbye: abandoned polling sessions
 * (handshake, then nothing; or connected to socket.io, then nothing),
 * half-done upgrades (probe answered, no upgrade packet) and transport drops
 * (a TCP RST without a close frame). Afterwards engine.clients, socket.io's
 * namespace sockets and pre-connect sockets, the adapter's rooms and socket
 * ids are back at their baseline (empty).
 */

import assert from "node:assert/strict";
import { Server } from "socket.io";
import { Engine } from "../src/engine/mod.ts";
import { eventually, rawSession, TcpWebSocket } from "./support/raw_protocol.ts";

const EACH = 100;

Deno.test("abandoned, half-upgraded and reset sessions leave nothing behind", async () => {
  const engine = new Engine({ pingInterval: 400, pingTimeout: 400, upgradeTimeout: 300 });
  const io = new Server({ connectTimeout: 60_000 });
  io.bind(engine as never);
  let opened = 0;
  let connected = 0;
  engine.on("connection", () => opened++);
  io.on("connection", () => connected++);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, engine.handler());
  const port = server.addr.port;
  const raw = rawSession(`127.0.0.1:${port}/socket.io/`);
  const nsp = io.of("/");
  const preConnect = (nsp as unknown as { _preConnectSockets: Map<string, unknown> })
    ._preConnectSockets;
  const tcp: TcpWebSocket[] = [];
  try {
    // 1. handshake, then nothing
    for (let i = 0; i < EACH; i++) await raw.initLongPollingSession();
    // 2. connected to socket.io over polling, then nothing
    for (let i = 0; i < EACH; i++) {
      const sid = await raw.initLongPollingSession();
      const post = await raw.request(`EIO=4&transport=polling&sid=${sid}`, {
        method: "POST",
        body: "40",
      });
      assert.equal(post.status, 200);
    }
    // 3. half-done upgrades: probe answered, no "5"
    for (let i = 0; i < EACH; i++) {
      const sid = await raw.initLongPollingSession();
      await raw.request(`EIO=4&transport=polling&sid=${sid}`, { method: "POST", body: "40" });
      const socket = raw.ws(`EIO=4&transport=websocket&sid=${sid}`);
      await socket.waitOpen();
      socket.send("2probe");
      assert.equal(await socket.next(), "3probe");
    }
    // 4. WebSocket sessions connected to socket.io, then a TCP RST
    for (let i = 0; i < EACH; i++) {
      const client = await TcpWebSocket.open(port, "/socket.io/?EIO=4&transport=websocket");
      client.sendText("40");
      tcp.push(client);
    }
    await eventually(() => connected === 3 * EACH, "the socket.io sockets connected");
    assert.equal(opened, 4 * EACH);
    for (const client of tcp) client.reset();

    await eventually(() => engine.clients.size === 0, "every session closed");
    await eventually(() => nsp.sockets.size === 0, "every socket.io socket gone");
    assert.equal(preConnect.size, 0);
    assert.equal(nsp.adapter.rooms.size, 0);
    assert.equal(nsp.adapter.sids.size, 0);
    assert.equal(io.engine.clientsCount, 0);
  } finally {
    for (const client of tcp) client.destroy();
    await raw.closeSockets();
    await io.close();
    await server.shutdown();
  }
});
