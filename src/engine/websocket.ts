/**
 * WebSocket transport on Deno's own `WebSocket` (from `Deno.upgradeWebSocket`).
 *
 * Text packets travel as text frames (`4hello`); binary messages as binary
 * frames without a type prefix.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { encodePacket, type Packet } from "./parser.ts";
import { Transport } from "./transport.ts";

/** Options of {@linkcode WebSocketTransport}. */
export interface WebSocketOptions {
  /** Largest incoming message, bytes; a larger one closes the session (1009). */
  maxHttpBufferSize: number;
}

const encoder = new TextEncoder();

/** The WebSocket transport of one session. */
export class WebSocketTransport extends Transport {
  readonly #ws: WebSocket;
  readonly #maxPayload: number;

  constructor(ws: WebSocket, options: WebSocketOptions) {
    super();
    this.#ws = ws;
    this.#maxPayload = options.maxHttpBufferSize;
    ws.binaryType = "arraybuffer";
    if (ws.readyState === WebSocket.OPEN) {
      this.writable = true;
    } else {
      ws.addEventListener("open", () => {
        this.writable = true;
        this.emit("ready");
      }, { once: true });
    }
    ws.addEventListener("message", (event) => this.#onMessage(event.data));
    ws.addEventListener("close", () => this.onClose(), { once: true });
    ws.addEventListener("error", () => this.onError("websocket error"));
  }

  get name(): "websocket" {
    return "websocket";
  }

  /** The underlying Deno WebSocket. */
  get socket(): WebSocket {
    return this.#ws;
  }

  #onMessage(data: string | ArrayBuffer): void {
    if (this.readyState !== "open") return;
    if (typeof data === "string") {
      if (
        data.length > this.#maxPayload / 3 && encoder.encode(data).byteLength > this.#maxPayload
      ) {
        this.#tooLarge();
        return;
      }
      this.onData(data);
      return;
    }
    if (data.byteLength > this.#maxPayload) {
      this.#tooLarge();
      return;
    }
    this.onData(Buffer.from(data));
  }

  #tooLarge(): void {
    try {
      this.#ws.close(1009, "Max payload size exceeded");
    } catch {
      // already closing
    }
    this.onError("Max payload size exceeded");
  }

  /** Sends each packet as one frame. */
  send(packets: Packet[]): void {
    const ws = this.#ws;
    if (ws.readyState !== WebSocket.OPEN) return;
    try {
      for (let i = 0; i < packets.length; i++) ws.send(encodePacket(packets[i]));
    } catch (error) {
      this.onError("write error", error);
      return;
    }
    this.emit("drain");
  }

  protected doClose(done: () => void): void {
    try {
      this.#ws.close();
    } catch {
      // already closed
    }
    done();
  }
}
