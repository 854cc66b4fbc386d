/**
 * Agents' availability, as Servana's apps and REST side know it: an agent
 * who is connected is `accepting_chats` or `not_accepting_chats` (or shows
 * `offline`); an agent without a connection has no entry. It lives in Deno
 * KV (`["availability", sys_user_id]`), shared by every process, beside
 * being online (the connections of {@link ./membership.ts}): one tab closing
 * does not take a connected agent offline.
 *
 * With Redis configured, every change is mirrored to the key the original
 * backend's automatic assignment reads, `user_presence:<sys_user_id>`, as
 * JSON `{ userId, userPresence, socketId, userType: "agent", lastSeen,
 * updatedAt, deptIds }` with a 900 s expiry, refreshed while the agent stays
 * connected; the key is deleted when the agent's last connection ends.
 *
 * @module
 */

import { log } from "./log.ts";
import type { Agent } from "./store/mod.ts";

/** An agent's availability. */
export type AvailabilityStatus = "accepting_chats" | "not_accepting_chats" | "offline";

/** The statuses `presence:update` accepts. */
export const AVAILABILITY_STATUSES: readonly AvailabilityStatus[] = [
  "accepting_chats",
  "not_accepting_chats",
  "offline",
];

/** One agent's entry, in the shape of the backend's `user_presence:<id>` JSON. */
export interface AvailabilityRecord {
  userId: number;
  userPresence: AvailabilityStatus;
  /** The socket that last changed it. */
  socketId: string | null;
  userType: "agent";
  /** ISO 8601. */
  lastSeen: string;
  /** ISO 8601. */
  updatedAt: string;
  deptIds: number[];
}

/** Where the backend's presence keys are written (Redis), when configured. */
export interface PresenceMirror {
  /** `SET key value EX seconds`; never rejects. */
  set(key: string, value: string, ttlSec: number): Promise<void>;
  /** `DEL key`; never rejects. */
  del(key: string): Promise<void>;
}

/** An agent's status when their last connection ended. */
interface LastStatus {
  status: AvailabilityStatus;
  at: number;
}

/** Options of {@linkcode Availability}. */
export interface AvailabilityOptions {
  /** The backend's Redis keys (`REDIS_URL`), or null. */
  mirror?: PresenceMirror | null;
  /** How long a disconnected agent's status is restored on reconnect, ms (default 0: never). */
  rememberMs?: number;
  /** Clock, ms (tests). */
  now?: () => number;
}

/** Expiry of the backend's `user_presence:<id>` keys, seconds (as the original sets it). */
export const MIRROR_TTL_SEC = 900;

/** The backend's Redis key of an agent's presence. */
export function mirrorKey(agentId: number): string {
  return `user_presence:${agentId}`;
}

/** Agents' availability in KV, mirrored to Redis; see the module docs. */
export class Availability {
  readonly #kv: Deno.Kv;
  readonly #mirror: PresenceMirror | null;
  readonly #now: () => number;
  readonly #rememberMs: number;

  constructor(kv: Deno.Kv, options: AvailabilityOptions = {}) {
    this.#kv = kv;
    this.#mirror = options.mirror ?? null;
    this.#now = options.now ?? Date.now;
    this.#rememberMs = options.rememberMs ?? 0;
  }

  /** An agent's entry, or null (not connected). */
  async get(agentId: number): Promise<AvailabilityRecord | null> {
    return (await this.#kv.get<AvailabilityRecord>(["availability", agentId])).value;
  }

  /** Sets an agent's status (from `socketId`) and mirrors it. */
  async set(
    agent: Agent,
    status: AvailabilityStatus,
    socketId: string,
  ): Promise<AvailabilityRecord> {
    const now = new Date(this.#now()).toISOString();
    const record: AvailabilityRecord = {
      userId: agent.id,
      userPresence: status,
      socketId,
      userType: "agent",
      lastSeen: now,
      updatedAt: now,
      deptIds: [...agent.departments],
    };
    await this.#kv.set(["availability", agent.id], record);
    await this.#mirrorRecord(record);
    return record;
  }

  /**
   * Marks an agent connected: keeps the status of another tab's session;
   * else the status the agent had when their last connection ended, if that
   * was within `rememberMs` (a dropped connection or a reload does not undo
   * "not accepting chats"); else `accepting_chats`, as the original backend
   * sets on connect. `changed` is true when a new entry was made.
   */
  async connected(
    agent: Agent,
    socketId: string,
  ): Promise<{ record: AvailabilityRecord; changed: boolean }> {
    const [existing, last] = await this.#kv.getMany<[AvailabilityRecord, LastStatus]>([
      ["availability", agent.id],
      ["availability_last", agent.id],
    ]);
    if (existing.value !== null) {
      const record = await this.touch(agent, existing.value);
      return { record, changed: false };
    }
    const remembered = last.value !== null && this.#now() - last.value.at < this.#rememberMs
      ? last.value.status
      : "accepting_chats";
    return { record: await this.set(agent, remembered, socketId), changed: true };
  }

  /** Refreshes `lastSeen` (a heartbeat) and the mirror's expiry; null when not connected. */
  async heartbeat(agent: Agent): Promise<AvailabilityRecord | null> {
    const existing = await this.get(agent.id);
    return existing === null ? null : await this.touch(agent, existing);
  }

  /** Rewrites an entry with a fresh `lastSeen` (and current departments). */
  async touch(agent: Agent, existing: AvailabilityRecord): Promise<AvailabilityRecord> {
    const record: AvailabilityRecord = {
      ...existing,
      lastSeen: new Date(this.#now()).toISOString(),
      deptIds: [...agent.departments],
    };
    await this.#kv.set(["availability", agent.id], record);
    await this.#mirrorRecord(record);
    return record;
  }

  /** The agent's last connection ended: the entry and the mirror key go; the status is remembered. */
  async disconnected(agentId: number): Promise<void> {
    const existing = await this.get(agentId);
    const op = this.#kv.atomic().delete(["availability", agentId]);
    if (existing !== null && this.#rememberMs > 0) {
      op.set(
        ["availability_last", agentId],
        {
          status: existing.userPresence,
          at: this.#now(),
        } satisfies LastStatus,
        { expireIn: this.#rememberMs },
      );
    }
    await op.commit();
    await this.#mirror?.del(mirrorKey(agentId));
  }

  /** Every connected agent's entry. */
  async list(): Promise<AvailabilityRecord[]> {
    const records: AvailabilityRecord[] = [];
    for await (const entry of this.#kv.list<AvailabilityRecord>({ prefix: ["availability"] })) {
      records.push(entry.value);
    }
    return records;
  }

  async #mirrorRecord(record: AvailabilityRecord): Promise<void> {
    if (this.#mirror === null) return;
    const { userId, userPresence, socketId, userType, lastSeen, updatedAt, deptIds } = record;
    await this.#mirror.set(
      mirrorKey(userId),
      JSON.stringify({ userId, userPresence, socketId, userType, lastSeen, updatedAt, deptIds }),
      MIRROR_TTL_SEC,
    );
  }
}

/** A mirror that logs once when a write fails and once when writes work again. */
export function loggingMirror(
  write: {
    set(key: string, value: string, ttlSec: number): Promise<unknown>;
    del(key: string): Promise<unknown>;
  },
): PresenceMirror {
  let failing = false;
  function ok(): void {
    if (failing) log("info", "redis presence keys written again");
    failing = false;
  }
  function failed(error: unknown): void {
    if (!failing) log("warn", "redis presence key write failed", { error: String(error) });
    failing = true;
  }
  return {
    set: (key, value, ttlSec) => write.set(key, value, ttlSec).then(ok, failed),
    del: (key) => write.del(key).then(ok, failed),
  };
}
