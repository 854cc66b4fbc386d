/**
 * Test helper: a chat-group member that never loses a message, written the
 * way an app should (see notes/readme_delivery.md):
 *
 * - it reconnects on its own (socket.io-client's `reconnection`);
 * - after a reconnect with `socket.recovered === true`, socket.io has
 *   restored its rooms and replayed what it missed: nothing to do;
 * - after any other (re)connect, it joins the chat group again and backfills
 *   with `getMessages`, paging back from the newest message until it reaches
 *   messages it already had, and merges by `chat_id` (so overlaps are
 *   harmless);
 * - a backfill cut short by another drop is redone on the next connect,
 *   recovered or not.
 *
 * It records what arrived live (to check recovery for duplicates and order)
 * and what came from history.
 *
 * @module
 */

import { io as connect, type Socket } from "socket.io-client";

/** The part of `receiveMessage` (and of `getMessages` history) the member uses. */
export interface MessagePayload {
  chat_id: number;
  chatGroupId: number;
  chat_message: string;
  chat_created_at: string;
  sender: { userId: number };
}

/** Options of {@linkcode MemberClient}. */
export interface MemberOptions {
  /** Server (or proxy) URL. */
  url: string;
  /** Bearer token. */
  token: string;
  /** The chat group to follow. */
  chatGroupId: number;
  /** socket.io-client transports (default: polling then websocket upgrade). */
  transports?: string[];
  /** Name in messages. */
  name: string;
  /** Page size of the backfill (default 100). */
  pageSize?: number;
}

/** Counters of one member. */
export interface MemberStats {
  connects: number;
  /** Reconnects with `socket.recovered === true`. */
  recovered: number;
  /** Connects that were not recovered (the first one included). */
  fresh: number;
  /** `receiveMessage` events replayed by recovery (written before the recovered connect). */
  replayed: number;
  /** Messages only found through `getMessages`. */
  backfilled: number;
  /** `getMessages` calls. */
  historyCalls: number;
  /** Disconnect reasons seen. */
  disconnects: string[];
}

const REQUEST_TIMEOUT = 5_000;

/** A member of one chat group that backfills gaps. */
export class MemberClient {
  /** The socket.io-client socket. */
  readonly socket: Socket;
  /** Name in messages. */
  readonly name: string;
  /** `chat_id`s of `receiveMessage` events in arrival order (duplicates kept). */
  readonly live: number[] = [];
  /** Senders of {@linkcode MemberClient.live}, same indices. */
  readonly liveSenders: number[] = [];
  /** Every message the member has, by `chat_id`. */
  readonly messages: Map<number, MessagePayload> = new Map();
  /** Connection events with the highest chat_id live at that moment (diagnostics). */
  readonly timeline: string[] = [];
  /** Counters. */
  readonly stats: MemberStats = {
    connects: 0,
    recovered: 0,
    fresh: 0,
    replayed: 0,
    backfilled: 0,
    historyCalls: 0,
    disconnects: [],
  };
  readonly #chatGroupId: number;
  readonly #pageSize: number;
  #needsBackfill = true;
  /** Highest `chat_id` the member had when its last gap began. */
  #floor = 0;
  #syncing: Promise<void> | null = null;
  #ready = Promise.withResolvers<void>();
  #closed = false;
  #connectedAt = 0;

  constructor(options: MemberOptions) {
    this.name = options.name;
    this.#chatGroupId = options.chatGroupId;
    this.#pageSize = options.pageSize ?? 100;
    this.socket = connect(options.url, {
      forceNew: true,
      transports: options.transports ?? ["polling", "websocket"],
      auth: { token: options.token },
      reconnectionDelay: 50,
      reconnectionDelayMax: 250,
      randomizationFactor: 0,
    });
    this.socket.on("receiveMessage", (payload: MessagePayload) => {
      if (payload.chatGroupId !== this.#chatGroupId) return;
      // replayed: written while this member was away, received after its recovered connect
      if (this.socket.recovered && Date.parse(payload.chat_created_at) < this.#connectedAt) {
        this.stats.replayed++;
      }
      this.live.push(payload.chat_id);
      this.liveSenders.push(payload.sender.userId);
      this.messages.set(payload.chat_id, payload);
    });
    this.socket.on("connect", () => this.#onConnect());
    this.socket.on("disconnect", (reason: string) => {
      this.stats.disconnects.push(reason);
      this.timeline.push(`disconnect ${reason} lastLive=${this.live.at(-1)} t=${Date.now()}`);
      this.#ready = Promise.withResolvers<void>();
      if (!this.#needsBackfill) this.#floor = this.#highest();
    });
  }

  #highest(): number {
    let highest = 0;
    for (const id of this.messages.keys()) if (id > highest) highest = id;
    return highest;
  }

  #onConnect(): void {
    this.#connectedAt = Date.now();
    this.stats.connects++;
    this.timeline.push(
      `connect recovered=${this.socket.recovered} lastLive=${this.live.at(-1)} t=${Date.now()}`,
    );
    if (this.socket.recovered) this.stats.recovered++;
    else {
      this.stats.fresh++;
      this.#needsBackfill = true;
    }
    if (!this.#needsBackfill) {
      this.#ready.resolve();
      return;
    }
    const ready = this.#ready;
    this.#syncing = this.#catchUp(!this.socket.recovered).then(
      () => ready.resolve(),
      () => {/* dropped again; the next connect redoes it */},
    ).finally(() => (this.#syncing = null));
  }

  async #catchUp(join: boolean): Promise<void> {
    if (join) {
      const joined = await this.request("joinChatGroup", { groupId: this.#chatGroupId });
      if (!joined.ok) throw new Error(`${this.name}: join failed: ${JSON.stringify(joined)}`);
    }
    await this.#backfill();
    this.#needsBackfill = false;
  }

  /** Pages back from the newest message until below the floor, merging by chat_id. */
  async #backfill(): Promise<void> {
    let before: number | undefined;
    for (;;) {
      this.stats.historyCalls++;
      const reply = await this.request("getMessages", {
        chatGroupId: this.#chatGroupId,
        limit: this.#pageSize,
        ...(before === undefined ? {} : { before }),
      });
      if (!reply.ok) throw new Error(`${this.name}: getMessages failed: ${JSON.stringify(reply)}`);
      const page = reply.messages as MessagePayload[];
      for (const message of page) {
        if (!this.messages.has(message.chat_id)) {
          this.messages.set(message.chat_id, message);
          this.stats.backfilled++;
        }
      }
      if (page.length < this.#pageSize) return;
      const oldest = page[0].chat_id;
      // strictly below the floor: the overlap covers messages committed out of order
      if (oldest < this.#floor) return;
      before = oldest;
    }
  }

  /** Emits with an ack (rejects after a guard timeout). */
  async request(
    event: string,
    payload: unknown,
  ): Promise<{ ok: boolean; [key: string]: unknown }> {
    return await this.socket.timeout(REQUEST_TIMEOUT).emitWithAck(event, payload);
  }

  /** Resolves once connected, in the group and caught up. */
  async ready(): Promise<void> {
    for (;;) {
      const ready = this.#ready;
      await ready.promise;
      if (ready === this.#ready && this.socket.connected) return;
    }
  }

  /**
   * Waits until caught up, then does a round trip on the connection: every
   * broadcast the server sent this socket before has then arrived.
   */
  async settle(timeoutMs = 30_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name}: not caught up`)), timeoutMs);
    });
    try {
      await Promise.race([this.#settle(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #settle(): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      await this.ready();
      try {
        await this.request("getOnlineUsers", undefined);
        if (this.socket.connected && !this.#needsBackfill) return;
      } catch {
        // dropped meanwhile: wait for the next connect
      }
    }
    throw new Error(`${this.name}: could not settle`);
  }

  /** Stops for good (no reconnect). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.disconnect();
    await this.#syncing?.catch(() => {});
  }
}
