/**
 * Benchmark server (a): our Engine.IO engine (src/engine) with npm socket.io
 * bound on top, served by `Deno.serve`. Room-broadcast logic shared by all
 * three benchmark servers: every connection joins room "bench"; a "msg"
 * event is broadcast to the room (without the sender) and acknowledged.
 *
 * Prints `PORT <n>` on stdout once listening. `GET /mem` forces a GC (when
 * started with `--v8-flags=--expose-gc`) and answers `{"rss":…,"clients":…}`;
 * `GET /cpu` answers the process's CPU time `{"user":µs,"system":µs}`.
 *
 * @module
 */

import process from "node:process";
import { Server } from "socket.io";
import { Engine } from "../src/engine/mod.ts";

const engine = new Engine({ transports: ["websocket"] });
const io = new Server({ serveClient: false, transports: ["websocket"] });
io.bind(engine as never);

io.on("connection", (socket) => {
  socket.join("bench");
  socket.on("msg", (payload: unknown, ack?: () => void) => {
    socket.to("bench").emit("msg", payload);
    if (typeof ack === "function") ack();
  });
});

const gc = (globalThis as { gc?: () => void }).gc;
const engineHandler = engine.handler();

function handler(req: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> {
  const pathname = new URL(req.url).pathname;
  if (pathname === "/cpu") return Response.json(process.cpuUsage());
  if (pathname === "/mem") {
    if (gc) {
      gc();
      gc();
    }
    const mem = Deno.memoryUsage();
    return Response.json({
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      heapTotal: mem.heapTotal,
      external: mem.external,
      clients: engine.clientsCount,
      gc: !!gc,
    });
  }
  return engineHandler(req, info);
}

// exit cleanly on SIGTERM so that `--cpu-prof` writes its profile
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`PORT ${port}`),
}, handler);
