/**
 * HTTP long-polling transport on web-standard `Request`/`Response`.
 *
 * A GET is held open until the session has something to send; a POST carries
 * packets from the client. Packets in one body are joined by `\x1e`, binary
 * data as `b` + base64.
 *
 * @module
 */

import { decodePayload, encodePayload, type Packet } from "./parser.ts";
import { Transport } from "./transport.ts";

/** Options of {@linkcode PollingTransport}. */
export interface PollingOptions {
  /** Largest POST body accepted, bytes; larger ones are answered 413. */
  maxHttpBufferSize: number;
  /** How long a close waits for the next GET to deliver the close packet, ms. */
  closeTimeout?: number;
}

interface PendingPoll {
  resolve: (response: Response) => void;
  headers: Headers;
  signal: AbortSignal;
  onAbort: () => void;
}

/** The long-polling transport of one session. */
export class PollingTransport extends Transport {
  readonly #maxHttpBufferSize: number;
  readonly #closeTimeout: number;
  #poll: PendingPoll | null = null;
  #dataPending = false;
  #shouldClose: (() => void) | null = null;

  constructor(options: PollingOptions) {
    super();
    this.#maxHttpBufferSize = options.maxHttpBufferSize;
    this.#closeTimeout = options.closeTimeout ?? 30_000;
  }

  get name(): "polling" {
    return "polling";
  }

  /**
   * Serves one HTTP request of this session. `headers` (CORS) are added to the
   * response.
   */
  onRequest(req: Request, headers: Headers): Promise<Response> | Response {
    if (req.method === "GET") return this.#onPoll(req, headers);
    if (req.method === "POST") return this.#onData(req, headers);
    return new Response(null, { status: 500, headers });
  }

  #onPoll(req: Request, headers: Headers): Promise<Response> | Response {
    if (this.#poll) {
      this.onError("overlap from client");
      return new Response(null, { status: 400, headers });
    }
    const { promise, resolve } = Promise.withResolvers<Response>();
    const onAbort = () => {
      if (this.#poll?.signal === req.signal) {
        this.#poll = null;
        this.writable = false;
        resolve(new Response(null, { status: 499 }));
        this.onError("poll connection closed prematurely");
      }
    };
    this.#poll = { resolve, headers, signal: req.signal, onAbort };
    req.signal.addEventListener("abort", onAbort, { once: true });
    this.writable = true;
    this.emit("ready");
    if (this.writable && this.#shouldClose) this.send([{ type: "noop" }]);
    return promise;
  }

  async #onData(req: Request, headers: Headers): Promise<Response> {
    if (this.#dataPending) {
      this.onError("data request overlap from client");
      return new Response(null, { status: 400, headers });
    }
    if (req.headers.get("content-type") === "application/octet-stream") {
      this.onError("invalid content");
      return new Response(null, { status: 400, headers });
    }
    const declared = Number(req.headers.get("content-length") ?? "0");
    if (declared > this.#maxHttpBufferSize) {
      await req.body?.cancel().catch(() => {});
      return new Response(null, { status: 413, headers });
    }
    this.#dataPending = true;
    let body: string | null;
    try {
      body = await readLimited(req, this.#maxHttpBufferSize);
    } catch (error) {
      this.#dataPending = false;
      this.onError("data request connection closed prematurely", error);
      return new Response(null, { status: 400, headers });
    }
    this.#dataPending = false;
    if (body === null) return new Response(null, { status: 413, headers });
    for (const packet of decodePayload(body)) {
      if (packet.type === "close") {
        this.onClose();
        break;
      }
      this.onPacket(packet);
      // an undecodable payload closes the session ("parse error") and is refused
      if (packet.type === "error") return new Response(null, { status: 400, headers });
    }
    headers.set("Content-Type", "text/html");
    headers.set("cache-control", "no-store");
    return new Response("ok", { status: 200, headers });
  }

  /** Answers the pending GET with these packets. */
  send(packets: Packet[]): void {
    const poll = this.#poll;
    if (!poll) return;
    this.writable = false;
    if (this.#shouldClose) {
      packets.push({ type: "close" });
      const done = this.#shouldClose;
      this.#shouldClose = null;
      done();
    }
    this.#poll = null;
    poll.signal.removeEventListener("abort", poll.onAbort);
    poll.headers.set("Content-Type", "text/plain; charset=UTF-8");
    poll.headers.set("cache-control", "no-store");
    poll.resolve(new Response(encodePayload(packets), { status: 200, headers: poll.headers }));
    this.emit("drain");
  }

  protected doClose(done: () => void): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onClose = () => {
      clearTimeout(timer);
      done();
      this.onClose();
    };
    if (this.writable) {
      this.send([{ type: "close" }]);
      onClose();
    } else if (this.discarded) {
      onClose();
    } else {
      this.#shouldClose = onClose;
      timer = setTimeout(onClose, this.#closeTimeout);
    }
  }

  /**
   * Answers a poll still held when the session moved to WebSocket with 400,
   * as any later poll of the session is answered: it belongs to a client that
   * kept polling after its upgrade packet, and can no longer carry packets.
   */
  refusePendingPoll(): void {
    const poll = this.#poll;
    if (!poll) return;
    this.#poll = null;
    this.writable = false;
    poll.signal.removeEventListener("abort", poll.onAbort);
    poll.headers.set("Content-Type", "application/json");
    const body = JSON.stringify({ code: 3, message: "Bad request" });
    poll.resolve(new Response(body, { status: 400, headers: poll.headers }));
  }

  protected override onClose(): void {
    if (this.writable) this.send([{ type: "noop" }]);
    super.onClose();
  }
}

/** Reads a text body of at most `limit` bytes; null when it is larger. */
async function readLimited(req: Request, limit: number): Promise<string | null> {
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return decoder.decode(chunks[0]);
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return decoder.decode(all);
}

const decoder = new TextDecoder();
