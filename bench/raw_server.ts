/**
 * Benchmark server (c): a bare `Deno.upgradeWebSocket` broadcast server, the
 * floor under any Socket.IO server on Deno. It speaks just enough of the
 * Socket.IO wire format that its frames have the same size as (a) and (b):
 * the sender sends `42<id>["msg",<payload>]`, every other connection gets
 * `42["msg",<payload>]`, and the sender gets the ack `43<id>[]`.
 *
 * Prints `PORT <n>` on stdout once listening; `GET /mem` and `GET /cpu` as in
 * deno_server.ts.
 *
 * @module
 */

import process from "node:process";

const sockets = new Set<WebSocket>();

function onMessage(sender: WebSocket, data: string): void {
  const bracket = data.indexOf("[");
  if (bracket < 2 || !data.startsWith("42")) return;
  const id = data.slice(2, bracket);
  const frame = "42" + data.slice(bracket);
  for (const ws of sockets) {
    if (ws !== sender && ws.readyState === WebSocket.OPEN) ws.send(frame);
  }
  sender.send("43" + id + "[]");
}

const gc = (globalThis as { gc?: () => void }).gc;

function handler(req: Request): Response {
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
      clients: sockets.size,
      gc: !!gc,
    });
  }
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response("Not Found", { status: 404 });
  }
  const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
  socket.addEventListener("open", () => sockets.add(socket));
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") onMessage(socket, event.data);
  });
  socket.addEventListener("close", () => sockets.delete(socket));
  return response;
}

Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`PORT ${port}`),
}, handler);
