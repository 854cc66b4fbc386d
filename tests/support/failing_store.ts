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
  ChatGroup,
  ChatGroupCounts,
  ChatMessage,
  ChatStore,
  Department,
  Fixture,
  ListMessagesOptions,
  NewMessage,
  User,
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

  constructor(inner: ChatStore) {
    this.#inner = inner;
    this.kind = inner.kind;
  }

  getUser(id: number): Promise<User | null> {
    return this.#inner.getUser(id);
  }
  getUserByAuthId(authId: string): Promise<User | null> {
    return this.#inner.getUserByAuthId(authId);
  }
  getDepartment(id: number): Promise<Department | null> {
    return this.#inner.getDepartment(id);
  }
  /**
   * Makes the next `getChatGroup` wait until `release()` is called;
   * `entered` resolves once it is waiting.
   */
  holdNextGetChatGroup(): { entered: Promise<void>; release: () => void } {
    const entered = Promise.withResolvers<void>();
    const released = Promise.withResolvers<void>();
    this.#hold = { entered: entered.resolve, released: released.promise };
    return { entered: entered.promise, release: released.resolve };
  }
  async getChatGroup(id: number): Promise<ChatGroup | null> {
    const hold = this.#hold;
    if (hold) {
      this.#hold = null;
      hold.entered();
      await hold.released;
    }
    return await this.#inner.getChatGroup(id);
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
  listMessages(chatGroupId: number, options?: ListMessagesOptions): Promise<ChatMessage[]> {
    return this.#inner.listMessages(chatGroupId, options);
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
