/**
 * Servers configured as the official protocol test suites' READMEs ask
 * (socketio/engine.io-protocol and socketio/socket.io-protocol,
 * `test-suite/`), on our engine: used by bench/protocol_suites.ts to run
 * those suites, unchanged, against us and against the Node reference in the
 * same run.
 *
 * ```sh
 * deno run --allow-net=0.0.0.0,127.0.0.1 --allow-env bench/protocol_suite_server.ts engine.io 3000
 * deno run --allow-net=0.0.0.0,127.0.0.1 --allow-env bench/protocol_suite_server.ts socket.io 3000
 * ```
 *
 * `engine.io`: path `/engine.io/`, pingInterval 300, pingTimeout 200,
 * maxPayload 1e6, CORS `*`, every message echoed. `socket.io`: path
 * `/socket.io/`, the same heartbeat, connectTimeout 1000; on connection it
 * emits `auth` with the handshake auth, echoes `message` as `message-back`
 * and answers `message-with-ack` through its ack; `/custom` emits `auth`.
 * Prints `PORT <n>` once listening; exits on SIGTERM.
 *
 * @module
 */

import { Server, type Socket } from "socket.io";
import { Engine, type EngineSocket } from "../src/engine/mod.ts";

/** Which suite the server is configured for. */
export type SuiteName = "engine.io" | "socket.io";

/** Builds the engine (and, for `socket.io`, the bound socket.io server) of one suite. */
export function suiteEngine(suite: SuiteName): Engine {
  const engine = new Engine({
    path: suite === "engine.io" ? "/engine.io/" : "/socket.io/",
    pingInterval: 300,
    pingTimeout: 200,
    maxHttpBufferSize: 1e6,
    cors: { origin: "*" },
  });
  if (suite === "engine.io") {
    engine.on("connection", (socket: EngineSocket) => {
      socket.on("data", (data: string | Uint8Array) => socket.send(data));
    });
    return engine;
  }
  const io = new Server({ connectTimeout: 1000 });
  io.bind(engine as never);
  io.on("connection", (socket: Socket) => {
    socket.emit("auth", socket.handshake.auth);
    socket.on("message", (...args: unknown[]) => {
      socket.emit("message-back", ...args);
    });
    socket.on("message-with-ack", (...args: unknown[]) => {
      const ack = args.pop() as (...reply: unknown[]) => void;
      ack(...args);
    });
  });
  io.of("/custom").on("connection", (socket: Socket) => {
    socket.emit("auth", socket.handshake.auth);
  });
  return engine;
}

if (import.meta.main) {
  const suite = Deno.args[0];
  if (suite !== "engine.io" && suite !== "socket.io") {
    console.error("usage: protocol_suite_server.ts engine.io|socket.io [port]");
    Deno.exit(2);
  }
  const engine = suiteEngine(suite);
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(Deno.args[1] ?? 3000),
    onListen: ({ port }) => console.log(`PORT ${port}`),
  }, engine.handler());
}
