/**
 * What the two transports (long-polling and WebSocket) share, and the request
 * view that Engine.IO and socket.io keep of the HTTP request that opened a
 * session.
 *
 * @module
 */

import { EventEmitter } from "node:events";
import { decodePacket, type Packet, type PacketData } from "./parser.ts";

/**
 * The request that opened a session, in the shape socket.io reads it
 * (`socket.handshake.headers`, `.url`, `.query`, `.address`, `.secure`).
 */
export interface EngineRequest {
  method: string;
  /** Path and query string, e.g. `/socket.io/?EIO=4&transport=polling`. */
  url: string;
  /** Lower-case header names, as in Node's `IncomingMessage#headers`. */
  headers: Record<string, string>;
  /** Parsed query string (socket.io reads `_query`). */
  _query: Record<string, string>;
  /** socket.io reads `connection.encrypted` for `handshake.secure`. */
  connection: { encrypted: boolean; remoteAddress: string };
  /** The peer's IP address. */
  remoteAddress: string;
}

/** Builds an {@linkcode EngineRequest} from a web `Request` and the peer address. */
export function toEngineRequest(req: Request, remoteAddress: string): EngineRequest {
  const url = new URL(req.url);
  const headers: Record<string, string> = {};
  req.headers.forEach((value, key) => {
    headers[key] = value;
  });
  const query: Record<string, string> = {};
  url.searchParams.forEach((value, key) => {
    query[key] = value;
  });
  return {
    method: req.method,
    url: url.pathname + url.search,
    headers,
    _query: query,
    connection: { encrypted: url.protocol === "https:", remoteAddress },
    remoteAddress,
  };
}

/** State of a transport. */
export type TransportState = "open" | "closing" | "closed";

/** An error raised by a transport (socket.io logs `type` and `description`). */
export class TransportError extends Error {
  readonly type = "TransportError";
  readonly description: unknown;
  constructor(message: string, description?: unknown) {
    super(message);
    this.name = "TransportError";
    this.description = description;
  }
}

/**
 * Base of the transports. Emits `packet`, `ready` (may write now), `drain`
 * (a write went out), `error` and `close`.
 */
export abstract class Transport extends EventEmitter {
  /** Whether `send` may be called now (socket.io drops volatile packets otherwise). */
  writable = false;
  /**
   * Whether the session should hold its packets back for now although the
   * transport is writable (a WebSocket whose last frames are not written
   * yet); `ready` is emitted when that ends.
   */
  holding = false;
  /** Set when the session moved to another transport. */
  discarded = false;
  /** Session id, set by the socket. */
  sid = "";
  /** Lifecycle state. */
  readyState: TransportState = "open";

  /** `"polling"` or `"websocket"`. */
  abstract get name(): "polling" | "websocket";

  /** Bytes handed to the runtime that have not been written to the client yet. */
  get bufferedAmount(): number {
    return 0;
  }

  /** Sends packets; only when {@linkcode Transport.writable}. */
  abstract send(packets: Packet[]): void;

  /** Transport-specific close. */
  protected abstract doClose(done: () => void): void;

  /** Marks the transport as replaced by an upgrade. */
  discard(): void {
    this.discarded = true;
  }

  /** Closes the transport; `done` runs once it is closed. */
  close(done?: () => void): void {
    if (this.readyState === "closed" || this.readyState === "closing") return;
    this.readyState = "closing";
    this.doClose(done ?? noop);
  }

  /** Reports an error to the session (which closes with "transport error"). */
  protected onError(message: string, description?: unknown): void {
    if (this.listenerCount("error") > 0) {
      this.emit("error", new TransportError(message, description));
    }
  }

  /** Hands one decoded packet to the session. */
  protected onPacket(packet: Packet): void {
    this.emit("packet", packet);
  }

  /** Decodes one frame of data and hands it on. */
  protected onData(data: string | PacketData): void {
    this.onPacket(decodePacket(data));
  }

  /** Marks the transport closed and tells the session. */
  protected onClose(): void {
    this.readyState = "closed";
    this.emit("close");
  }
}

function noop(): void {}
