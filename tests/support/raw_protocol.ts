/**
 * Test helper: raw Engine.IO / Socket.IO wire-protocol clients for the
 * compliance tests (tests/compliance_engineio_test.ts,
 * tests/compliance_socketio_test.ts). Raw `fetch` and Deno's WebSocket client
 * speak the protocol directly; no socket.io-client.
 *
 * The timing constants are the ones the official protocol test suites assume.
 *
 * @module
 */

import assert from "node:assert/strict";

/** The server's ping interval the protocol suites assume (ms). */
export const PING_INTERVAL = 300;
/** The server's ping timeout the protocol suites assume (ms). */
export const PING_TIMEOUT = 200;
/** Guard against a hang when an expected frame never comes (not a timing assert). */
export const WAIT_LIMIT = 4_000;

/** A raw WebSocket client that queues frames so none is missed between awaits. */
export class RawSocket {
  /** The underlying WebSocket (`binaryType` is `"arraybuffer"`). */
  readonly ws: WebSocket;
  /** Whether the WebSocket ever opened (a refused handshake never does). */
  opened = false;
  /** Settles with the close event once the WebSocket closed. */
  readonly closed: Promise<CloseEvent>;
  #queue: (string | ArrayBuffer)[] = [];
  #waiters: PromiseWithResolvers<string | ArrayBuffer>[] = [];
  #isClosed = false;

  /** Opens a WebSocket to `url` (`ws://…`). */
  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.addEventListener("open", () => {
      this.opened = true;
    });
    this.ws.addEventListener("message", (event: MessageEvent) => {
      const waiter = this.#waiters.shift();
      if (waiter) waiter.resolve(event.data);
      else this.#queue.push(event.data);
    });
    // a refused handshake reports an error, then a close
    this.ws.addEventListener("error", () => {});
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener("close", (event) => {
        this.#isClosed = true;
        for (const waiter of this.#waiters.splice(0)) {
          waiter.reject(new Error("socket closed, no more frames"));
        }
        resolve(event);
      }, { once: true });
    });
  }

  /** Resolves once the WebSocket is open. */
  waitOpen(): Promise<void> {
    if (this.opened) return Promise.resolve();
    return guard(
      new Promise((resolve, reject) => {
        this.ws.addEventListener("open", () => resolve(), { once: true });
        this.ws.addEventListener("close", () => reject(new Error("closed before open")), {
          once: true,
        });
      }),
      "open",
    );
  }

  /** The next frame received (text or ArrayBuffer). */
  next(): Promise<string | ArrayBuffer> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#isClosed) return Promise.reject(new Error("socket closed, no more frames"));
    const waiter = Promise.withResolvers<string | ArrayBuffer>();
    this.#waiters.push(waiter);
    return guard(waiter.promise, "message");
  }

  /** The next frame, which must be text. */
  async nextText(): Promise<string> {
    const data = await this.next();
    assert.equal(typeof data, "string", "expected a text frame");
    return data as string;
  }

  /** The next `count` frames, skipping server pings (`2`), as the suite does. */
  async nextPackets(count: number): Promise<(string | ArrayBuffer)[]> {
    const packets: (string | ArrayBuffer)[] = [];
    while (packets.length < count) {
      const data = await this.next();
      if (data !== "2") packets.push(data);
    }
    return packets;
  }

  /** Resolves when the server (or a refused handshake) closed the socket. */
  waitClose(): Promise<CloseEvent> {
    return guard(this.closed, "close");
  }

  /**
   * Waits for the server to close the socket while answering its pings, so
   * that a heartbeat timeout cannot be what closes it.
   */
  async waitCloseAnsweringPings(): Promise<CloseEvent> {
    while (true) {
      const frame = await this.next().catch(() => null);
      if (frame === null) return await this.waitClose();
      if (frame === "2") this.send("3");
    }
  }

  /** Sends one frame (text or binary). */
  send(data: string | Uint8Array): void {
    this.ws.send(data);
  }

  /** Closes from our side and waits for the close to complete. */
  async close(): Promise<void> {
    if (!this.#isClosed) this.ws.close();
    await this.closed;
  }
}

/** Rejects when `promise` did not settle within {@linkcode WAIT_LIMIT}. */
export function guard<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT_LIMIT} ms`)), WAIT_LIMIT);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Raw requests and WebSockets on one engine path, tracked for clean-up. */
export interface RawSession {
  /** Opens a raw WebSocket on the engine path with `query` (closed by `closeSockets`). */
  ws(query: string): RawSocket;
  /** A request (GET unless `init` says otherwise) on the engine path with `query`. */
  request(query: string, init?: RequestInit): Promise<{ status: number; body: string }>;
  /** Opens a long-polling session and returns its id. */
  initLongPollingSession(): Promise<string>;
  /** Closes every WebSocket opened through `ws` and waits for the closes. */
  closeSockets(): Promise<void>;
}

/**
 * Raw access to an engine served at `base` (`127.0.0.1:PORT/path/`, no
 * scheme): HTTP requests over `http://`, WebSockets over `ws://`.
 */
export function rawSession(base: string): RawSession {
  const sockets: RawSocket[] = [];
  const session: RawSession = {
    ws(query) {
      const socket = new RawSocket(`ws://${base}?${query}`);
      sockets.push(socket);
      return socket;
    },
    async request(query, init) {
      const res = await fetch(`http://${base}?${query}`, init);
      return { status: res.status, body: await res.text() };
    },
    async initLongPollingSession() {
      const { status, body } = await session.request("EIO=4&transport=polling");
      assert.equal(status, 200);
      return JSON.parse(body.substring(1)).sid;
    },
    async closeSockets() {
      await Promise.all(sockets.map((s) => s.close()));
    },
  };
  return session;
}

/**
 * Asserts an Engine.IO handshake object: exactly its five keys, a string
 * `sid`, the given `upgrades` and the suites' ping/payload settings.
 */
export function assertHandshake(value: Record<string, unknown>, upgrades: string[]): void {
  assert.deepEqual(Object.keys(value).sort(), [
    "maxPayload",
    "pingInterval",
    "pingTimeout",
    "sid",
    "upgrades",
  ]);
  assert.equal(typeof value.sid, "string");
  assert.deepEqual(value.upgrades, upgrades);
  assert.equal(value.pingInterval, PING_INTERVAL);
  assert.equal(value.pingTimeout, PING_TIMEOUT);
  assert.equal(value.maxPayload, 1000000);
}

/** A WebSocket handshake the server refuses: the socket never opens, then closes. */
export async function assertRefusedWebSocket(
  session: Pick<RawSession, "ws">,
  query: string,
): Promise<void> {
  const socket = session.ws(query);
  await socket.waitClose();
  assert.equal(socket.opened, false, `WebSocket with "${query}" should have been refused`);
}

/**
 * A WebSocket client on a bare TCP connection (`node:net`), for what a
 * browser's WebSocket cannot do: stop reading while the server writes, or
 * drop the connection with a TCP RST and no close frame
 * (`resetAndDestroy()`, SO_LINGER 0). It performs the HTTP upgrade and sends
 * masked text frames; it never parses what the server sends.
 */
export class TcpWebSocket {
  readonly #socket: import("node:net").Socket;
  /** Bytes received so far (counted only while reading). */
  received = 0;
  /** Settles when the server closed or reset the connection. */
  readonly ended: Promise<void>;
  #head = "";
  #upgraded = Promise.withResolvers<string>();

  private constructor(socket: import("node:net").Socket) {
    this.#socket = socket;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.ended = promise;
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
    socket.on("data", (chunk: Uint8Array) => {
      this.received += chunk.byteLength;
      if (this.#head.includes("\r\n\r\n")) return;
      this.#head += new TextDecoder().decode(chunk);
      const end = this.#head.indexOf("\r\n\r\n");
      if (end >= 0) this.#upgraded.resolve(this.#head.slice(0, end));
    });
  }

  /** Connects to `127.0.0.1:port` and upgrades `path` (with query); resolves once upgraded. */
  static async open(port: number, path: string, headers: Record<string, string> = {}) {
    const net = await import("node:net");
    const socket = net.connect(port, "127.0.0.1");
    const client = new TcpWebSocket(socket);
    await guard(new Promise((resolve) => socket.once("connect", resolve)), "TCP connect");
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        `${extra}\r\n`,
    );
    const head = await guard(client.#upgraded.promise, "WebSocket upgrade");
    assert.match(head, /^HTTP\/1\.1 101/, head.split("\r\n")[0]);
    return client;
  }

  /** Sends one masked text frame. */
  sendText(text: string): void {
    const payload = new TextEncoder().encode(text);
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const length = payload.byteLength;
    const header = length < 126
      ? [0x81, 0x80 | length]
      : [0x81, 0x80 | 126, length >> 8, length & 0xff];
    const frame = new Uint8Array(header.length + 4 + length);
    frame.set(header);
    frame.set(mask, header.length);
    for (let i = 0; i < length; i++) frame[header.length + 4 + i] = payload[i] ^ mask[i & 3];
    this.#socket.write(frame);
  }

  /** Stops reading: the kernel buffers fill and the server's writes back up. */
  pause(): void {
    this.#socket.pause();
  }

  /** Drops the connection with a TCP RST (no close frame, no FIN). */
  reset(): void {
    this.#socket.resetAndDestroy();
  }

  /** Destroys the connection (clean-up). */
  destroy(): void {
    this.#socket.destroy();
  }
}

/** Polls `check` every 20 ms until it holds; rejects after {@linkcode WAIT_LIMIT}. */
export async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + WAIT_LIMIT;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not ${what} within ${WAIT_LIMIT} ms`);
    await sleep(20);
  }
}
