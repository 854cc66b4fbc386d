/**
 * The data Servana's real-time service reads and writes, in Servana's own
 * model: two kinds of people in two id spaces (agents and admins are
 * `sys_user` rows, customers are `client` rows), departments, conversations
 * (`chat_group`) and messages (`chat`). {@linkcode ChatStore} is implemented
 * by `kv_store.ts` (Deno KV, the default) and `postgres_store.ts` (Servana's
 * Supabase Postgres, chosen by `DATABASE_URL`).
 *
 * @module
 */

/** The two kinds of people: agents (`sys_user`, admins included) and customers (`client`). */
export type PersonKind = "agent" | "client";

/** What a person may do: a customer, an agent, or an admin (an agent whose role says admin). */
export type Role = "client" | "agent" | "admin";

/** Names one person: `sys_user_id` 5 and `client_id` 5 are different people. */
export interface PersonRef {
  kind: PersonKind;
  id: number;
}

interface PersonFields {
  /** `sys_user_id` or `client_id`. */
  id: number;
  /** `profile.prof_firstname` (NULL is ""). */
  firstName: string;
  /** `profile.prof_lastname` (NULL is ""). */
  lastName: string;
  /** `image.img_location` of the current picture (`img_is_current`), or null. */
  image: string | null;
  /** `sys_user_is_active` / `client_is_active` (NULL is not active). */
  active: boolean;
}

/** An agent or admin: a `sys_user` row. */
export interface Agent extends PersonFields {
  kind: "agent";
  /** `admin` when `role.role_name` contains "admin" (any case). */
  role: "agent" | "admin";
  /** `sys_user.supabase_user_id`: the `sub` of the agent's Supabase access token. */
  authId: string | null;
  /** `sys_user.sys_user_email`. */
  email: string;
  /** `role.role_name` (`Admin`, `Agent`, …), or null without a role. */
  roleName: string | null;
  /** Department ids (`sys_user_department`), ascending. */
  departments: number[];
}

/** A customer: a `client` row. */
export interface Customer extends PersonFields {
  kind: "client";
  role: "client";
  /** `client.client_number` (the phone number agents see). */
  number: string;
  /** `client.client_country_code`. */
  countryCode: string;
}

/** Somebody who can connect. */
export type Person = Agent | Customer;

/** The key that names a person everywhere (rooms, limits, presence): `agent:5`, `client:5`. */
export function personKey(ref: PersonRef): string {
  return `${ref.kind}:${ref.id}`;
}

/** Parses {@linkcode personKey}'s output back into a reference, or null. */
export function parsePersonKey(key: string): PersonRef | null {
  const match = /^(agent|client):(\d{1,16})$/.exec(key);
  if (match === null) return null;
  const id = Number(match[2]);
  return Number.isSafeInteger(id) && id > 0 ? { kind: match[1] as PersonKind, id } : null;
}

/** Whether two references name the same person. */
export function samePerson(a: PersonRef, b: PersonRef): boolean {
  return a.kind === b.kind && a.id === b.id;
}

/** An agent's role from `role.role_name`: admin when the name contains "admin" (any case). */
export function agentRole(roleName: string | null): "agent" | "admin" {
  return roleName !== null && /admin/i.test(roleName) ? "admin" : "agent";
}

/**
 * The name to show for a person: first and last name; for a customer
 * without one (Servana's sign-up by phone leaves `prof_id` NULL), their
 * phone number (`client_country_code` + `client_number`).
 */
export function displayName(person: Person): string {
  const name = `${person.firstName} ${person.lastName}`.trim();
  if (name !== "" || person.kind !== "client") return name;
  return `${person.countryCode}${person.number}`;
}

/** A department: agents belong to departments, conversations are routed to one. */
export interface Department {
  id: number;
  name: string;
  /** `dept_is_active` (NULL is not active: the original lists departments where it is true). */
  active: boolean;
}

/**
 * `chat_group.status`: `queued`, `active`, `transferred`, `resolved`, or
 * NULL (a brand-new group). Only `resolved` closes a conversation.
 */
export type ChatGroupStatus = string | null;

/** One customer conversation: a `chat_group` row. */
export interface ChatGroup {
  id: number;
  /** The customer (`client_id`). */
  clientId: number;
  /** `dept_id`, or null. */
  departmentId: number | null;
  /** The assigned agent (`sys_user_id`), or null. */
  agentId: number | null;
  status: ChatGroupStatus;
  /** `created_at` as ISO 8601 (UTC), or null. */
  createdAt: string | null;
}

/** Whether a conversation has ended: only `resolved` closes it (NULL and every other value are open). */
export function isResolved(group: Pick<ChatGroup, "status">): boolean {
  return group.status === "resolved";
}

/** A conversation with what the agents' customer list shows about it. */
export interface Conversation {
  group: ChatGroup;
  /** The group's customer, or null when the row is missing. */
  customer: Customer | null;
  /** The group's department, or null. */
  department: Department | null;
}

/** A stored message: a `chat` row. */
export interface ChatMessage {
  /** `chat_id`. */
  id: number;
  chatGroupId: number;
  /** `chat_body`: text with markup removed, as the person typed it otherwise. */
  body: string;
  /** `chat_created_at` as ISO 8601 in UTC (with `Z`). */
  createdAt: string;
  /** Who wrote it (`sys_user_id` xor `client_id`); null for a system message. */
  sender: PersonRef | null;
  /** `chat_delivered_at` (ISO 8601, UTC), or null. */
  deliveredAt: string | null;
  /** `chat_read_at` (ISO 8601, UTC), or null. */
  readAt: string | null;
}

/** What a sender asks to store. */
export interface NewMessage {
  chatGroupId: number;
  sender: PersonRef;
  body: string;
  /** Client-chosen id that makes a retried send idempotent (per sender). */
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

/** Options of {@linkcode ChatStore.markDelivered}. */
export interface MarkDeliveredOptions {
  /** The time written to `chat_delivered_at` (and `chat_read_at`). */
  at: Date;
  /** Also set `chat_read_at`: someone of the other side was in the room. */
  read: boolean;
}

/** Options of {@linkcode ChatStore.markRead}: who reads which messages. */
export interface MarkReadOptions {
  chatGroupId: number;
  /** The reader's kind: messages written by the other kind are marked. */
  reader: PersonKind;
  /** The time written to `chat_read_at`. */
  at: Date;
  /** At most this many, newest first. */
  limit: number;
  /** Only messages created at or after this time. */
  since?: Date;
}

/** Counts used by admin room statistics. */
export interface ChatGroupCounts {
  total: number;
  /** Groups whose status is `active`. */
  active: number;
}

/** A conversation waiting in a department's queue. */
export interface QueuedChat {
  chatGroupId: number;
  departmentId: number;
  clientId: number;
  createdAt: string | null;
}

/** Options of {@linkcode ChatStore.assignQueued}. */
export interface AssignOptions {
  /** The agent may hold at most this many `active` conversations after the assignment. */
  maxActive: number;
}

/** Storage of Servana's chat data. Every method may reject when the backend is down. */
export interface ChatStore {
  /** Which backend this is, for logs and metrics. */
  readonly kind: "kv" | "postgres";
  /** Every `sys_user` row whose `supabase_user_id` is `authId`, active or not. */
  findAgentsByAuthId(authId: string): Promise<Agent[]>;
  /** A person by kind and id (inactive ones too), or null. */
  getPerson(ref: PersonRef): Promise<Person | null>;
  /** The people that exist among `refs` (any order). */
  getPeople(refs: readonly PersonRef[]): Promise<Person[]>;
  /** Every active agent (admins included), with departments. */
  listAgents(): Promise<Agent[]>;
  getDepartment(id: number): Promise<Department | null>;
  /** Every department, ascending id. */
  listDepartments(): Promise<Department[]>;
  getChatGroup(id: number): Promise<ChatGroup | null>;
  /** The groups that exist among `ids` (any order). */
  getChatGroups(ids: readonly number[]): Promise<ChatGroup[]>;
  /** A group with its customer and department, or null when the group is missing. */
  getConversation(id: number): Promise<Conversation | null>;
  countChatGroups(): Promise<ChatGroupCounts>;
  /**
   * Stores a message (a `chat` row with `chat_created_at` now, in UTC). With
   * a `clientMessageId` already used by the same sender (within the dedupe
   * window), returns the earlier message with `created: false` and stores
   * nothing. Rejects with `ROOM_NOT_FOUND` when the group is missing.
   */
  addMessage(message: NewMessage): Promise<AddMessageResult>;
  /** Sets `chat_delivered_at` (and `chat_read_at` when `read`) of a stored message. */
  markDelivered(
    message: Pick<ChatMessage, "id" | "chatGroupId">,
    options: MarkDeliveredOptions,
  ): Promise<void>;
  /**
   * Marks as read the newest delivered, unread messages the other side wrote
   * (at most `limit`, optionally since a time); returns their ids, newest first.
   */
  markRead(options: MarkReadOptions): Promise<number[]>;
  /** Messages of a group in ascending id order (the newest `limit` before `before`). */
  listMessages(chatGroupId: number, options?: ListMessagesOptions): Promise<ChatMessage[]>;
  /** Queued, unassigned conversations of these departments, oldest first. */
  listQueued(departmentIds: readonly number[]): Promise<QueuedChat[]>;
  /** `active` conversations per agent (agents without any are 0). */
  activeLoads(agentIds: readonly number[]): Promise<Map<number, number>>;
  /**
   * Assigns a queued, unassigned conversation to an agent (`sys_user_id`,
   * status `active`) atomically: null when it is no longer queued or
   * unassigned, or when the agent already holds `maxActive` active ones.
   */
  assignQueued(
    chatGroupId: number,
    agentId: number,
    options: AssignOptions,
  ): Promise<ChatGroup | null>;
  /** Inserts or updates the rows of a fixture (idempotent). */
  loadFixture(fixture: Fixture): Promise<void>;
  /** Resolves when the backend answers and has what the store needs; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A `department` row of a fixture. */
export interface FixtureDepartment {
  dept_id: number;
  dept_name: string;
  dept_is_active?: boolean | null;
}

/** A `role` row of a fixture. */
export interface FixtureRole {
  role_id: number;
  role_name: string;
}

/** A `profile` row of a fixture. */
export interface FixtureProfile {
  prof_id: number;
  prof_firstname?: string | null;
  prof_lastname?: string | null;
}

/** An `image` row of a fixture. */
export interface FixtureImage {
  img_id: number;
  prof_id: number;
  img_location: string;
  img_is_current?: boolean | null;
}

/** A `sys_user` row of a fixture. */
export interface FixtureSysUser {
  sys_user_id: number;
  sys_user_email: string;
  supabase_user_id?: string | null;
  role_id?: number | null;
  prof_id?: number | null;
  sys_user_is_active?: boolean | null;
}

/** A `sys_user_department` row of a fixture. */
export interface FixtureSysUserDepartment {
  sys_user_id: number;
  dept_id: number;
}

/** A `client` row of a fixture. */
export interface FixtureClient {
  client_id: number;
  client_country_code: string;
  client_number: string;
  prof_id?: number | null;
  client_is_active?: boolean | null;
}

/** A `chat_group` row of a fixture. */
export interface FixtureChatGroup {
  chat_group_id: number;
  client_id: number;
  dept_id?: number | null;
  sys_user_id?: number | null;
  status?: string | null;
  created_at?: string | null;
}

/**
 * The fixture format of `SEED_FILE`: a small Servana database, one array per
 * table, rows with Servana's column names (see `fixture.ts`).
 */
export interface Fixture {
  department?: FixtureDepartment[];
  role?: FixtureRole[];
  profile?: FixtureProfile[];
  image?: FixtureImage[];
  sys_user?: FixtureSysUser[];
  sys_user_department?: FixtureSysUserDepartment[];
  client?: FixtureClient[];
  chat_group?: FixtureChatGroup[];
}
