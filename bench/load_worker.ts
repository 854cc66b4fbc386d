/**
 * Receiver side of the load generator, run as a Deno `Worker` by load.ts so
 * that the receiving clients get their own thread (and CPU core) apart from
 * the sender.
 *
 * Messages in: `{ cmd: "open", kind, url, count, concurrency }`,
 * `{ cmd: "expect", n }` (count receptions from now on; answer `reached`
 * when `n` arrived), `{ cmd: "report" }`, `{ cmd: "close" }`.
 * Messages out: `opened`, `armed`, `reached`/`report` (`{ count, first, last }`),
 * `closed`, `error`.
 *
 * @module
 */

import { io, type Socket, WebSocket as WebSocketTransport } from "socket.io-client";

/** Which kind of server the clients talk to. */
export type ClientKind = "sio" | "raw";

interface OpenCommand {
  cmd: "open";
  kind: ClientKind;
  url: string;
  count: number;
  concurrency: number;
}

type Command = OpenCommand | { cmd: "expect"; n: number } | { cmd: "report" } | {
  cmd: "close";
};

interface Closable {
  close(): void;
}

const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<Command>) => void) | null;
  close(): void;
};

const clients: Closable[] = [];
let count = 0;
let expected = Infinity;
let first = 0;
let last = 0;

function now(): number {
  return performance.timeOrigin + performance.now();
}

function onReception(): void {
  const t = now();
  if (count === 0) first = t;
  last = t;
  count++;
  if (count === expected) scope.postMessage({ type: "reached", count, first, last });
}

function openSio(url: string): Promise<Closable> {
  return new Promise((resolve, reject) => {
    const socket: Socket = io(url, {
      transports: [WebSocketTransport],
      forceNew: true,
      reconnection: false,
      timeout: 30_000,
    });
    socket.on("msg", onReception);
    socket.once("connect", () => resolve({ close: () => socket.disconnect() }));
    socket.once("connect_error", (error) => {
      socket.disconnect();
      reject(error);
    });
  });
}

function openRaw(url: string): Promise<Closable> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onmessage = (event) => {
      if (typeof event.data === "string" && event.data.startsWith("42")) onReception();
    };
    ws.onopen = () => resolve({ close: () => ws.close() });
    ws.onerror = () => reject(new Error("websocket error"));
  });
}

async function openAll(command: OpenCommand): Promise<void> {
  const open = command.kind === "sio" ? openSio : openRaw;
  let next = 0;
  async function lane(): Promise<void> {
    while (next < command.count) {
      next++;
      clients.push(await open(command.url));
    }
  }
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.min(command.concurrency, command.count); i++) lanes.push(lane());
  await Promise.all(lanes);
}

scope.onmessage = async (event) => {
  const command = event.data;
  try {
    switch (command.cmd) {
      case "open":
        await openAll(command);
        scope.postMessage({ type: "opened", clients: clients.length });
        return;
      case "expect":
        count = 0;
        first = 0;
        last = 0;
        expected = command.n;
        scope.postMessage({ type: "armed" });
        return;
      case "report":
        scope.postMessage({ type: "report", count, first, last });
        return;
      case "close":
        for (const client of clients) client.close();
        clients.length = 0;
        scope.postMessage({ type: "closed" });
        return;
    }
  } catch (error) {
    scope.postMessage({ type: "error", message: String(error) });
  }
};
