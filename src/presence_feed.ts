/**
 * Announces presence changes as `onlineUsersUpdate`, coalesced: many
 * changes within one interval (default 1 s) cost one KV read and two
 * broadcasts (staff see everyone, customers see online agents), not one
 * message per change per receiver; and a list whose people are the ones last
 * announced (a tab reloaded within the interval, changes that cancel out) is
 * not sent again. The last announced list is kept in KV, so the processes of
 * a cluster skip only what any of them already sent. Also sweeps expired
 * presence entries and announces those users offline.
 *
 * @module
 */

import type { Server } from "socket.io";
import { canSeePresenceOf, CLIENTS_ROOM, STAFF_ROOM } from "./access.ts";
import { log } from "./log.ts";
import type { OnlineUser, Presence } from "./presence.ts";
import type { PersonRef, Role } from "./store/mod.ts";

/** Options of {@linkcode PresenceFeed}. */
export interface PresenceFeedOptions {
  /** Least time between two `onlineUsersUpdate` broadcasts, ms (default 1000). */
  intervalMs?: number;
  /**
   * Where the last announced list is remembered (shared by the processes
   * that share it); without one, this process remembers its own.
   */
  kv?: Deno.Kv;
  /** How often stale entries are swept, ms (default 5000). */
  sweepEveryMs?: number;
}

/** KV key of the people last announced in `onlineUsersUpdate`. */
const LAST_ANNOUNCED: Deno.KvKey = ["presence_feed", "last_announced"];
const LAST_ANNOUNCED_TTL_MS = 24 * 60 * 60 * 1000;

/** Filters an online list for a viewer of the given role. */
export function visibleTo(role: Role, users: readonly OnlineUser[]): OnlineUser[] {
  return users.filter((u) => canSeePresenceOf(role, u.userType));
}

/** Coalesced `onlineUsersUpdate` broadcaster and presence sweeper for one process. */
export class PresenceFeed {
  readonly #io: Server;
  readonly #presence: Presence;
  readonly #intervalMs: number;
  readonly #sweepEveryMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #lastFlush = 0;
  #flushing: Promise<void> | null = null;
  #closed = false;
  readonly #kv: Deno.Kv | null;
  #lastAnnounced: string | null = null;
  /** Broadcasts sent so far (tests and metrics). */
  broadcasts = 0;

  constructor(io: Server, presence: Presence, options: PresenceFeedOptions = {}) {
    this.#io = io;
    this.#presence = presence;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#kv = options.kv ?? null;
    this.#sweepEveryMs = options.sweepEveryMs ?? 5000;
  }

  /** Starts the periodic sweep. */
  start(): void {
    if (this.#sweeper !== undefined || this.#closed) return;
    this.#sweeper = setInterval(() => void this.sweep(), this.#sweepEveryMs);
  }

  /** Notes that presence changed; a broadcast follows within the interval. */
  changed(): void {
    if (this.#timer !== undefined || this.#closed) return;
    const wait = Math.max(0, this.#lastFlush + this.#intervalMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // one flush at a time: an earlier one still reading must not announce its older list
      // after this one (the last list announced is then the newest)
      const run = (this.#flushing ?? Promise.resolve()).then(() => this.flush());
      this.#flushing = run;
      run.finally(() => {
        if (this.#flushing === run) this.#flushing = null;
      });
    }, wait);
  }

  /**
   * Reads presence once and, unless its people are the ones last announced,
   * broadcasts it to staff and (filtered) to customers.
   */
  async flush(): Promise<void> {
    this.#lastFlush = Date.now();
    try {
      const users = await this.#presence.list();
      if (!await this.#changedSinceLast(users)) return;
      this.#io.to(STAFF_ROOM).emit("onlineUsersUpdate", { onlineUsers: users });
      this.#io.to(CLIENTS_ROOM).emit("onlineUsersUpdate", {
        onlineUsers: visibleTo("client", users),
      });
      this.broadcasts++;
    } catch (error) {
      log("warn", "presence broadcast failed", { error: String(error) });
    }
  }

  /** Whether `users` differ (by person) from the last list announced; notes them if so. */
  async #changedSinceLast(users: readonly OnlineUser[]): Promise<boolean> {
    const people = users.map((u) => `${u.userType}:${u.userId}`).join(",");
    if (this.#kv === null) {
      if (people === this.#lastAnnounced) return false;
      this.#lastAnnounced = people;
      return true;
    }
    const last = await this.#kv.get<string>(LAST_ANNOUNCED);
    if (last.value === people) return false;
    await this.#kv.set(LAST_ANNOUNCED, people, { expireIn: LAST_ANNOUNCED_TTL_MS });
    return true;
  }

  /** Removes users whose entries expired and announces the change. */
  async sweep(): Promise<PersonRef[]> {
    try {
      const gone = await this.#presence.sweep();
      if (gone.length) this.changed();
      return gone;
    } catch (error) {
      log("warn", "presence sweep failed", { error: String(error) });
      return [];
    }
  }

  /** Stops timers; waits for a broadcast in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#sweeper);
    this.#timer = undefined;
    this.#sweeper = undefined;
    await this.#flushing;
  }
}
