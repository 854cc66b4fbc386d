// Benchmark server (d): npm socket.io 4.8.4 on the official @socket.io/bun-engine,
// run by Bun (installed from npm into bench/node_modules: `npm install --prefix bench`).
// Same room-broadcast logic as deno_server.ts. Prints `PORT <n>` once listening;
// `GET /mem` forces a GC and answers {"rss":…,"clients":…}; `GET /cpu` answers
// process.cpuUsage().
import { Server } from "socket.io";

// resolved by Bun from bench/node_modules; a computed specifier keeps `deno check` from resolving it
const BUN_ENGINE = "@socket.io/bun-engine";
const { Server: Engine } = await import(BUN_ENGINE);

const io = new Server({ serveClient: false, transports: ["websocket"] });
const engine = new Engine({ path: "/socket.io/", transports: ["websocket"] });
io.bind(engine);

io.on("connection", (socket) => {
  socket.join("bench");
  socket.on("msg", (payload, ack) => {
    socket.to("bench").emit("msg", payload);
    if (typeof ack === "function") ack();
  });
});

const { fetch: engineFetch, websocket } = engine.handler();

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 0,
  websocket,
  fetch(req, srv) {
    const { pathname } = new URL(req.url);
    if (pathname === "/cpu") return Response.json(process.cpuUsage());
    if (pathname === "/mem") {
      Bun.gc(true);
      Bun.gc(true);
      const mem = process.memoryUsage();
      return Response.json({
        rss: mem.rss,
        heapUsed: mem.heapUsed,
        heapTotal: mem.heapTotal,
        external: mem.external,
        clients: engine.clients.size,
        gc: true,
      });
    }
    return engineFetch(req, srv);
  },
});

process.on("SIGTERM", () => process.exit(0));
console.log(`PORT ${server.port}`);
