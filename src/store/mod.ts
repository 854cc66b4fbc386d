/**
 * The data Servana's real-time service reads and writes: users, departments,
 * chat groups and messages. {@linkcode ChatStore} is implemented by
 * `kv_store.ts` (Deno KV, the default) and `postgres_store.ts` (Supabase's
 * Postgres, chosen by `DATABASE_URL`).
 *
 * @module
 */

/** Who a person is in Servana. */
export type Role = "client" | "agent" | "admin";

/** A Servana user, resolved from a token's `sub` (`authId`). */
export interface User {
  /** Servana's numeric user id (the seed's `userId`). */
  id: number;
  /** The Supabase auth user id (the token's `sub`). */
  authId: string;
  role: Role;
  /** Department ids (agents and admins). */
  departments: number[];
  firstName: string;
  lastName: string;
}

/** A department: agents belong to departments, chat groups are routed to one. */
export interface Department {
  id: number;
  name: string;
}

/** Status of a chat group: only active groups take messages and joins. */
export type ChatGroupStatus = "active" | "closed";

/** One customer conversation (the seed's `chatGroupId`). */
export interface ChatGroup {
  id: number;
  /** The customer (user id with role `client`). */
  clientId: number;
  departmentId: number | null;
  /** The assigned agent, if any. */
  agentId: number | null;
  status: ChatGroupStatus;
}

/** A stored chat message; field names follow the seed's `receiveMessage`. */
export interface ChatMessage {
  /** The seed's `chat_id`. */
  id: number;
  chatGroupId: number;
  senderId: number;
  /** The seed's `sender_type`. */
  senderType: Role;
  /** The seed's `chat_message` (already sanitized). */
  message: string;
  /** The seed's `chat_created_at`, ISO 8601. */
  createdAt: string;
  /** Client-chosen id that makes a retried send idempotent. */
  clientMessageId: string | null;
}

/** What a sender asks to store. */
export interface NewMessage {
  chatGroupId: number;
  senderId: number;
  senderType: Role;
  message: string;
  clientMessageId?: string | null;
}

/** Result of {@linkcode ChatStore.addMessage}. */
export interface AddMessageResult {
  message: ChatMessage;
  /** False when `clientMessageId` matched an earlier message of the same sender. */
  created: boolean;
}

/** Options of {@linkcode ChatStore.listMessages}. */
export interface ListMessagesOptions {
  /** Only messages with `id` lower than this. */
  before?: number;
  /** At most this many (the newest ones before `before`), default 50. */
  limit?: number;
}

/** Counts used by admin room statistics. */
export interface ChatGroupCounts {
  total: number;
  active: number;
}

/** The fixture format of `SEED_FILE` (see README). */
export interface Fixture {
  departments?: Department[];
  users?: User[];
  chatGroups?: ChatGroup[];
}

/** Storage of Servana's chat data. Every method may reject when the backend is down. */
export interface ChatStore {
  /** Which backend this is, for logs and metrics. */
  readonly kind: "kv" | "postgres";
  getUser(id: number): Promise<User | null>;
  getUserByAuthId(authId: string): Promise<User | null>;
  getDepartment(id: number): Promise<Department | null>;
  getChatGroup(id: number): Promise<ChatGroup | null>;
  countChatGroups(): Promise<ChatGroupCounts>;
  /**
   * Stores a message and gives it an id and a timestamp. With a
   * `clientMessageId` already used by the same sender, returns the earlier
   * message with `created: false` and stores nothing.
   */
  addMessage(message: NewMessage): Promise<AddMessageResult>;
  /** Messages of a group in ascending id order (the newest `limit` before `before`). */
  listMessages(chatGroupId: number, options?: ListMessagesOptions): Promise<ChatMessage[]>;
  /** Inserts or updates departments, users and chat groups (idempotent). */
  loadFixture(fixture: Fixture): Promise<void>;
  /** Resolves when the backend answers; rejects otherwise (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
