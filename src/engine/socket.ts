/**
 * One Engine.IO session: heartbeat, write buffer, and the move from
 * long-polling to WebSocket. socket.io's `Client` sits on top of it.
 *
 * @module
 */

import { EventEmitter } from "node:events";
import { log } from "../log.ts";
import type { Packet, PacketData, PacketOptions, PacketType } from "./parser.ts";
import type { PendingSessions } from "./pending.ts";
import { PollingTransport } from "./polling.ts";
import type { EngineRequest, Transport } from "./transport.ts";

/** Lifecycle of a session. */
export type SocketState = "opening" | "open" | "closing" | "closed";

/** Timing settings a session follows (from the engine). */
export interface SessionOptions {
  pingInterval: number;
  pingTimeout: number;
  upgradeTimeout: number;
  maxHttpBufferSize: number;
  /** Transports this session may upgrade to (sent in the handshake). */
  upgrades: string[];
  /**
   * Most bytes waiting to reach the client (the session's write buffer plus
   * what the WebSocket has not written yet); over it the session is closed.
   * Text is counted in UTF-16 code units (a lower bound of its UTF-8 size).
   */
  maxBufferedBytes: number;
  /**
   * How long a closing long-polling session waits for the client's next poll
   * (to hand it the last packets, then the close packet), ms.
   */
  closeTimeout: number;
  /** The engine's pending sessions, where this one starts (null: no limits). */
  pending: PendingSessions | null;
}

type SentCallback = (transport: Transport) => void;

/**
 * An Engine.IO session. Emits `data` (string or Buffer) for each message,
 * `packet`, `packetCreate`, `heartbeat`, `upgrading`, `upgrade`, `drain`,
 * `flush`, and `close` with a reason.
 */
export class EngineSocket extends EventEmitter {
  /** Session id. */
  readonly id: string;
  /** The request that opened the session. */
  readonly request: EngineRequest;
  /** The peer's address. */
  readonly remoteAddress: string;
  /** Engine.IO protocol revision (always 4). */
  readonly protocol = 4;
  /** The current transport. */
  transport: Transport;
  /** Whether an upgrade is under way. */
  upgrading = false;
  /** Whether the session moved to WebSocket. */
  upgraded = false;

  #state: SocketState = "opening";
  #writeBuffer: Packet[] = [];
  /** Size of the packets in #writeBuffer (text in UTF-16 code units). */
  #queuedBytes = 0;
  #authenticated = false;
  /** Message packets held back by {@linkcode EngineSocket.hold}, or null. */
  #held: { data: PacketData; options?: PacketOptions; callback?: SentCallback }[] | null = null;
  #heldBytes = 0;
  #packetsFn: SentCallback[] = [];
  #sentCallbackFn: (SentCallback[] | null)[] = [];
  #cleanupTransport: (() => void) | null = null;
  #pingIntervalTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimeoutTimer: ReturnType<typeof setTimeout> | undefined;
  #waitingForPong = false;
  #refreshedPingTimeout = false;
  /** When the next ping is due (performance.now() time). */
  #pingDueAt = 0;
  /** When the session is dead without a pong (performance.now() time). */
  #heartbeatDeadline = Infinity;
  readonly #options: SessionOptions;

  constructor(id: string, transport: Transport, request: EngineRequest, options: SessionOptions) {
    super();
    this.id = id;
    this.request = request;
    this.remoteAddress = request.remoteAddress;
    this.#options = options;
    this.transport = transport;
    this.#setTransport(transport);
    this.#onOpen();
  }

  /** `opening`, `open`, `closing` or `closed`. */
  get readyState(): SocketState {
    return this.#state;
  }

  /** Whether the application marked the session authenticated. */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  /**
   * Marks the session authenticated: it stops counting as pending (against
   * the engine's per-address and total caps) and its pending deadline no
   * longer applies. Call it once the client proved who it is (socket.io:
   * `socket.conn.markAuthenticated()` in the auth middleware).
   */
  markAuthenticated(): void {
    if (this.#authenticated) return;
    this.#authenticated = true;
    this.#options.pending?.remove(this);
  }

  /**
   * Holds message packets back (they are queued in order, not sent) until
   * {@linkcode EngineSocket.release}: what socket.io writes to a session
   * whose rooms are being restored waits behind what it missed. Held bytes
   * count against `maxBufferedBytes`.
   */
  hold(): void {
    if (this.#held === null) this.#held = [];
  }

  /**
   * Sends `first` (message packets, in order), then what was held, and
   * stops holding.
   */
  release(first: readonly PacketData[] = []): void {
    const held = this.#held ?? [];
    this.#held = null;
    this.#heldBytes = 0;
    if (this.#state === "closing" || this.#state === "closed") return;
    // one batch: a waiting poll gets all of it
    for (const data of first) this.#enqueue("message", data);
    for (const packet of held) {
      this.#enqueue("message", packet.data, packet.options, packet.callback);
    }
    this.#flushOrBound();
  }

  /**
   * Closes the session because it was still pending at its deadline
   * (reason `"pending timeout"`), dropping what it had not sent.
   */
  expirePending(): void {
    if (this.#state === "closed") return;
    log("debug", "engine pending session expired", { sid: this.id });
    this.#closeTransport(true, "pending timeout");
  }

  /** Bytes waiting to reach the client (held + write buffer + transport). */
  get bufferedBytes(): number {
    return this.#heldBytes + this.#queuedBytes + this.transport.bufferedAmount;
  }

  #onOpen(): void {
    this.#state = "open";
    this.transport.sid = this.id;
    const o = this.#options;
    this.sendPacket(
      "open",
      JSON.stringify({
        sid: this.id,
        upgrades: o.upgrades,
        pingInterval: o.pingInterval,
        pingTimeout: o.pingTimeout,
        maxPayload: o.maxHttpBufferSize,
      }),
    );
    this.emit("open");
    this.#schedulePing();
  }

  #onPacket(packet: Packet): void {
    if (this.#state !== "open") return;
    this.emit("packet", packet);
    if (this.#waitingForPong && !this.#refreshedPingTimeout && packet.type !== "pong") {
      // a busy client may answer the ping late, behind other packets
      this.#refreshedPingTimeout = true;
      this.#resetPingTimeout(performance.now() + this.#options.pingTimeout);
    }
    switch (packet.type) {
      case "ping":
        this.#onError(new Error("invalid heartbeat direction"));
        return;
      case "pong":
        clearTimeout(this.#pingTimeoutTimer);
        this.#waitingForPong = false;
        this.#schedulePing();
        this.emit("heartbeat");
        return;
      case "error":
        this.#close("parse error");
        return;
      case "message":
        this.emit("data", packet.data);
        this.emit("message", packet.data);
        return;
    }
  }

  #onError(error: unknown): void {
    log("debug", "engine transport error", { sid: this.id, error: String(error) });
    this.#close("transport error", error);
  }

  #schedulePing(): void {
    clearTimeout(this.#pingIntervalTimer);
    clearTimeout(this.#pingTimeoutTimer);
    const { pingInterval, pingTimeout } = this.#options;
    this.#pingDueAt = performance.now() + pingInterval;
    this.#heartbeatDeadline = this.#pingDueAt + pingTimeout;
    this.#pingIntervalTimer = setTimeout(() => {
      this.#refreshedPingTimeout = false;
      this.#waitingForPong = true;
      this.sendPacket("ping");
      // the deadline counts from when the ping was due, not from when a
      // (possibly late) timer sent it
      this.#resetPingTimeout(this.#pingDueAt + pingTimeout);
    }, pingInterval);
  }

  #resetPingTimeout(deadline: number): void {
    clearTimeout(this.#pingTimeoutTimer);
    this.#heartbeatDeadline = deadline;
    this.#pingTimeoutTimer = setTimeout(() => {
      if (this.#state !== "closed") this.#close("ping timeout");
    }, Math.max(0, deadline - performance.now()));
  }

  /**
   * Closes the session with "ping timeout" when its heartbeat deadline
   * (ping due + `pingTimeout` without a pong) has passed, even though the
   * timer has not fired yet: Deno's timers run a millisecond or more late, so
   * a request that arrives just after the deadline would otherwise still find
   * the session open. The engine calls it for every request that names the
   * session. Returns whether the session is closed.
   */
  expireIfOverdue(now: number = performance.now()): boolean {
    if (this.#state === "closed") return true;
    if (now < this.#heartbeatDeadline) return false;
    this.#close("ping timeout");
    return true;
  }

  #setTransport(transport: Transport): void {
    const onError = (error: unknown) => this.#onError(error);
    const onReady = () => this.#flush();
    const onPacket = (packet: Packet) => this.#onPacket(packet);
    const onDrain = () => this.#onDrain();
    const onClose = () => this.#close("transport close");
    this.transport = transport;
    transport.once("error", onError);
    transport.on("ready", onReady);
    transport.on("packet", onPacket);
    transport.on("drain", onDrain);
    transport.once("close", onClose);
    this.#cleanupTransport = () => {
      transport.removeListener("error", onError);
      transport.removeListener("ready", onReady);
      transport.removeListener("packet", onPacket);
      transport.removeListener("drain", onDrain);
      transport.removeListener("close", onClose);
    };
  }

  #onDrain(): void {
    const callbacks = this.#sentCallbackFn.shift();
    if (callbacks) { for (const fn of callbacks) fn(this.transport); }
  }

  /**
   * Starts the move to `transport` (a WebSocket opened with this session's
   * id): answers the `2probe`, forces the pending poll to return with a noop,
   * and switches on the client's `5` (upgrade) packet.
   */
  maybeUpgrade(transport: Transport): void {
    this.upgrading = true;
    let checkTimer: ReturnType<typeof setInterval> | undefined;
    const upgradeTimer = setTimeout(() => {
      cleanup();
      if (transport.readyState === "open") transport.close();
    }, this.#options.upgradeTimeout);

    const check = () => {
      if (this.transport.name === "polling" && this.transport.writable) {
        this.transport.send([{ type: "noop" }]);
      }
    };
    const onPacket = (packet: Packet) => {
      if (packet.type === "ping" && packet.data === "probe") {
        transport.send([{ type: "pong", data: "probe" }]);
        this.emit("upgrading", transport);
        // as the reference: the pending poll gets its noop on the first check,
        // 100 ms on, not at once, so that an upgrade packet already on its way
        // (sent right after the probe) completes the upgrade first and a poll
        // sent after it is refused (see PollingTransport#doClose)
        clearInterval(checkTimer);
        checkTimer = setInterval(check, 100);
      } else if (packet.type === "upgrade" && this.#state !== "closed") {
        cleanup();
        if (this.transport instanceof PollingTransport) this.transport.refusePendingPoll();
        this.transport.discard();
        this.upgraded = true;
        this.#clearTransport();
        this.#setTransport(transport);
        this.emit("upgrade", transport);
        this.#flush();
        if (this.#state === "closing") transport.close(() => this.#close("forced close"));
      } else {
        cleanup();
        transport.close();
      }
    };
    const onFail = () => {
      cleanup();
      transport.close();
    };
    const cleanup = () => {
      this.upgrading = false;
      clearInterval(checkTimer);
      clearTimeout(upgradeTimer);
      transport.removeListener("packet", onPacket);
      transport.removeListener("close", onFail);
      transport.removeListener("error", onFail);
      this.removeListener("close", onFail);
    };
    transport.on("packet", onPacket);
    transport.once("close", onFail);
    transport.once("error", onFail);
    this.once("close", onFail);
  }

  #clearTransport(): void {
    this.#cleanupTransport?.();
    this.#cleanupTransport = null;
    // late errors of the old transport must not reach anyone
    this.transport.on("error", noop);
    this.transport.close();
  }

  #close(reason: string, description?: unknown): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#options.pending?.remove(this);
    this.#heartbeatDeadline = Infinity;
    clearTimeout(this.#pingIntervalTimer);
    clearTimeout(this.#pingTimeoutTimer);
    this.#packetsFn = [];
    this.#sentCallbackFn = [];
    this.#clearTransport();
    this.emit("close", reason, description);
    this.#writeBuffer = [];
    this.#queuedBytes = 0;
  }

  /** Sends a message (string or binary). socket.io calls `write`. */
  send(data: PacketData, options?: PacketOptions, callback?: SentCallback): this {
    this.sendPacket("message", data, options, callback);
    return this;
  }

  /** Same as {@linkcode EngineSocket.send}. */
  write(data: PacketData, options?: PacketOptions, callback?: SentCallback): this {
    this.sendPacket("message", data, options, callback);
    return this;
  }

  /** Queues a packet of any type and flushes when the transport is writable. */
  sendPacket(
    type: PacketType,
    data?: PacketData,
    options?: PacketOptions,
    callback?: SentCallback,
  ): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    if (this.#held !== null && type === "message" && data !== undefined) {
      this.#held.push({ data, options, callback });
      this.#heldBytes += packetSize({ type, data });
      if (this.bufferedBytes > this.#options.maxBufferedBytes) this.#overflow();
      return;
    }
    this.#enqueue(type, data, options, callback);
    this.#flushOrBound();
  }

  /** Adds a packet to the write buffer (counted in its bytes). */
  #enqueue(
    type: PacketType,
    data?: PacketData,
    options?: PacketOptions,
    callback?: SentCallback,
  ): void {
    const packet: Packet = data === undefined ? { type, options } : { type, data, options };
    this.emit("packetCreate", packet);
    this.#writeBuffer.push(packet);
    if (callback) this.#packetsFn.push(callback);
    this.#queuedBytes += packetSize(packet);
  }

  /**
   * Flushes when the client takes packets now; otherwise (no poll pending,
   * or the WebSocket has not written the last ones yet) bounds what waits.
   */
  #flushOrBound(): void {
    if (this.transport.writable && !this.transport.holding) {
      this.#flush();
      return;
    }
    if (this.bufferedBytes > this.#options.maxBufferedBytes) this.#overflow();
  }

  #overflow(): void {
    const buffered = this.bufferedBytes;
    log("debug", "engine write buffer full", { sid: this.id, buffered });
    this.#writeBuffer = [];
    this.#queuedBytes = 0;
    this.#held = null;
    this.#heldBytes = 0;
    this.#closeTransport(
      true,
      "transport error",
      new Error(
        `the client does not read: ${buffered} bytes buffered (maxBufferedBytes ${this.#options.maxBufferedBytes})`,
      ),
    );
  }

  #flush(force = false): void {
    if (this.#state === "closed" || this.#writeBuffer.length === 0) return;
    if (!force && (!this.transport.writable || this.transport.holding)) return;
    const buffer = this.#writeBuffer;
    this.#writeBuffer = [];
    this.#queuedBytes = 0;
    this.emit("flush", buffer);
    if (this.#packetsFn.length) {
      this.#sentCallbackFn.push(this.#packetsFn);
      this.#packetsFn = [];
    } else {
      this.#sentCallbackFn.push(null);
    }
    this.transport.send(buffer);
    this.emit("drain");
  }

  /**
   * Closes the session. Buffered packets are sent first unless `discard`:
   * on a WebSocket at once; on long-polling with the next poll, and the close
   * packet with the one after, each awaited at most `closeTimeout` (the
   * session is freed then, poll or not).
   */
  close(discard = false): void {
    if (discard && (this.#state === "open" || this.#state === "closing")) {
      this.#closeTransport(discard);
      return;
    }
    if (this.#state !== "open") return;
    this.#state = "closing";
    if (this.#writeBuffer.length && this.transport.name === "polling") {
      // As the reference: the buffered packets go with the next poll and the
      // close packet with the one after (socket.io-client handles a close
      // packet before the packets of the same payload). But the reference
      // waits for that drain without end; on a session without a pending
      // poll it never comes, and the session lived until its ping timeout.
      const timer = setTimeout(() => {
        this.removeListener("drain", onDrain);
        this.#closeTransport(true);
      }, this.#options.closeTimeout);
      const onDrain = () => {
        clearTimeout(timer);
        this.#closeTransport(discard);
      };
      this.once("drain", onDrain);
      return;
    }
    this.#closeTransport(discard);
  }

  #closeTransport(discard: boolean, reason = "forced close", description?: unknown): void {
    // packets the session accepted but held back (frames before them not
    // written yet) still go out ahead of the close frame
    if (this.#writeBuffer.length && this.transport.name === "websocket") this.#flush(true);
    if (discard) this.transport.discard();
    this.transport.close(() => this.#close(reason, description));
  }
}

function noop(): void {}

/** A packet's size for the write-buffer bound (text: UTF-16 code units). */
function packetSize(packet: Packet): number {
  const data = packet.data;
  if (data === undefined) return 1;
  if (typeof data === "string") return data.length + 1;
  return data.byteLength + 1;
}
