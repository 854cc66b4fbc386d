/**
 * Draining the queue, by the original backend's rules: when an agent comes
 * online or turns `accepting_chats`, each queued, unassigned conversation of
 * the agent's departments, oldest first, goes to the least-loaded agent of
 * its department who is connected and accepting chats and holds fewer than
 * `maxActive` active conversations (ties broken round-robin per department).
 * Each assignment is atomic in the store (`sys_user_id is null and status =
 * 'queued'`), so two processes draining at once never assign one
 * conversation twice; the agent who got it receives
 * `customerListUpdate { type: "assigned" }`.
 *
 * @module
 */

import type { Availability } from "./availability.ts";
import { log } from "./log.ts";
import type { Membership } from "./membership.ts";
import type { Agent, ChatGroup, ChatStore, QueuedChat } from "./store/mod.ts";

/** Options of {@linkcode QueueDrain}. */
export interface QueueDrainOptions {
  store: ChatStore;
  availability: Availability;
  members: Membership;
  /** Round-robin counters per department live here. */
  kv: Deno.Kv;
  /** Most active conversations per agent (`QUEUE_MAX_ACTIVE`, 5 as in the original). */
  maxActive: number;
  /** Called for each assignment made (the caller tells the agent). */
  onAssigned: (group: ChatGroup, queued: QueuedChat) => void | Promise<void>;
}

/** One assignment: the conversation and who got it. */
export interface Assignment {
  chatGroupId: number;
  agentId: number;
}

/** Assigns queued conversations; see the module docs. */
export class QueueDrain {
  readonly #options: QueueDrainOptions;

  constructor(options: QueueDrainOptions) {
    this.#options = options;
  }

  /** Drains the queues of `agent`'s departments (nothing unless the agent accepts chats). */
  async drainFor(agent: Agent): Promise<Assignment[]> {
    const { store, availability, maxActive } = this.#options;
    const own = await availability.get(agent.id);
    if (own?.userPresence !== "accepting_chats" || agent.departments.length === 0) return [];
    const queued = await store.listQueued(agent.departments);
    const assignments: Assignment[] = [];
    for (const chat of queued) {
      const candidates = await this.#candidates(chat.departmentId);
      if (candidates.length === 0) continue;
      const loads = await store.activeLoads(candidates);
      const eligible = candidates.filter((id) => (loads.get(id) ?? 0) < maxActive);
      if (eligible.length === 0) continue;
      const least = Math.min(...eligible.map((id) => loads.get(id) ?? 0));
      const tied = eligible.filter((id) => (loads.get(id) ?? 0) === least).sort((a, b) => a - b);
      const picked = tied.length === 1
        ? tied[0]
        : tied[await this.#turn(chat.departmentId, tied.length)];
      const group = await store.assignQueued(chat.chatGroupId, picked, { maxActive });
      if (group === null) continue;
      assignments.push({ chatGroupId: group.id, agentId: picked });
      try {
        await this.#options.onAssigned(group, chat);
      } catch (error) {
        log("warn", "assignment notice failed", { chatGroupId: group.id, error: String(error) });
      }
    }
    return assignments;
  }

  /** Connected agents accepting chats in a department. */
  async #candidates(departmentId: number): Promise<number[]> {
    const { availability, members } = this.#options;
    const accepting = (await availability.list()).filter((record) =>
      record.userPresence === "accepting_chats" && record.deptIds.includes(departmentId)
    );
    const connected: number[] = [];
    for (const record of accepting) {
      if (await members.connectionCount({ kind: "agent", id: record.userId }) > 0) {
        connected.push(record.userId);
      }
    }
    return connected;
  }

  /** The next round-robin index among `n` tied agents of a department. */
  async #turn(departmentId: number, n: number): Promise<number> {
    const key: Deno.KvKey = ["round_robin", departmentId];
    const op = this.#options.kv.atomic().sum(key, 1n);
    await op.commit();
    const count = (await this.#options.kv.get<Deno.KvU64>(key)).value?.value ?? 1n;
    return Number((count - 1n) % BigInt(n));
  }
}
