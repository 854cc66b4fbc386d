/**
 * {@linkcode ChatStore} over Deno KV, the default store (`KV_PATH`, Deno
 * Deploy's attached database, `:memory:` in tests).
 *
 * Keys:
 * - `["users", id]` → {@linkcode User}; `["users_by_auth", authId]` → user id
 * - `["departments", id]` → {@linkcode Department}
 * - `["chat_groups", id]` → {@linkcode ChatGroup}; `["meta", "chat_group_counts"]` → counts
 * - `["meta", "message_seq"]` → last message id (allocated by an atomic check on its versionstamp)
 * - `["messages", chatGroupId, id]` → {@linkcode ChatMessage}
 * - `["msgdedupe", senderId, clientMessageId]` → `{ id, chatGroupId }`, written in the
 *   same atomic operation as the message
 *
 * Several processes may share one KV file: every write that depends on a read
 * checks the read's versionstamp and retries on conflict.
 *
 * @module
 */

import { ServanaError } from "../errors.ts";
import { backoff, tryCommit } from "../kv_retry.ts";
import type {
  AddMessageResult,
  ChatGroup,
  ChatGroupCounts,
  ChatMessage,
  ChatStore,
  Department,
  Fixture,
  ListMessagesOptions,
  NewMessage,
  User,
} from "./mod.ts";

const SEQ_KEY: Deno.KvKey = ["meta", "message_seq"];
const COUNTS_KEY: Deno.KvKey = ["meta", "chat_group_counts"];
const PING_KEY: Deno.KvKey = ["meta", "ping"];
/** Attempts of one optimistic write before giving up (many writers on one counter). */
const MAX_ATTEMPTS = 200;
const DEFAULT_LIMIT = 50;

/** Where `{@linkcode KvStore}` keeps a dedupe entry. */
interface DedupeEntry {
  id: number;
  chatGroupId: number;
}

function normalizeDepartments(ids: readonly number[]): number[] {
  return [...new Set(ids)].sort((a, b) => a - b);
}

function conflict(what: string): Error {
  return new Error(`KvStore: too many write conflicts on ${what}`);
}

/** Chat data in Deno KV. `close()` closes the KV it was given. */
export class KvStore implements ChatStore {
  /** Always `"kv"`. */
  readonly kind = "kv" as const;
  readonly #kv: Deno.Kv;
  #closed = false;
  /**
   * Tail of this instance's message-id allocations: they run one at a time,
   * so that concurrent sends of one process never race for the counter
   * (racing writers retry, and under load the retries alone saturate KV).
   * Other processes on the same KV still race, and retry.
   */
  #seqTail: Promise<unknown> = Promise.resolve();

  /** Wraps an open KV; the store owns it from now on. */
  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /** User by Servana id, or null. */
  async getUser(id: number): Promise<User | null> {
    return (await this.#kv.get<User>(["users", id])).value;
  }

  /** User by Supabase auth id (a token's `sub`), or null. */
  async getUserByAuthId(authId: string): Promise<User | null> {
    const index = await this.#kv.get<number>(["users_by_auth", authId]);
    if (index.value === null) return null;
    const user = await this.getUser(index.value);
    // A concurrent authId change may leave us with another user's record.
    return user !== null && user.authId === authId ? user : null;
  }

  /** Department by id, or null. */
  async getDepartment(id: number): Promise<Department | null> {
    return (await this.#kv.get<Department>(["departments", id])).value;
  }

  /** Chat group by id, or null. */
  async getChatGroup(id: number): Promise<ChatGroup | null> {
    return (await this.#kv.get<ChatGroup>(["chat_groups", id])).value;
  }

  /** Total and active chat groups (a maintained counter, one read). */
  async countChatGroups(): Promise<ChatGroupCounts> {
    const counts = await this.#kv.get<ChatGroupCounts>(COUNTS_KEY);
    return counts.value ?? { total: 0, active: 0 };
  }

  /**
   * Stores a message with the next id. Rejects with `ROOM_NOT_FOUND` for an
   * unknown group and `USER_NOT_FOUND` for an unknown sender.
   */
  async addMessage(input: NewMessage): Promise<AddMessageResult> {
    const [group, sender] = await this.#kv.getMany<[ChatGroup, User]>([
      ["chat_groups", input.chatGroupId],
      ["users", input.senderId],
    ]);
    if (group.value === null) {
      throw new ServanaError("ROOM_NOT_FOUND", `Chat group ${input.chatGroupId} not found`);
    }
    if (sender.value === null) {
      throw new ServanaError("USER_NOT_FOUND", `User ${input.senderId} not found`);
    }
    const clientMessageId = input.clientMessageId ?? null;
    const dedupeKey: Deno.KvKey | null = clientMessageId === null
      ? null
      : ["msgdedupe", input.senderId, clientMessageId];
    const run = this.#seqTail.then(() => this.#allocate(input, clientMessageId, dedupeKey));
    this.#seqTail = run.catch(() => {});
    return await run;
  }

  /** Reads the counter and commits the message under the next id (retried on conflict). */
  async #allocate(
    input: NewMessage,
    clientMessageId: string | null,
    dedupeKey: Deno.KvKey | null,
  ): Promise<AddMessageResult> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      const keys: Deno.KvKey[] = dedupeKey === null ? [SEQ_KEY] : [SEQ_KEY, dedupeKey];
      const entries = await this.#kv.getMany<unknown[]>(keys);
      const seq = entries[0] as Deno.KvEntryMaybe<number>;
      const dedupe = (dedupeKey === null ? null : entries[1]) as
        | Deno.KvEntryMaybe<DedupeEntry>
        | null;
      if (dedupe !== null && dedupe.value !== null) {
        const earlier = await this.#kv.get<ChatMessage>([
          "messages",
          dedupe.value.chatGroupId,
          dedupe.value.id,
        ]);
        if (earlier.value !== null) return { message: earlier.value, created: false };
        // The dedupe entry points nowhere (message removed): store anew.
      }
      const id = (seq.value ?? 0) + 1;
      const message: ChatMessage = {
        id,
        chatGroupId: input.chatGroupId,
        senderId: input.senderId,
        senderType: input.senderType,
        message: input.message,
        createdAt: new Date().toISOString(),
        clientMessageId,
      };
      const op = this.#kv.atomic().check(seq).set(SEQ_KEY, id).set(
        ["messages", input.chatGroupId, id],
        message,
      );
      if (dedupe !== null && dedupeKey !== null) {
        op.check(dedupe).set(dedupeKey, { id, chatGroupId: input.chatGroupId });
      }
      if (await tryCommit(op)) return { message, created: true };
    }
    throw conflict("the message counter");
  }

  /** The newest `limit` messages of a group with `id < before`, in ascending id order. */
  async listMessages(
    chatGroupId: number,
    options: ListMessagesOptions = {},
  ): Promise<ChatMessage[]> {
    const limit = Math.floor(options.limit ?? DEFAULT_LIMIT);
    if (!(limit > 0)) return [];
    const prefix: Deno.KvKey = ["messages", chatGroupId];
    const selector: Deno.KvListSelector = options.before === undefined
      ? { prefix }
      : { prefix, end: ["messages", chatGroupId, options.before] };
    const messages: ChatMessage[] = [];
    for await (const entry of this.#kv.list<ChatMessage>(selector, { reverse: true, limit })) {
      messages.push(entry.value);
    }
    return messages.reverse();
  }

  /**
   * Inserts or updates departments, users and chat groups. References
   * (user departments, group client, agent and department) must exist in the
   * fixture or the store, else it rejects with `INVALID_DATA` before writing.
   */
  async loadFixture(fixture: Fixture): Promise<void> {
    const departments = fixture.departments ?? [];
    const users = fixture.users ?? [];
    const groups = fixture.chatGroups ?? [];
    await this.#checkReferences(departments, users, groups);
    for (const department of departments) {
      await this.#kv.set(["departments", department.id], {
        id: department.id,
        name: department.name,
      });
    }
    for (const user of users) await this.#putUser(user);
    for (const group of groups) await this.#putChatGroup(group);
  }

  async #checkReferences(
    departments: readonly Department[],
    users: readonly User[],
    groups: readonly ChatGroup[],
  ): Promise<void> {
    const departmentIds = new Set(departments.map((department) => department.id));
    const userIds = new Set(users.map((user) => user.id));
    const missingDepartment = async (id: number) =>
      !departmentIds.has(id) && (await this.getDepartment(id)) === null;
    const missingUser = async (id: number) => !userIds.has(id) && (await this.getUser(id)) === null;
    for (const user of users) {
      for (const departmentId of user.departments) {
        if (await missingDepartment(departmentId)) {
          throw new ServanaError(
            "INVALID_DATA",
            `User ${user.id} refers to unknown department ${departmentId}`,
          );
        }
      }
    }
    for (const group of groups) {
      if (await missingUser(group.clientId)) {
        throw new ServanaError(
          "INVALID_DATA",
          `Chat group ${group.id} refers to unknown client ${group.clientId}`,
        );
      }
      if (group.agentId !== null && await missingUser(group.agentId)) {
        throw new ServanaError(
          "INVALID_DATA",
          `Chat group ${group.id} refers to unknown agent ${group.agentId}`,
        );
      }
      if (group.departmentId !== null && await missingDepartment(group.departmentId)) {
        throw new ServanaError(
          "INVALID_DATA",
          `Chat group ${group.id} refers to unknown department ${group.departmentId}`,
        );
      }
    }
  }

  /** Writes a user and its authId index; drops the old index when the authId changed. */
  async #putUser(input: User): Promise<void> {
    const user: User = {
      id: input.id,
      authId: input.authId,
      role: input.role,
      departments: normalizeDepartments(input.departments),
      firstName: input.firstName,
      lastName: input.lastName,
    };
    const userKey: Deno.KvKey = ["users", user.id];
    const indexKey: Deno.KvKey = ["users_by_auth", user.authId];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      const [existing, index] = await this.#kv.getMany<[User, number]>([userKey, indexKey]);
      if (index.value !== null && index.value !== user.id) {
        const holder = await this.getUser(index.value);
        if (holder !== null && holder.authId === user.authId) {
          throw new ServanaError(
            "INVALID_DATA",
            `User ${user.id}: authId ${user.authId} already belongs to user ${index.value}`,
          );
        }
      }
      const op = this.#kv.atomic().check(existing).check(index).set(userKey, user).set(
        indexKey,
        user.id,
      );
      if (existing.value !== null && existing.value.authId !== user.authId) {
        const oldIndexKey: Deno.KvKey = ["users_by_auth", existing.value.authId];
        const oldIndex = await this.#kv.get<number>(oldIndexKey);
        op.check(oldIndex);
        if (oldIndex.value === user.id) op.delete(oldIndexKey);
      }
      if (await tryCommit(op)) return;
    }
    throw conflict(`user ${user.id}`);
  }

  /** Writes a chat group and adjusts the counters in the same atomic operation. */
  async #putChatGroup(input: ChatGroup): Promise<void> {
    const group: ChatGroup = {
      id: input.id,
      clientId: input.clientId,
      departmentId: input.departmentId ?? null,
      agentId: input.agentId ?? null,
      status: input.status,
    };
    const key: Deno.KvKey = ["chat_groups", group.id];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await backoff(attempt);
      const [existing, counts] = await this.#kv.getMany<[ChatGroup, ChatGroupCounts]>([
        key,
        COUNTS_KEY,
      ]);
      const next: ChatGroupCounts = { ...(counts.value ?? { total: 0, active: 0 }) };
      if (existing.value === null) next.total += 1;
      if (existing.value !== null && existing.value.status === "active") next.active -= 1;
      if (group.status === "active") next.active += 1;
      const op = this.#kv.atomic().check(existing).check(counts).set(key, group).set(
        COUNTS_KEY,
        next,
      );
      if (await tryCommit(op)) return;
    }
    throw conflict(`chat group ${group.id}`);
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
export async function openKvStore(path?: string): Promise<KvStore> {
  return new KvStore(await Deno.openKv(path));
}
