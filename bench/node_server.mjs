// Benchmark server (b): npm socket.io 4.8.4 on Node's `http` module, the
// stack most users run today. Same room-broadcast logic as deno_server.ts.
// Prints `PORT <n>` once listening; `GET /mem` forces a GC (node --expose-gc)
// and answers {"rss":…,"clients":…}; `GET /cpu` answers process.cpuUsage().
import { createServer } from "node:http";
import { Server } from "socket.io";

const httpServer = createServer((req, res) => {
  if (req.url === "/cpu") {
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify(process.cpuUsage()));
    return;
  }
  if (req.url === "/mem") {
    if (globalThis.gc) {
      globalThis.gc();
      globalThis.gc();
    }
    res.setHeader("Content-Type", "application/json");
    const mem = process.memoryUsage();
    res.end(JSON.stringify({
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      heapTotal: mem.heapTotal,
      external: mem.external,
      clients: io.engine.clientsCount,
      gc: !!globalThis.gc,
    }));
    return;
  }
  res.statusCode = 404;
  res.end("Not Found");
});

const io = new Server(httpServer, { serveClient: false, transports: ["websocket"] });

io.on("connection", (socket) => {
  socket.join("bench");
  socket.on("msg", (payload, ack) => {
    socket.to("bench").emit("msg", payload);
    if (typeof ack === "function") ack();
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  console.log(`PORT ${httpServer.address().port}`);
});
