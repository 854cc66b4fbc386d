/**
 * Latency metrics for storage calls: a {@linkcode ChatStore} decorator and
 * timed variants of the KV-backed {@linkcode Presence} and
 * {@linkcode RateLimiter}, all feeding `servana_store_duration_seconds`
 * with the labels `backend` (`kv` or `postgres`) and `op`. Failed calls are
 * observed too (their time until the failure).
 *
 * @module
 */

import type { Metrics } from "../metrics.ts";
import { type OnlineEntry, type OnlineUser, Presence, type PresenceOptions } from "../presence.ts";
import {
  RateLimiter,
  type RateLimiterOptions,
  type RateLimitKeyPart,
  type RateLimitResult,
  type RateLimitRule,
} from "../rate_limit.ts";
import type {
  AddMessageResult,
  Agent,
  AssignOptions,
  ChatGroup,
  ChatGroupCounts,
  ChatMessage,
  ChatStore,
  Conversation,
  Department,
  Fixture,
  ListMessagesOptions,
  MarkDeliveredOptions,
  MarkReadOptions,
  NewMessage,
  Person,
  PersonRef,
  QueuedChat,
} from "./mod.ts";

async function timed<T>(
  metrics: Metrics,
  labels: { backend: string; op: string },
  work: () => Promise<T>,
): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    metrics.storeLatency.observe(labels, (performance.now() - started) / 1000);
  }
}

/** A {@linkcode ChatStore} that records the duration of every call. */
class TimedStore implements ChatStore {
  readonly kind: "kv" | "postgres";
  readonly #store: ChatStore;
  readonly #metrics: Metrics;

  constructor(store: ChatStore, metrics: Metrics) {
    this.#store = store;
    this.#metrics = metrics;
    this.kind = store.kind;
  }

  #time<T>(op: string, work: () => Promise<T>): Promise<T> {
    return timed(this.#metrics, { backend: this.kind, op }, work);
  }

  findAgentsByAuthId(authId: string): Promise<Agent[]> {
    return this.#time("findAgentsByAuthId", () => this.#store.findAgentsByAuthId(authId));
  }
  getPerson(ref: PersonRef): Promise<Person | null> {
    return this.#time("getPerson", () => this.#store.getPerson(ref));
  }
  getPeople(refs: readonly PersonRef[]): Promise<Person[]> {
    return this.#time("getPeople", () => this.#store.getPeople(refs));
  }
  listAgents(): Promise<Agent[]> {
    return this.#time("listAgents", () => this.#store.listAgents());
  }
  getDepartment(id: number): Promise<Department | null> {
    return this.#time("getDepartment", () => this.#store.getDepartment(id));
  }
  listDepartments(): Promise<Department[]> {
    return this.#time("listDepartments", () => this.#store.listDepartments());
  }
  getChatGroup(id: number): Promise<ChatGroup | null> {
    return this.#time("getChatGroup", () => this.#store.getChatGroup(id));
  }
  getChatGroups(ids: readonly number[]): Promise<ChatGroup[]> {
    return this.#time("getChatGroups", () => this.#store.getChatGroups(ids));
  }
  getConversation(id: number): Promise<Conversation | null> {
    return this.#time("getConversation", () => this.#store.getConversation(id));
  }
  countChatGroups(): Promise<ChatGroupCounts> {
    return this.#time("countChatGroups", () => this.#store.countChatGroups());
  }
  addMessage(message: NewMessage): Promise<AddMessageResult> {
    return this.#time("addMessage", () => this.#store.addMessage(message));
  }
  markDelivered(
    message: Pick<ChatMessage, "id" | "chatGroupId">,
    options: MarkDeliveredOptions,
  ): Promise<void> {
    return this.#time("markDelivered", () => this.#store.markDelivered(message, options));
  }
  markRead(options: MarkReadOptions): Promise<number[]> {
    return this.#time("markRead", () => this.#store.markRead(options));
  }
  listMessages(chatGroupId: number, options?: ListMessagesOptions): Promise<ChatMessage[]> {
    return this.#time("listMessages", () => this.#store.listMessages(chatGroupId, options));
  }
  listQueued(departmentIds: readonly number[]): Promise<QueuedChat[]> {
    return this.#time("listQueued", () => this.#store.listQueued(departmentIds));
  }
  activeLoads(agentIds: readonly number[]): Promise<Map<number, number>> {
    return this.#time("activeLoads", () => this.#store.activeLoads(agentIds));
  }
  assignQueued(
    chatGroupId: number,
    agentId: number,
    options: AssignOptions,
  ): Promise<ChatGroup | null> {
    return this.#time(
      "assignQueued",
      () => this.#store.assignQueued(chatGroupId, agentId, options),
    );
  }
  loadFixture(fixture: Fixture): Promise<void> {
    return this.#time("loadFixture", () => this.#store.loadFixture(fixture));
  }
  ping(): Promise<void> {
    return this.#time("ping", () => this.#store.ping());
  }
  close(): Promise<void> {
    return this.#store.close();
  }
}

/**
 * Wraps `store` so that every call is observed in `metrics.storeLatency`
 * (`backend` = the store's kind, `op` = the method name). `close` is not timed.
 */
export function timedStore(store: ChatStore, metrics: Metrics): ChatStore {
  return new TimedStore(store, metrics);
}

/** A {@linkcode RateLimiter} whose `consume` is observed as `backend="kv", op="rate_limit.consume"`. */
export class TimedRateLimiter extends RateLimiter {
  readonly #metrics: Metrics;

  /** Same arguments as {@linkcode RateLimiter}, plus where to record. */
  constructor(kv: Deno.Kv, metrics: Metrics, options: RateLimiterOptions = {}) {
    super(kv, options);
    this.#metrics = metrics;
  }

  /** {@linkcode RateLimiter.consume}, timed. */
  override consume(
    key: readonly RateLimitKeyPart[],
    rule: RateLimitRule,
  ): Promise<RateLimitResult> {
    return timed(
      this.#metrics,
      { backend: "kv", op: "rate_limit.consume" },
      () => super.consume(key, rule),
    );
  }
}

/** A {@linkcode Presence} whose KV calls are observed as `backend="kv", op="presence.*"`. */
export class TimedPresence extends Presence {
  readonly #metrics: Metrics;

  /** Same arguments as {@linkcode Presence}, plus where to record. */
  constructor(kv: Deno.Kv, metrics: Metrics, options: PresenceOptions) {
    super(kv, options);
    this.#metrics = metrics;
  }

  #time<T>(op: string, work: () => Promise<T>): Promise<T> {
    return timed(this.#metrics, { backend: "kv", op: `presence.${op}` }, work);
  }

  /** {@linkcode Presence.online}, timed. */
  override online(entry: OnlineEntry): Promise<{ cameOnline: boolean }> {
    return this.#time("online", () => super.online(entry));
  }
  /** {@linkcode Presence.heartbeat}, timed. */
  override heartbeat(person: PersonRef, socketId: string): Promise<boolean> {
    return this.#time("heartbeat", () => super.heartbeat(person, socketId));
  }
  /** {@linkcode Presence.socketClosed}, timed. */
  override socketClosed(person: PersonRef, socketId: string): Promise<{ wentOffline: boolean }> {
    return this.#time("socketClosed", () => super.socketClosed(person, socketId));
  }
  /** {@linkcode Presence.offline}, timed. */
  override offline(person: PersonRef): Promise<{ wentOffline: boolean }> {
    return this.#time("offline", () => super.offline(person));
  }
  /** {@linkcode Presence.list}, timed. */
  override list(): Promise<OnlineUser[]> {
    return this.#time("list", () => super.list());
  }
  /** {@linkcode Presence.sweep}, timed. */
  override sweep(): Promise<PersonRef[]> {
    return this.#time("sweep", () => super.sweep());
  }
}
