/**
 * {@linkcode ChatStore} over Deno KV, the default store (`KV_PATH`, Deno
 * Deploy's attached database, `:memory:` in tests). It keeps Servana's model:
 * agents and customers in two id spaces, departments, conversations with
 * Servana's statuses, messages with delivery timestamps.
 *
 * Keys:
 * - `["row", table, ...key]` → a fixture row as loaded (`sys_user`, `client`,
 *   `profile`, `role`, `image`, `sys_user_department`), from which the person
 *   records below are rebuilt after every fixture load
 * - `["agent", id]` → {@linkcode Agent}; `["agent_auth", authId, id]` → `true`
 * - `["client", id]` → {@linkcode Customer}; `["department", id]` → {@linkcode Department}
 * - `["chat_group", id]` → {@linkcode ChatGroup}, with the indexes
 *   `["queued", deptId, id]` (queued and unassigned) and `["agent_active", agentId, id]`
 *   (status `active`), the version key `["agent_active_v", agentId]` bumped by every
 *   change to an agent's active set, and `["meta", "chat_group_counts"]`
 * - `["chat", chatGroupId, chatId]` → {@linkcode ChatMessage}
 * - `["chat_seq", shard]` → the last sequence number of one of {@linkcode ID_SHARDS}
 *   counters: a message of group `g` gets the id `seq × ID_SHARDS + g mod ID_SHARDS`,
 *   so ids are unique, grow within a conversation, and no single key serializes
 *   every message of every conversation
 * - `["chat_dedupe", kind, senderId, clientMessageId]` → `{ chatGroupId, chatId }`,
 *   written in the same atomic operation as the message and expiring after the
 *   dedupe window
 *
 * Several processes may share one KV file: every write that depends on a read
 * checks the read's versionstamp and retries on conflict.
 *
 * @module
 */

import { ServanaError } from "../errors.ts";
import { backoff, commitResult, RecentWrites, tryCommit } from "../kv_retry.ts";
import {
  type AddMessageResult,
  type Agent,
  agentRole,
  type AssignOptions,
  type ChatGroup,
  type ChatGroupCounts,
  type ChatMessage,
  type ChatStore,
  type Conversation,
  type Customer,
  type Department,
  type Fixture,
  type FixtureChatGroup,
  type FixtureClient,
  type FixtureImage,
  type FixtureProfile,
  type FixtureRole,
  type FixtureSysUser,
  type ListMessagesOptions,
  type MarkDeliveredOptions,
  type MarkReadOptions,
  type NewMessage,
  type Person,
  type PersonRef,
  type QueuedChat,
} from "./mod.ts";

/** Counters message ids are drawn from (ids of one conversation share a counter). */
export const ID_SHARDS = 64;

/** Most messages remembered by `KvStore` between their write and their delivery update. */
const JUST_WRITTEN_MAX = 4096;

/** Default dedupe window of `clientMessageId`s: a day. */
export const DEFAULT_DEDUPE_WINDOW_MS = 86_400_000;

const COUNTS_KEY: Deno.KvKey = ["meta", "chat_group_counts"];
const PING_KEY: Deno.KvKey = ["meta", "ping"];
/** Attempts of one optimistic write before giving up. */
const MAX_ATTEMPTS = 200;
const DEFAULT_LIMIT = 50;
/** Newest messages looked at by one `markRead`. */
const READ_SCAN = 500;
/** Mutations per atomic operation when loading a fixture (KV allows 1000). */
const BATCH = 400;

/** Options of {@linkcode KvStore}. */
export interface KvStoreOptions {
  /** How long a `clientMessageId` is remembered, ms (default a day). */
  dedupeWindowMs?: number;
}

interface DedupeEntry {
  chatGroupId: number;
  chatId: number;
}

function conflict(what: string): Error {
  return new Error(`KvStore: too many write conflicts on ${what}`);
}

function nameOf(value: string | null | undefined): string {
  return value ?? "";
}

/** An active flag: true when absent from the fixture (the column's default), false when NULL. */
function isTrue(flag: boolean | null | undefined): boolean {
  return flag === undefined || flag === true;
}

/** Chat data in Deno KV. `close()` closes the KV it was given. */
export class KvStore implements ChatStore {
  /** Always `"kv"`. */
  readonly kind = "kv" as const;
  readonly #kv: Deno.Kv;
  readonly #dedupeWindowMs: number;
  #closed = false;
  /**
   * Tail of this instance's allocations per counter: they run one at a time,
   * so that concurrent sends of one process never race for a counter
   * (racing writers retry, and under load the retries alone saturate KV).
   * Other processes on the same KV still race, and retry.
   */
  readonly #tails = new Map<number, Promise<unknown>>();
  /**
   * Messages this process just wrote: the delivery update that follows
   * checks that write instead of reading the message again.
   */
  readonly #justWritten = new RecentWrites<ChatMessage>({ max: JUST_WRITTEN_MAX });

  /** Wraps an open KV; the store owns it from now on. */
  constructor(kv: Deno.Kv, options: KvStoreOptions = {}) {
    this.#kv = kv;
    this.#dedupeWindowMs = options.dedupeWindowMs ?? DEFAULT_DEDUPE_WINDOW_MS;
  }

  /** Every agent whose `supabase_user_id` is `authId`, active or not. */
  async findAgentsByAuthId(authId: string): Promise<Agent[]> {
    const ids: number[] = [];
    for await (const entry of this.#kv.list({ prefix: ["agent_auth", authId] })) {
      ids.push(entry.key[2] as number);
    }
    const agents = await this.#getMany<Agent>(ids.map((id) => ["agent", id]));
    return agents.filter((agent) => agent.authId === authId);
  }

  /** A person by kind and id, or null. */
  async getPerson(ref: PersonRef): Promise<Person | null> {
    return (await this.#kv.get<Person>(personRecordKey(ref))).value;
  }

  /** The people that exist among `refs`. */
  getPeople(refs: readonly PersonRef[]): Promise<Person[]> {
    return this.#getMany<Person>(refs.map(personRecordKey));
  }

  /** Every active agent, ascending id. */
  async listAgents(): Promise<Agent[]> {
    const agents: Agent[] = [];
    for await (const entry of this.#kv.list<Agent>({ prefix: ["agent"] })) {
      if (entry.value.active) agents.push(entry.value);
    }
    return agents;
  }

  /** A department by id, or null. */
  async getDepartment(id: number): Promise<Department | null> {
    return (await this.#kv.get<Department>(["department", id])).value;
  }

  /** Every department, ascending id. */
  async listDepartments(): Promise<Department[]> {
    const departments: Department[] = [];
    for await (const entry of this.#kv.list<Department>({ prefix: ["department"] })) {
      departments.push(entry.value);
    }
    return departments;
  }

  /** A chat group by id, or null. */
  async getChatGroup(id: number): Promise<ChatGroup | null> {
    return (await this.#kv.get<ChatGroup>(["chat_group", id])).value;
  }

  /** The chat groups that exist among `ids`. */
  getChatGroups(ids: readonly number[]): Promise<ChatGroup[]> {
    return this.#getMany<ChatGroup>(ids.map((id) => ["chat_group", id]));
  }

  /** A group with its customer and department, or null. */
  async getConversation(id: number): Promise<Conversation | null> {
    const group = await this.getChatGroup(id);
    if (group === null) return null;
    const [customer, department] = await this.#kv.getMany<[Customer, Department]>([
      ["client", group.clientId],
      ["department", group.departmentId ?? 0],
    ]);
    return {
      group,
      customer: customer.value,
      department: group.departmentId === null ? null : department.value,
    };
  }

  /** Total and active chat groups (a maintained counter, one read). */
  async countChatGroups(): Promise<ChatGroupCounts> {
    return (await this.#kv.get<ChatGroupCounts>(COUNTS_KEY)).value ?? { total: 0, active: 0 };
  }

  /**
   * Stores a message with the next id of its group's counter. Rejects with
   * `ROOM_NOT_FOUND` for an unknown group and `USER_NOT_FOUND` for an unknown
   * sender.
   */
  async addMessage(input: NewMessage): Promise<AddMessageResult> {
    const shard = input.chatGroupId % ID_SHARDS;
    const tail = this.#tails.get(shard) ?? Promise.resolve();
    const run = tail.then(() => this.#allocate(input, shard));
    const settled = run.catch(() => {});
    this.#tails.set(shard, settled);
    settled.then(() => {
      if (this.#tails.get(shard) === settled) this.#tails.delete(shard);
    });
    return await run;
  }

  /**
   * Reads the group, the sender and the counter (one read), and commits the
   * message under the next id (retried on conflict).
   */
  async #allocate(input: NewMessage, shard: number): Promise<AddMessageResult> {
    const seqKey: Deno.KvKey = ["chat_seq", shard];
    const clientMessageId = input.clientMessageId ?? null;
    const dedupeKey: Deno.KvKey | null = clientMessageId === null
      ? null
      : ["chat_dedupe", input.sender.kind, input.sender.id, clientMessageId];
    const checked: Deno.KvKey[] = [
      ["chat_group", input.chatGroupId],
      personRecordKey(input.sender),
    ];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      const keys: Deno.KvKey[] = [...checked, seqKey];
      if (dedupeKey !== null) keys.push(dedupeKey);
      const entries = await this.#kv.getMany<unknown[]>(keys);
      if (entries[0].value === null) {
        throw new ServanaError("ROOM_NOT_FOUND", `Chat group ${input.chatGroupId} not found`);
      }
      if (entries[1].value === null) {
        throw new ServanaError("USER_NOT_FOUND", `Sender ${input.sender.id} not found`);
      }
      const seq = entries[2] as Deno.KvEntryMaybe<number>;
      const dedupe = (dedupeKey === null ? null : entries[3]) as
        | Deno.KvEntryMaybe<DedupeEntry>
        | null;
      if (dedupe !== null && dedupe.value !== null) {
        const earlier = await this.#kv.get<ChatMessage>([
          "chat",
          dedupe.value.chatGroupId,
          dedupe.value.chatId,
        ]);
        if (earlier.value !== null) return { message: earlier.value, created: false };
        // The dedupe entry points nowhere (message removed): store anew.
      }
      const next = (seq.value ?? 0) + 1;
      const message: ChatMessage = {
        id: next * ID_SHARDS + shard,
        chatGroupId: input.chatGroupId,
        body: input.body,
        createdAt: new Date().toISOString(),
        sender: { kind: input.sender.kind, id: input.sender.id },
        deliveredAt: null,
        readAt: null,
      };
      const op = this.#kv.atomic().check(seq).set(seqKey, next).set(
        ["chat", input.chatGroupId, message.id],
        message,
      );
      if (dedupe !== null && dedupeKey !== null) {
        op.check(dedupe).set(dedupeKey, { chatGroupId: input.chatGroupId, chatId: message.id }, {
          expireIn: this.#dedupeWindowMs,
        });
      }
      const committed = await commitResult(op);
      if (committed !== null) {
        this.#justWritten.remember(
          ["chat", input.chatGroupId, message.id],
          message,
          committed.versionstamp,
        );
        return { message, created: true };
      }
    }
    throw conflict("the message counter");
  }

  /** Sets the delivery (and read) time of a message. */
  async markDelivered(
    ref: Pick<ChatMessage, "id" | "chatGroupId">,
    options: MarkDeliveredOptions,
  ): Promise<void> {
    const at = options.at.toISOString();
    const key: Deno.KvKey = ["chat", ref.chatGroupId, ref.id];
    const change = (message: ChatMessage): ChatMessage => ({
      ...message,
      deliveredAt: at,
      readAt: options.read ? at : message.readAt,
    });
    const known = this.#justWritten.take(key);
    if (known !== undefined) {
      if (await tryCommit(this.#kv.atomic().check(known).set(key, change(known.value)))) return;
    }
    await this.#updateMessage(key, change);
  }

  /** Marks the newest delivered, unread messages of the other side as read. */
  async markRead(options: MarkReadOptions): Promise<number[]> {
    const writer = options.reader === "client" ? "agent" : "client";
    const since = options.since?.toISOString();
    const picked: Deno.KvKey[] = [];
    const entries = this.#kv.list<ChatMessage>(
      { prefix: ["chat", options.chatGroupId] },
      { reverse: true, limit: READ_SCAN },
    );
    for await (const entry of entries) {
      const m = entry.value;
      if (since !== undefined && m.createdAt < since) break;
      if (m.readAt === null && m.deliveredAt !== null && m.sender?.kind === writer) {
        picked.push(entry.key);
        if (picked.length >= options.limit) break;
      }
    }
    const at = options.at.toISOString();
    const marked: number[] = [];
    for (const key of picked) {
      const done = await this.#updateMessage(
        key,
        (message) => message.readAt === null ? { ...message, readAt: at } : null,
      );
      if (done) marked.push(key[2] as number);
    }
    return marked;
  }

  /** Read-modify-write of one message; `change` returning null leaves it. True when written. */
  async #updateMessage(
    key: Deno.KvKey,
    change: (message: ChatMessage) => ChatMessage | null,
  ): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      const entry = await this.#kv.get<ChatMessage>(key);
      if (entry.value === null) return false;
      const next = change(entry.value);
      if (next === null) return false;
      if (await tryCommit(this.#kv.atomic().check(entry).set(key, next))) return true;
    }
    throw conflict(`message ${String(key[2])}`);
  }

  /** The newest `limit` messages of a group with `id < before`, in ascending id order. */
  async listMessages(
    chatGroupId: number,
    options: ListMessagesOptions = {},
  ): Promise<ChatMessage[]> {
    const limit = Math.floor(options.limit ?? DEFAULT_LIMIT);
    if (!(limit > 0)) return [];
    const prefix: Deno.KvKey = ["chat", chatGroupId];
    const selector: Deno.KvListSelector = options.before === undefined
      ? { prefix }
      : { prefix, end: ["chat", chatGroupId, options.before] };
    const messages: ChatMessage[] = [];
    for await (const entry of this.#kv.list<ChatMessage>(selector, { reverse: true, limit })) {
      messages.push(entry.value);
    }
    return messages.reverse();
  }

  /** Queued, unassigned conversations of these departments, oldest first. */
  async listQueued(departmentIds: readonly number[]): Promise<QueuedChat[]> {
    const queued: QueuedChat[] = [];
    for (const departmentId of new Set(departmentIds)) {
      const entries = this.#kv.list<{ clientId: number; createdAt: string | null }>({
        prefix: ["queued", departmentId],
      });
      for await (const entry of entries) {
        queued.push({
          chatGroupId: entry.key[2] as number,
          departmentId,
          clientId: entry.value.clientId,
          createdAt: entry.value.createdAt,
        });
      }
    }
    return queued.sort(byCreatedAt);
  }

  /** Active conversations per agent. */
  async activeLoads(agentIds: readonly number[]): Promise<Map<number, number>> {
    const loads = new Map<number, number>();
    for (const agentId of new Set(agentIds)) loads.set(agentId, await this.#countActive(agentId));
    return loads;
  }

  async #countActive(agentId: number): Promise<number> {
    let n = 0;
    for await (const _ of this.#kv.list({ prefix: ["agent_active", agentId] })) n++;
    return n;
  }

  /** Assigns a queued, unassigned conversation to an agent, atomically. */
  async assignQueued(
    chatGroupId: number,
    agentId: number,
    options: AssignOptions,
  ): Promise<ChatGroup | null> {
    const groupKey: Deno.KvKey = ["chat_group", chatGroupId];
    const versionKey: Deno.KvKey = ["agent_active_v", agentId];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      const [group, version] = await this.#kv.getMany<[ChatGroup, number]>([
        groupKey,
        versionKey,
      ]);
      const current = group.value;
      if (current === null || current.status !== "queued" || current.agentId !== null) {
        return null;
      }
      if (await this.#countActive(agentId) >= options.maxActive) return null;
      const next: ChatGroup = { ...current, agentId, status: "active" };
      const op = this.#kv.atomic().check(version);
      const committed = await this.#writeGroup(next, { op, existing: group });
      if (committed) return next;
    }
    throw conflict(`chat group ${chatGroupId}`);
  }

  /**
   * Inserts or updates the rows of a fixture. References (profiles, roles,
   * departments, people) must exist in the fixture or the store, else it
   * rejects with `INVALID_DATA` before writing.
   */
  async loadFixture(fixture: Fixture): Promise<void> {
    await this.#checkReferences(fixture);
    const sets: [Deno.KvKey, unknown][] = [];
    for (const row of fixture.role ?? []) sets.push([["row", "role", row.role_id], row]);
    for (const row of fixture.profile ?? []) sets.push([["row", "profile", row.prof_id], row]);
    for (const row of fixture.image ?? []) sets.push([["row", "image", row.img_id], row]);
    for (const row of fixture.sys_user ?? []) {
      sets.push([["row", "sys_user", row.sys_user_id], row]);
    }
    for (const row of fixture.sys_user_department ?? []) {
      sets.push([["row", "sys_user_department", row.sys_user_id, row.dept_id], row]);
    }
    for (const row of fixture.client ?? []) sets.push([["row", "client", row.client_id], row]);
    for (const row of fixture.department ?? []) {
      const department: Department = {
        id: row.dept_id,
        name: row.dept_name,
        active: isTrue(row.dept_is_active),
      };
      sets.push([["department", row.dept_id], department]);
    }
    await this.#setAll(sets);
    await this.#rebuildPeople();
    for (const row of fixture.chat_group ?? []) await this.#putChatGroup(row);
  }

  async #checkReferences(fixture: Fixture): Promise<void> {
    const known = {
      profile: new Set((fixture.profile ?? []).map((row) => row.prof_id)),
      role: new Set((fixture.role ?? []).map((row) => row.role_id)),
      department: new Set((fixture.department ?? []).map((row) => row.dept_id)),
      sys_user: new Set((fixture.sys_user ?? []).map((row) => row.sys_user_id)),
      client: new Set((fixture.client ?? []).map((row) => row.client_id)),
    };
    const problems: string[] = [];
    const need = async (what: string, table: keyof typeof known, id: number | null | undefined) => {
      if (id === null || id === undefined || known[table].has(id)) return;
      const key: Deno.KvKey = table === "department" ? ["department", id] : ["row", table, id];
      if ((await this.#kv.get(key)).value === null) {
        problems.push(`${what} refers to unknown ${table} ${id}`);
      }
    };
    for (const row of fixture.image ?? []) {
      await need(`image ${row.img_id}`, "profile", row.prof_id);
    }
    for (const row of fixture.sys_user ?? []) {
      await need(`sys_user ${row.sys_user_id}`, "profile", row.prof_id);
      await need(`sys_user ${row.sys_user_id}`, "role", row.role_id);
    }
    for (const row of fixture.sys_user_department ?? []) {
      await need("sys_user_department", "sys_user", row.sys_user_id);
      await need("sys_user_department", "department", row.dept_id);
    }
    for (const row of fixture.client ?? []) {
      await need(`client ${row.client_id}`, "profile", row.prof_id);
    }
    for (const row of fixture.chat_group ?? []) {
      await need(`chat_group ${row.chat_group_id}`, "client", row.client_id);
      await need(`chat_group ${row.chat_group_id}`, "sys_user", row.sys_user_id);
      await need(`chat_group ${row.chat_group_id}`, "department", row.dept_id);
    }
    if (problems.length > 0) {
      throw new ServanaError("INVALID_DATA", `Fixture rejected: ${problems.join("; ")}`);
    }
  }

  /** Rebuilds every agent and customer record (and the auth index) from the stored rows. */
  async #rebuildPeople(): Promise<void> {
    const rows = async <T>(table: string) => {
      const found: T[] = [];
      for await (const entry of this.#kv.list<T>({ prefix: ["row", table] })) {
        found.push(entry.value);
      }
      return found;
    };
    const profiles = new Map(
      (await rows<FixtureProfile>("profile")).map((row) => [row.prof_id, row]),
    );
    const roles = new Map((await rows<FixtureRole>("role")).map((row) => [row.role_id, row]));
    const images = new Map<number, FixtureImage>();
    for (const image of await rows<FixtureImage>("image")) {
      if (image.img_is_current !== true) continue;
      const held = images.get(image.prof_id);
      if (held === undefined || held.img_id < image.img_id) images.set(image.prof_id, image);
    }
    const departments = new Map<number, number[]>();
    for (const row of await rows<{ sys_user_id: number; dept_id: number }>("sys_user_department")) {
      const list = departments.get(row.sys_user_id) ?? [];
      if (!list.includes(row.dept_id)) list.push(row.dept_id);
      departments.set(row.sys_user_id, list);
    }
    const sets: [Deno.KvKey, unknown][] = [];
    const deletes: Deno.KvKey[] = [];
    for await (const entry of this.#kv.list({ prefix: ["agent_auth"] })) deletes.push(entry.key);
    for (const row of await rows<FixtureSysUser>("sys_user")) {
      const agent = toAgent(row, {
        profile: row.prof_id == null ? undefined : profiles.get(row.prof_id),
        role: row.role_id == null ? undefined : roles.get(row.role_id),
        image: row.prof_id == null ? undefined : images.get(row.prof_id),
        departments: departments.get(row.sys_user_id) ?? [],
      });
      sets.push([["agent", agent.id], agent]);
      if (agent.authId !== null) sets.push([["agent_auth", agent.authId, agent.id], true]);
    }
    for (const row of await rows<FixtureClient>("client")) {
      const customer = toCustomer(row, {
        profile: row.prof_id == null ? undefined : profiles.get(row.prof_id),
        image: row.prof_id == null ? undefined : images.get(row.prof_id),
      });
      sets.push([["client", customer.id], customer]);
    }
    const kept = new Set(sets.map(([key]) => JSON.stringify(key)));
    await this.#deleteAll(deletes.filter((key) => !kept.has(JSON.stringify(key))));
    await this.#setAll(sets);
  }

  async #setAll(sets: [Deno.KvKey, unknown][]): Promise<void> {
    for (let i = 0; i < sets.length; i += BATCH) {
      const op = this.#kv.atomic();
      for (const [key, value] of sets.slice(i, i + BATCH)) op.set(key, value);
      await this.#commitOrThrow(op, "fixture rows");
    }
  }

  async #deleteAll(keys: Deno.KvKey[]): Promise<void> {
    for (let i = 0; i < keys.length; i += BATCH) {
      const op = this.#kv.atomic();
      for (const key of keys.slice(i, i + BATCH)) op.delete(key);
      await this.#commitOrThrow(op, "fixture rows");
    }
  }

  async #commitOrThrow(op: Deno.AtomicOperation, what: string): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      if (await tryCommit(op)) return;
    }
    throw conflict(what);
  }

  async #putChatGroup(row: FixtureChatGroup): Promise<void> {
    const key: Deno.KvKey = ["chat_group", row.chat_group_id];
    const next: ChatGroup = {
      id: row.chat_group_id,
      clientId: row.client_id,
      departmentId: row.dept_id ?? null,
      agentId: row.sys_user_id ?? null,
      status: row.status ?? null,
      createdAt: row.created_at == null ? null : new Date(naiveAsUtc(row.created_at)).toISOString(),
    };
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      const existing = await this.#kv.get<ChatGroup>(key);
      if (await this.#writeGroup(next, { op: this.#kv.atomic(), existing })) return;
    }
    throw conflict(`chat group ${row.chat_group_id}`);
  }

  /**
   * Writes a chat group with its indexes and counters in one atomic
   * operation (on top of `op`'s checks); false on a conflict.
   */
  async #writeGroup(
    next: ChatGroup,
    options: { op: Deno.AtomicOperation; existing: Deno.KvEntryMaybe<ChatGroup> },
  ): Promise<boolean> {
    const { op, existing } = options;
    const before = existing.value;
    const agents = new Set<number>();
    if (before?.agentId != null) agents.add(before.agentId);
    if (next.agentId !== null) agents.add(next.agentId);
    const [counts, ...versions] = await this.#kv.getMany<unknown[]>([
      COUNTS_KEY,
      ...[...agents].map((id) => ["agent_active_v", id]),
    ]);
    const total = (counts.value as ChatGroupCounts | null) ?? { total: 0, active: 0 };
    const nextCounts: ChatGroupCounts = {
      total: total.total + (before === null ? 1 : 0),
      active: total.active - (before?.status === "active" ? 1 : 0) +
        (next.status === "active" ? 1 : 0),
    };
    op.check(existing).check(counts).set(["chat_group", next.id], next).set(COUNTS_KEY, nextCounts);
    if (before !== null && isQueued(before) && before.departmentId !== null) {
      op.delete(["queued", before.departmentId, before.id]);
    }
    if (isQueued(next) && next.departmentId !== null) {
      op.set(["queued", next.departmentId, next.id], {
        clientId: next.clientId,
        createdAt: next.createdAt,
      });
    }
    if (before !== null && before.status === "active" && before.agentId !== null) {
      op.delete(["agent_active", before.agentId, before.id]);
    }
    if (next.status === "active" && next.agentId !== null) {
      op.set(["agent_active", next.agentId, next.id], true);
    }
    versions.forEach((entry, i) => {
      const agentId = [...agents][i];
      op.check(entry).set(["agent_active_v", agentId], ((entry.value as number | null) ?? 0) + 1);
    });
    return await tryCommit(op);
  }

  async #getMany<T>(keys: Deno.KvKey[]): Promise<T[]> {
    const found: T[] = [];
    for (let i = 0; i < keys.length; i += 10) {
      const entries = await this.#kv.getMany<T[]>(keys.slice(i, i + 10));
      for (const entry of entries) if (entry.value !== null) found.push(entry.value as T);
    }
    return found;
  }

  /** Resolves when KV answers a read. */
  async ping(): Promise<void> {
    await this.#kv.get(PING_KEY);
  }

  /** Closes the KV (once). */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#kv.close();
    }
    return Promise.resolve();
  }
}

/** Opens Deno KV (`path`: a file, `:memory:`, or Deno Deploy's database when absent). */
export async function openKvStore(path?: string, options?: KvStoreOptions): Promise<KvStore> {
  return new KvStore(await Deno.openKv(path), options);
}

function personRecordKey(ref: PersonRef): Deno.KvKey {
  return [ref.kind === "agent" ? "agent" : "client", ref.id];
}

function isQueued(group: ChatGroup): boolean {
  return group.status === "queued" && group.agentId === null;
}

function byCreatedAt(a: QueuedChat, b: QueuedChat): number {
  if (a.createdAt === b.createdAt) return a.chatGroupId - b.chatGroupId;
  if (a.createdAt === null) return 1;
  if (b.createdAt === null) return -1;
  return a.createdAt < b.createdAt ? -1 : 1;
}

/** A fixture time without an offset is UTC (Servana writes UTC into its no-time-zone columns). */
function naiveAsUtc(time: string): string {
  return /(?:Z|[+-]\d\d:?\d\d)$/i.test(time) ? time : `${time}Z`;
}

function toAgent(
  row: FixtureSysUser,
  related: {
    profile?: FixtureProfile;
    role?: FixtureRole;
    image?: FixtureImage;
    departments: number[];
  },
): Agent {
  const roleName = related.role?.role_name ?? null;
  return {
    kind: "agent",
    id: row.sys_user_id,
    role: agentRole(roleName),
    authId: row.supabase_user_id ?? null,
    email: row.sys_user_email,
    roleName,
    departments: [...related.departments].sort((a, b) => a - b),
    firstName: nameOf(related.profile?.prof_firstname),
    lastName: nameOf(related.profile?.prof_lastname),
    image: related.image?.img_location ?? null,
    active: isTrue(row.sys_user_is_active),
  };
}

function toCustomer(
  row: FixtureClient,
  related: { profile?: FixtureProfile; image?: FixtureImage },
): Customer {
  return {
    kind: "client",
    id: row.client_id,
    role: "client",
    number: row.client_number,
    countryCode: row.client_country_code,
    firstName: nameOf(related.profile?.prof_firstname),
    lastName: nameOf(related.profile?.prof_lastname),
    image: related.image?.img_location ?? null,
    active: isTrue(row.client_is_active),
  };
}
