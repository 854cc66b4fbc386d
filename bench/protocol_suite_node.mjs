// The Node reference for bench/protocol_suites.ts: npm engine.io / socket.io
// configured exactly as the official protocol test suites' READMEs show.
// engine.io is the copy socket.io itself depends on (resolved from socket.io's
// own location in the node_modules that `deno install` lays out).
//   node bench/protocol_suite_node.mjs engine.io|socket.io [port]
// Prints `PORT <n>` once listening.
import { createRequire } from "node:module";
import { createServer } from "node:http";

const suite = process.argv[2];
const port = Number(process.argv[3] ?? 3000);
const requireFromHere = createRequire(import.meta.url);
const socketIoEntry = requireFromHere.resolve("socket.io");
const requireFromSocketIo = createRequire(socketIoEntry);

if (suite === "engine.io") {
  const { attach } = requireFromSocketIo("engine.io");
  const httpServer = createServer();
  const server = attach(httpServer, {
    pingInterval: 300,
    pingTimeout: 200,
    maxPayload: 1e6,
    cors: { origin: "*" },
  });
  server.on("connection", (socket) => {
    socket.on("data", (...args) => {
      socket.send(...args);
    });
  });
  httpServer.listen(port, "127.0.0.1", () => console.log(`PORT ${port}`));
} else if (suite === "socket.io") {
  const { Server } = requireFromHere("socket.io");
  const httpServer = createServer();
  const io = new Server(httpServer, {
    pingInterval: 300,
    pingTimeout: 200,
    maxPayload: 1000000,
    connectTimeout: 1000,
    cors: { origin: "*" },
  });
  io.on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);
    socket.on("message", (...args) => {
      socket.emit.apply(socket, ["message-back", ...args]);
    });
    socket.on("message-with-ack", (...args) => {
      const ack = args.pop();
      ack(...args);
    });
  });
  io.of("/custom").on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);
  });
  httpServer.listen(port, "127.0.0.1", () => console.log(`PORT ${port}`));
} else {
  console.error("usage: protocol_suite_node.mjs engine.io|socket.io [port]");
  process.exit(2);
}
