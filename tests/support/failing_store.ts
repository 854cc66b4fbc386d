/**
 * Test helper: a {@linkcode ChatStore} that delegates to a real store,
 * whose `addMessage` rejects while `failAddMessage` is set (a storage outage)
 * and whose next `getChatGroup` (to close a socket mid-event) or
 * `addMessage` (an in-flight send) can be held.
 *
 * @module
 */

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
} from "../../src/store/mod.ts";

/** A store whose writes of messages can be made to fail or be held. */
export class FailingStore implements ChatStore {
  /** Delegates' kind. */
  readonly kind: "kv" | "postgres";
  /** While true, `addMessage` rejects with a plain Error (not a ServanaError). */
  failAddMessage = false;
  /** How many `addMessage` calls were refused. */
  refused = 0;
  readonly #inner: ChatStore;
  #hold: { entered: () => void; released: Promise<void> } | null = null;
  #addHold: { entered: () => void; released: Promise<void> } | null = null;
  #batchHold: { entered: () => void; released: Promise<void> } | null = null;

  constructor(inner: ChatStore) {
    this.#inner = inner;
    this.kind = inner.kind;
  }

  findAgentsByAuthId(authId: string): Promise<Agent[]> {
    return this.#inner.findAgentsByAuthId(authId);
  }
  getPerson(ref: PersonRef): Promise<Person | null> {
    return this.#inner.getPerson(ref);
  }
  getPeople(refs: readonly PersonRef[]): Promise<Person[]> {
    return this.#inner.getPeople(refs);
  }
  listAgents(): Promise<Agent[]> {
    return this.#inner.listAgents();
  }
  getDepartment(id: number): Promise<Department | null> {
    return this.#inner.getDepartment(id);
  }
  listDepartments(): Promise<Department[]> {
    return this.#inner.listDepartments();
  }
  /**
   * Makes the next `getChatGroups` (the access check's batch read) wait
   * until `release()` is called; `entered` resolves once it is waiting.
   */
  holdNextGetChatGroups(): { entered: Promise<void>; release: () => void } {
    const entered = Promise.withResolvers<void>();
    const released = Promise.withResolvers<void>();
    this.#batchHold = { entered: entered.resolve, released: released.promise };
    return { entered: entered.promise, release: released.resolve };
  }
  async getChatGroups(ids: readonly number[]): Promise<ChatGroup[]> {
    const hold = this.#batchHold;
    if (hold) {
      this.#batchHold = null;
      hold.entered();
      await hold.released;
    }
    return await this.#inner.getChatGroups(ids);
  }
  /**
   * Makes the next read of a chat group (`getChatGroup`, `getConversation`) wait until `release()` is called;
   * `entered` resolves once it is waiting.
   */
  holdNextGetChatGroup(): { entered: Promise<void>; release: () => void } {
    const entered = Promise.withResolvers<void>();
    const released = Promise.withResolvers<void>();
    this.#hold = { entered: entered.resolve, released: released.promise };
    return { entered: entered.promise, release: released.resolve };
  }
  async #held(): Promise<void> {
    const hold = this.#hold;
    if (hold) {
      this.#hold = null;
      hold.entered();
      await hold.released;
    }
  }
  async getChatGroup(id: number): Promise<ChatGroup | null> {
    await this.#held();
    return await this.#inner.getChatGroup(id);
  }
  async getConversation(id: number): Promise<Conversation | null> {
    await this.#held();
    return await this.#inner.getConversation(id);
  }
  countChatGroups(): Promise<ChatGroupCounts> {
    return this.#inner.countChatGroups();
  }
  /**
   * Makes the next `addMessage` wait until `release()` is called (an
   * in-flight send); `entered` resolves once it is waiting.
   */
  holdNextAddMessage(): { entered: Promise<void>; release: () => void } {
    const entered = Promise.withResolvers<void>();
    const released = Promise.withResolvers<void>();
    this.#addHold = { entered: entered.resolve, released: released.promise };
    return { entered: entered.promise, release: released.resolve };
  }
  async addMessage(message: NewMessage): Promise<AddMessageResult> {
    const hold = this.#addHold;
    if (hold) {
      this.#addHold = null;
      hold.entered();
      await hold.released;
    }
    if (this.failAddMessage) {
      this.refused++;
      throw new Error("simulated storage outage: disk I/O error");
    }
    return await this.#inner.addMessage(message);
  }
  markDelivered(
    message: Pick<ChatMessage, "id" | "chatGroupId">,
    options: MarkDeliveredOptions,
  ): Promise<void> {
    return this.#inner.markDelivered(message, options);
  }
  markRead(options: MarkReadOptions): Promise<number[]> {
    return this.#inner.markRead(options);
  }
  listMessages(chatGroupId: number, options?: ListMessagesOptions): Promise<ChatMessage[]> {
    return this.#inner.listMessages(chatGroupId, options);
  }
  listQueued(departmentIds: readonly number[]): Promise<QueuedChat[]> {
    return this.#inner.listQueued(departmentIds);
  }
  activeLoads(agentIds: readonly number[]): Promise<Map<number, number>> {
    return this.#inner.activeLoads(agentIds);
  }
  assignQueued(
    chatGroupId: number,
    agentId: number,
    options: AssignOptions,
  ): Promise<ChatGroup | null> {
    return this.#inner.assignQueued(chatGroupId, agentId, options);
  }
  loadFixture(fixture: Fixture): Promise<void> {
    return this.#inner.loadFixture(fixture);
  }
  ping(): Promise<void> {
    return this.#inner.ping();
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}
