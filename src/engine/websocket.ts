/**
 * WebSocket transport on Deno's own `WebSocket` (from `Deno.upgradeWebSocket`).
 *
 * Text packets travel as text frames (`4hello`); binary messages as binary
 * frames without a type prefix.
 *
 * Writes are flow-controlled as in the reference server, which writes no
 * frame before the last one was written: after a send that Deno has not
 * written out yet (`bufferedAmount > 0`), the transport is `holding` and
 * further packets wait in the session's write buffer (bounded by
 * `maxBufferedBytes`), to go out together once the frames before them are
 * written. (Unlike the reference, the transport stays `writable` meanwhile,
 * so socket.io does not drop volatile packets of a burst.) A client that stops
 * reading therefore fills the session's buffer, which closes it, instead of
 * growing Deno's without bound.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import { encodePacket, type Packet, utf8LengthExceeds } from "./parser.ts";
import { Transport } from "./transport.ts";

/** Options of {@linkcode WebSocketTransport}. */
export interface WebSocketOptions {
  /** Largest incoming message, bytes; a larger one closes the session (1009). */
  maxHttpBufferSize: number;
}

/** The WebSocket transport of one session. */
export class WebSocketTransport extends Transport {
  readonly #ws: WebSocket;
  readonly #maxPayload: number;
  /** bufferedAmount when last read (reading it is a call into the runtime). */
  #buffered = 0;
  /** When this transport started waiting for its frames to be written. */
  #waitingSince = 0;

  constructor(ws: WebSocket, options: WebSocketOptions) {
    super();
    this.#ws = ws;
    this.#maxPayload = options.maxHttpBufferSize;
    ws.binaryType = "arraybuffer";
    if (ws.readyState === WebSocket.OPEN) this.writable = true;
    else ws.addEventListener("open", this, { once: true });
    // the transport is its own listener (handleEvent): no closures per connection
    ws.addEventListener("message", this);
    ws.addEventListener("close", this, { once: true });
    ws.addEventListener("error", this);
  }

  /** The WebSocket's events (the transport listens as an `EventListenerObject`). */
  handleEvent(event: Event): void {
    switch (event.type) {
      case "message":
        this.#onMessage((event as MessageEvent).data);
        return;
      case "open":
        this.writable = true;
        this.emit("ready");
        return;
      case "close":
        this.onClose();
        return;
      case "error":
        this.onError("websocket error");
        return;
    }
  }

  get name(): "websocket" {
    return "websocket";
  }

  /** The underlying Deno WebSocket. */
  get socket(): WebSocket {
    return this.#ws;
  }

  /** Bytes sent but not yet written to the client, as last read from Deno. */
  override get bufferedAmount(): number {
    return this.#buffered;
  }

  #onMessage(data: string | ArrayBuffer): void {
    if (this.readyState !== "open") return;
    if (typeof data === "string") {
      // counted in place: no copy of a message that may be far over the limit
      if (utf8LengthExceeds(data, this.#maxPayload)) {
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
      for (let i = 0; i < packets.length; i++) ws.send(frameOf(packets[i]));
    } catch (error) {
      this.onError("write error", error);
      return;
    }
    this.emit("drain");
    // Deno writes the frames on a later turn of the event loop, so right after `send` they are
    // never written yet: not asked (a call into the runtime per flush), counted until the watcher
    // reads the real figure
    for (let i = 0; i < packets.length; i++) this.#buffered += packetLength(packets[i]);
    this.#waitingSince = performance.now();
    this.holding = true;
    watch(this);
  }

  /**
   * Called by the watcher: whether the frames were written. Then the
   * transport stops holding (a new packet goes out at once, with any held
   * before it), and says `ready` (the held packets go out) once
   * {@linkcode WRITE_SPACING_MS} have passed since the last send.
   */
  checkWritten(): boolean {
    if (this.readyState !== "open") return true;
    this.#buffered = this.#ws.readyState === WebSocket.OPEN ? this.#ws.bufferedAmount : 0;
    if (this.#buffered > 0) return false;
    this.holding = false;
    pace(this);
    return true;
  }

  /** Called by the pacer: the spacing after the last send has passed. */
  spaced(): void {
    if (this.readyState === "open" && !this.holding) this.emit("ready");
  }

  /** When the last frames were handed to Deno (performance.now() time). */
  get lastSendAt(): number {
    return this.#waitingSince;
  }

  /** How long this transport has been waiting for its frames to be written, ms. */
  waitingFor(now: number): number {
    return now - this.#waitingSince;
  }

  protected doClose(done: () => void): void {
    try {
      this.#ws.close();
    } catch {
      // already closed
    }
    done();
  }

  protected override onClose(): void {
    unwatch(this);
    paced.delete(this);
    super.onClose();
  }
}

// A broadcast hands every member's session the same encoded string: its frame
// ("4" + data) is made once and reused, instead of one concatenation (and one
// flattening copy inside the runtime) per member.
let lastData: string | undefined;
let lastFrame = "";

/** The frame of a packet; a text message equal to the last one reuses its frame. */
function frameOf(packet: Packet): string | Uint8Array {
  const data = packet.data;
  if (packet.type !== "message" || typeof data !== "string") return encodePacket(packet);
  if (data !== lastData) {
    lastData = data;
    lastFrame = encodePacket(packet) as string;
  }
  return lastFrame;
}

/**
 * Least time between two writes of held packets to one client, ms. Packets
 * queued while the last frames were being written go out this long after
 * that write (or at once with the next packet, if one comes sooner), not on
 * the next turn of the event loop: a client reading frames one TCP read at a
 * time then sees a burst as separate reads. Deno writes a frame on the
 * event-loop turn after `send`, so "next turn" put two frames of one tick
 * (socket.io's CONNECT and the first emit of the connection handler) within
 * ~100 µs of each other, and a client that attaches its next listener after
 * handling the first frame (the official socket.io-protocol suite does)
 * missed the second one when both came in one read.
 */
export const WRITE_SPACING_MS = 1;

// Transports whose frames are written but whose spacing has not passed, in
// the order they were last sent to (so the earliest is first); one timer.
const paced = new Set<WebSocketTransport>();
let pacedTimer: ReturnType<typeof setTimeout> | undefined;

function pace(transport: WebSocketTransport): void {
  paced.delete(transport);
  paced.add(transport);
  if (pacedTimer === undefined) pacedTimer = setTimeout(releasePaced, WRITE_SPACING_MS);
}

function releasePaced(): void {
  pacedTimer = undefined;
  const now = performance.now();
  for (const transport of paced) {
    if (transport.holding) {
      // sent to again since: the watcher paces it anew once that is written
      paced.delete(transport);
      continue;
    }
    const due = transport.lastSendAt + WRITE_SPACING_MS;
    if (due > now) {
      pacedTimer = setTimeout(releasePaced, Math.max(0, due - now));
      return;
    }
    paced.delete(transport);
    transport.spaced();
  }
}

// One watcher for every transport waiting for its frames to be written:
// checked on the next turn of the event loop (Deno writes in between), and
// those still waiting after SLOW_AFTER_MS (a client that does not read) on a
// slower timer, so that they cost nothing per turn.
const SLOW_AFTER_MS = 5;
const SLOW_CHECK_MS = 25;
let waiting = new Set<WebSocketTransport>();
let slow = new Set<WebSocketTransport>();
let immediateArmed = false;
let slowTimer: ReturnType<typeof setTimeout> | undefined;

function watch(transport: WebSocketTransport): void {
  slow.delete(transport);
  waiting.add(transport);
  if (!immediateArmed) {
    immediateArmed = true;
    setImmediate(checkWaiting);
  }
}

function unwatch(transport: WebSocketTransport): void {
  waiting.delete(transport);
  if (slow.delete(transport) && slow.size === 0) {
    clearTimeout(slowTimer);
    slowTimer = undefined;
  }
}

function checkWaiting(): void {
  immediateArmed = false;
  const now = performance.now();
  // a transport found written flushes at once and may be watched again: into the next set
  const batch = waiting;
  waiting = new Set();
  for (const transport of batch) {
    if (transport.checkWritten()) continue;
    if (transport.waitingFor(now) > SLOW_AFTER_MS) slow.add(transport);
    else waiting.add(transport);
  }
  if (waiting.size > 0 && !immediateArmed) {
    immediateArmed = true;
    setImmediate(checkWaiting);
  }
  if (slow.size > 0 && slowTimer === undefined) slowTimer = setTimeout(checkSlow, SLOW_CHECK_MS);
}

function checkSlow(): void {
  slowTimer = undefined;
  const batch = slow;
  slow = new Set();
  for (const transport of batch) {
    if (!transport.checkWritten()) slow.add(transport);
  }
  if (slow.size > 0 && slowTimer === undefined) slowTimer = setTimeout(checkSlow, SLOW_CHECK_MS);
}

/** A packet's frame length for the bound before Deno reports it (text in UTF-16 units). */
function packetLength(packet: Packet): number {
  const data = packet.data;
  if (data === undefined) return 1;
  return typeof data === "string" ? data.length + 1 : data.byteLength;
}
