/**
 * {@linkcode ChatStore} over Servana's own PostgreSQL (its Supabase
 * database), chosen by `DATABASE_URL`, through `npm:postgres`.
 *
 * It reads Servana's tables as the original backend does: agents from
 * `sys_user` (+ `role`, `profile`, `image`, `sys_user_department`), customers
 * from `client` (+ `profile`, `image`), `department`, `chat_group`, `chat`.
 * It writes a message as the original does (`chat_body`, `chat_group_id`,
 * `chat_created_at` in UTC in its no-time-zone column, `sys_user_id` xor
 * `client_id`), then `chat_delivered_at` and `chat_read_at`; and assigns
 * queued conversations. What it needs beyond Servana's schema lives in a
 * table of its own, `realtime_message_dedupe` (see
 * `supabase/migrations/`, applied by `deno task migrate`).
 *
 * Servana's `timestamp` columns have no time zone and hold UTC: they are
 * written from explicit UTC times and read back as ISO 8601 with `Z`.
 *
 * @module
 */

import postgres from "postgres";
import { ServanaError } from "../errors.ts";
import { log } from "../log.ts";
import { migrate } from "./migrate.ts";
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
  type ListMessagesOptions,
  type MarkDeliveredOptions,
  type MarkReadOptions,
  type NewMessage,
  type Person,
  type PersonRef,
  type QueuedChat,
} from "./mod.ts";

const DEFAULT_LIMIT = 50;
/** Default dedupe window of `clientMessageId`s: a day. */
const DEFAULT_DEDUPE_WINDOW_MS = 86_400_000;
/** Least time between two deletions of expired dedupe entries, ms. */
const DEDUPE_SWEEP_EVERY_MS = 600_000;
/** Namespace of the advisory locks taken while assigning to an agent. */
const ASSIGN_LOCK_NAMESPACE = 731_942;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The tables and columns the store reads and writes; anything missing stops it. */
export const REQUIRED_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  sys_user: [
    "sys_user_id",
    "sys_user_email",
    "sys_user_is_active",
    "supabase_user_id",
    "role_id",
    "prof_id",
  ],
  role: ["role_id", "role_name"],
  profile: ["prof_id", "prof_firstname", "prof_lastname"],
  image: ["img_id", "img_location", "img_is_current", "prof_id"],
  department: ["dept_id", "dept_name", "dept_is_active"],
  sys_user_department: ["sys_user_id", "dept_id"],
  client: ["client_id", "client_country_code", "client_number", "client_is_active", "prof_id"],
  chat_group: ["chat_group_id", "client_id", "dept_id", "sys_user_id", "status", "created_at"],
  chat: [
    "chat_id",
    "chat_body",
    "chat_created_at",
    "sys_user_id",
    "client_id",
    "chat_group_id",
    "chat_delivered_at",
    "chat_read_at",
  ],
  realtime_message_dedupe: [
    "sender_kind",
    "sender_id",
    "client_message_id",
    "chat_id",
    "created_at",
  ],
};

/** The database lacks tables or columns the store needs; `message` is one line naming them. */
export class SchemaError extends Error {
  /** `table` or `table.column` of everything missing. */
  readonly missing: string[];
  constructor(missing: string[]) {
    super(
      `the database lacks ${missing.join(", ")} (run \`deno task migrate\` against DATABASE_URL)`,
    );
    this.name = "SchemaError";
    this.missing = missing;
  }
}

/** Options of {@linkcode openPostgresStore}. */
export interface PostgresStoreOptions {
  /** Pool size, default 10. */
  max?: number;
  /** Seconds to wait for a connection, default 10. */
  connectTimeout?: number;
  /** Seconds before an idle connection is closed, default 30. */
  idleTimeout?: number;
  /**
   * Prepared statements. Default: on, except behind a transaction-mode pooler
   * (Supabase's pooler on port 6543, `*.pooler.supabase.com`, or a URL with
   * `pgbouncer=true`), which does not support them; see {@linkcode usesPreparedStatements}.
   */
  prepare?: boolean;
  /** How long a `clientMessageId` is remembered, ms (default a day). */
  dedupeWindowMs?: number;
  /** Apply `supabase/migrations/` on open (development, tests). Default false. */
  migrate?: boolean;
}

/**
 * Whether a connection string allows prepared statements: not through a
 * transaction-mode pooler (PgBouncer, Supavisor), recognised by Supabase's
 * pooler port 6543, PgBouncer's default port 6432, a `pooler.supabase.com`
 * host, or `pgbouncer=true`. Any other pooler: `DATABASE_PREPARE=false`.
 */
export function usesPreparedStatements(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return true;
  }
  if (parsed.searchParams.get("pgbouncer") === "true") return false;
  // Supabase's pooler (Supavisor) and PgBouncer's default port
  if (parsed.port === "6543" || parsed.port === "6432") return false;
  return !parsed.hostname.toLowerCase().endsWith("pooler.supabase.com");
}

/** `url` without the `pgbouncer` parameter (a client-side hint the server would refuse). */
export function withoutPoolerHint(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.searchParams.has("pgbouncer")) return url;
    parsed.searchParams.delete("pgbouncer");
    return parsed.toString();
  } catch {
    return url;
  }
}

interface AgentRow {
  sys_user_id: string;
  sys_user_email: string;
  sys_user_is_active: boolean | null;
  supabase_user_id: string | null;
  role_name: string | null;
  prof_firstname: string | null;
  prof_lastname: string | null;
  image: string | null;
  departments: string[];
}

interface ClientRow {
  client_id: string;
  client_country_code: string;
  client_number: string;
  client_is_active: boolean | null;
  prof_firstname: string | null;
  prof_lastname: string | null;
  image: string | null;
}

interface GroupRow {
  chat_group_id: string;
  client_id: string;
  dept_id: string | null;
  sys_user_id: string | null;
  status: string | null;
  created_at: string | null;
}

interface ChatRow {
  chat_id: string;
  chat_body: string | null;
  chat_created_at: string | null;
  chat_group_id: string;
  sys_user_id: string | null;
  client_id: string | null;
  chat_delivered_at: string | null;
  chat_read_at: string | null;
}

interface DepartmentRow {
  dept_id: string;
  dept_name: string;
  dept_is_active: boolean | null;
}

/** A Servana no-time-zone timestamp (UTC wall clock) as ISO 8601 with `Z`. */
function fromUtcTimestamp(value: string | null): string | null {
  if (value === null) return null;
  const match = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?/.exec(value);
  if (match === null) return value;
  const millis = (match[3] ?? ".000").slice(0, 4).padEnd(4, "0");
  return `${match[1]}T${match[2]}${millis}Z`;
}

function toAgent(row: AgentRow): Agent {
  return {
    kind: "agent",
    id: Number(row.sys_user_id),
    role: agentRole(row.role_name),
    authId: row.supabase_user_id,
    email: row.sys_user_email,
    roleName: row.role_name,
    departments: row.departments.map(Number).sort((a, b) => a - b),
    firstName: row.prof_firstname ?? "",
    lastName: row.prof_lastname ?? "",
    image: row.image,
    active: row.sys_user_is_active === true,
  };
}

function toCustomer(row: ClientRow): Customer {
  return {
    kind: "client",
    id: Number(row.client_id),
    role: "client",
    number: row.client_number,
    countryCode: row.client_country_code,
    firstName: row.prof_firstname ?? "",
    lastName: row.prof_lastname ?? "",
    image: row.image,
    active: row.client_is_active === true,
  };
}

function toGroup(row: GroupRow): ChatGroup {
  return {
    id: Number(row.chat_group_id),
    clientId: Number(row.client_id),
    departmentId: row.dept_id === null ? null : Number(row.dept_id),
    agentId: row.sys_user_id === null ? null : Number(row.sys_user_id),
    status: row.status,
    createdAt: fromUtcTimestamp(row.created_at),
  };
}

function toDepartment(row: DepartmentRow): Department {
  return { id: Number(row.dept_id), name: row.dept_name, active: row.dept_is_active === true };
}

function toMessage(row: ChatRow): ChatMessage {
  const sender: PersonRef | null = row.sys_user_id !== null
    ? { kind: "agent", id: Number(row.sys_user_id) }
    : row.client_id !== null
    ? { kind: "client", id: Number(row.client_id) }
    : null;
  return {
    id: Number(row.chat_id),
    chatGroupId: Number(row.chat_group_id),
    body: row.chat_body ?? "",
    createdAt: fromUtcTimestamp(row.chat_created_at) ?? new Date(0).toISOString(),
    sender,
    deliveredAt: fromUtcTimestamp(row.chat_delivered_at),
    readAt: fromUtcTimestamp(row.chat_read_at),
  };
}

/** The SQLSTATE, constraint and detail of a database error, if it is one. */
function pgError(error: unknown): { code: string; constraint: string; detail: string } | null {
  if (error instanceof postgres.PostgresError) {
    return {
      code: error.code,
      constraint: error.constraint_name ?? "",
      detail: error.detail ?? error.message,
    };
  }
  return null;
}

const CHAT_COLUMNS = "chat_id, chat_body, chat_created_at, chat_group_id, sys_user_id, " +
  "client_id, chat_delivered_at, chat_read_at";
/** {@linkcode CHAT_COLUMNS} of the table aliased `c`. */
const CHAT_COLUMNS_OF_C = CHAT_COLUMNS.split(", ").map((column) => `c.${column}`).join(", ");
const GROUP_COLUMNS = "chat_group_id, client_id, dept_id, sys_user_id, status, created_at";

/** Thrown inside a transaction to roll it back and try again. */
class Retry extends Error {}

/** Chat data in Servana's PostgreSQL. `close()` ends the connection pool it was given. */
export class PostgresStore implements ChatStore {
  /** Always `"postgres"`. */
  readonly kind = "postgres" as const;
  readonly #sql: postgres.Sql;
  readonly #dedupeWindowMs: number;
  #lastDedupeSweep = 0;

  /**
   * Wraps a `postgres()` client whose `timestamp` type (OID 1114) is read as
   * text (see {@linkcode openPostgresStore}); the store owns it from now on.
   */
  constructor(sql: postgres.Sql, options: { dedupeWindowMs?: number } = {}) {
    this.#sql = sql;
    this.#dedupeWindowMs = options.dedupeWindowMs ?? DEFAULT_DEDUPE_WINDOW_MS;
  }

  /** The underlying client (migrations, tests). */
  get sql(): postgres.Sql {
    return this.#sql;
  }

  #agents(where: postgres.PendingQuery<postgres.Row[]>): Promise<AgentRow[]> {
    return this.#sql<AgentRow[]>`
      select su.sys_user_id, su.sys_user_email, su.sys_user_is_active,
        su.supabase_user_id::text as supabase_user_id, r.role_name,
        p.prof_firstname, p.prof_lastname,
        (select i.img_location from image i
          where i.prof_id = su.prof_id and i.img_is_current
          order by i.img_id desc limit 1) as image,
        coalesce((select array_agg(distinct d.dept_id order by d.dept_id)
          from sys_user_department d
          where d.sys_user_id = su.sys_user_id and d.dept_id is not null), '{}') as departments
      from sys_user su
      left join role r on r.role_id = su.role_id
      left join profile p on p.prof_id = su.prof_id
      where ${where}
      order by su.sys_user_id`;
  }

  #clients(ids: readonly number[]): Promise<ClientRow[]> {
    return this.#sql<ClientRow[]>`
      select c.client_id, c.client_country_code, c.client_number, c.client_is_active,
        p.prof_firstname, p.prof_lastname,
        (select i.img_location from image i
          where i.prof_id = c.prof_id and i.img_is_current
          order by i.img_id desc limit 1) as image
      from client c
      left join profile p on p.prof_id = c.prof_id
      where c.client_id = any(${ids as number[]}::bigint[])`;
  }

  /** Every `sys_user` row whose `supabase_user_id` is `authId` (none when it is not a uuid). */
  async findAgentsByAuthId(authId: string): Promise<Agent[]> {
    if (!UUID.test(authId)) return [];
    return (await this.#agents(this.#sql`su.supabase_user_id = ${authId}::uuid`)).map(toAgent);
  }

  /** A person by kind and id, or null. */
  async getPerson(ref: PersonRef): Promise<Person | null> {
    return (await this.getPeople([ref]))[0] ?? null;
  }

  /** The people that exist among `refs`. */
  async getPeople(refs: readonly PersonRef[]): Promise<Person[]> {
    const agentIds = refs.filter((ref) => ref.kind === "agent").map((ref) => ref.id);
    const clientIds = refs.filter((ref) => ref.kind === "client").map((ref) => ref.id);
    const [agents, clients] = await Promise.all([
      agentIds.length ? this.#agents(this.#sql`su.sys_user_id = any(${agentIds}::bigint[])`) : [],
      clientIds.length ? this.#clients(clientIds) : [],
    ]);
    return [...agents.map(toAgent), ...clients.map(toCustomer)];
  }

  /** Every active agent. */
  async listAgents(): Promise<Agent[]> {
    return (await this.#agents(this.#sql`su.sys_user_is_active = true`)).map(toAgent);
  }

  /** A department by id, or null. */
  async getDepartment(id: number): Promise<Department | null> {
    const rows = await this.#sql<DepartmentRow[]>`
      select dept_id, dept_name, dept_is_active from department where dept_id = ${id}`;
    return rows.length === 0 ? null : toDepartment(rows[0]);
  }

  /** Every department, ascending id. */
  async listDepartments(): Promise<Department[]> {
    const rows = await this.#sql<DepartmentRow[]>`
      select dept_id, dept_name, dept_is_active from department order by dept_id`;
    return rows.map(toDepartment);
  }

  /** A chat group by id, or null. */
  async getChatGroup(id: number): Promise<ChatGroup | null> {
    return (await this.getChatGroups([id]))[0] ?? null;
  }

  /** The chat groups that exist among `ids`. */
  async getChatGroups(ids: readonly number[]): Promise<ChatGroup[]> {
    if (ids.length === 0) return [];
    const rows = await this.#sql<GroupRow[]>`
      select ${this.#sql.unsafe(GROUP_COLUMNS)} from chat_group
      where chat_group_id = any(${ids as number[]}::bigint[])`;
    return rows.map(toGroup);
  }

  /** A group with its customer and department, in one query, or null. */
  async getConversation(id: number): Promise<Conversation | null> {
    const rows = await this.#sql<
      (GroupRow & Partial<ClientRow> & { department_name: string | null; dept_active: boolean })[]
    >`
      select g.chat_group_id, g.client_id, g.dept_id, g.sys_user_id, g.status, g.created_at,
        c.client_id as customer_id, c.client_country_code, c.client_number, c.client_is_active,
        p.prof_firstname, p.prof_lastname,
        (select i.img_location from image i
          where i.prof_id = c.prof_id and i.img_is_current
          order by i.img_id desc limit 1) as image,
        d.dept_name as department_name, d.dept_is_active as dept_active
      from chat_group g
      left join client c on c.client_id = g.client_id
      left join profile p on p.prof_id = c.prof_id
      left join department d on d.dept_id = g.dept_id
      where g.chat_group_id = ${id}`;
    if (rows.length === 0) return null;
    const row = rows[0] as typeof rows[0] & { customer_id: string | null };
    const group = toGroup(row);
    const customer = row.customer_id === null ? null : toCustomer({
      client_id: row.customer_id,
      client_country_code: row.client_country_code ?? "",
      client_number: row.client_number ?? "",
      client_is_active: row.client_is_active ?? null,
      prof_firstname: row.prof_firstname ?? null,
      prof_lastname: row.prof_lastname ?? null,
      image: row.image ?? null,
    });
    const department = group.departmentId === null || row.department_name === null ? null : {
      id: group.departmentId,
      name: row.department_name,
      active: row.dept_active === true,
    };
    return { group, customer, department };
  }

  /** Total and active chat groups. */
  async countChatGroups(): Promise<ChatGroupCounts> {
    const rows = await this.#sql<{ total: number; active: number }[]>`
      select count(*)::int as total,
        (count(*) filter (where status = 'active'))::int as active
      from chat_group`;
    return { total: rows[0].total, active: rows[0].active };
  }

  /**
   * Stores a message as the original backend does, in one transaction with
   * its dedupe entry. Rejects with `ROOM_NOT_FOUND` for an unknown group and
   * `USER_NOT_FOUND` for an unknown sender.
   */
  async addMessage(input: NewMessage): Promise<AddMessageResult> {
    this.#sweepDedupe();
    const clientMessageId = input.clientMessageId ?? null;
    const agentId = input.sender.kind === "agent" ? input.sender.id : null;
    const clientId = input.sender.kind === "client" ? input.sender.id : null;
    const windowSec = this.#dedupeWindowMs / 1000;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        return await this.#sql.begin(async (tx) => {
          if (clientMessageId !== null) {
            const earlier = await tx<ChatRow[]>`
              select ${tx.unsafe(CHAT_COLUMNS_OF_C)}
              from realtime_message_dedupe d join chat c on c.chat_id = d.chat_id
              where d.sender_kind = ${input.sender.kind} and d.sender_id = ${input.sender.id}
                and d.client_message_id = ${clientMessageId}
                and d.created_at > now() - make_interval(secs => ${windowSec})`;
            if (earlier.length === 1) return { message: toMessage(earlier[0]), created: false };
          }
          const [row] = await tx<ChatRow[]>`
            insert into chat (chat_body, chat_group_id, chat_created_at, sys_user_id, client_id)
            values (${input.body}, ${input.chatGroupId},
              (now() at time zone 'utc'), ${agentId}, ${clientId})
            returning ${tx.unsafe(CHAT_COLUMNS)}`;
          if (clientMessageId !== null) {
            const claimed = await tx`
              insert into realtime_message_dedupe
                (sender_kind, sender_id, client_message_id, chat_id)
              values (${input.sender.kind}, ${input.sender.id}, ${clientMessageId}, ${row.chat_id})
              on conflict (sender_kind, sender_id, client_message_id) do update
                set chat_id = excluded.chat_id, created_at = now()
                where realtime_message_dedupe.created_at
                  <= now() - make_interval(secs => ${windowSec})
              returning chat_id`;
            // a concurrent send with the same id won: roll back, then find its message
            if (claimed.length === 0) throw new Retry();
          }
          return { message: toMessage(row), created: true };
        }) as AddMessageResult;
      } catch (error) {
        if (error instanceof Retry) continue;
        const pg = pgError(error);
        if (pg?.code === "23503" && pg.constraint === "chat_chat_group_id_fkey") {
          throw new ServanaError("ROOM_NOT_FOUND", `Chat group ${input.chatGroupId} not found`);
        }
        if (
          pg?.code === "23503" &&
          (pg.constraint === "chat_sys_user_id_fkey" || pg.constraint === "chat_client_id_fkey")
        ) {
          throw new ServanaError("USER_NOT_FOUND", `Sender ${input.sender.id} not found`);
        }
        throw error;
      }
    }
    throw new Error("PostgresStore: could not store or find the message");
  }

  /** Deletes expired dedupe entries, at most once per ten minutes, in the background. */
  #sweepDedupe(): void {
    const now = Date.now();
    if (now - this.#lastDedupeSweep < DEDUPE_SWEEP_EVERY_MS) return;
    this.#lastDedupeSweep = now;
    const windowSec = this.#dedupeWindowMs / 1000;
    this.#sql`
      delete from realtime_message_dedupe
      where created_at < now() - make_interval(secs => ${windowSec})`.catch(() => {});
  }

  /** Sets `chat_delivered_at` (and `chat_read_at`) of a message. */
  async markDelivered(
    ref: Pick<ChatMessage, "id" | "chatGroupId">,
    options: MarkDeliveredOptions,
  ): Promise<void> {
    const at = options.at.toISOString();
    await this.#sql`
      update chat set chat_delivered_at = ${at}::timestamp,
        chat_read_at = case when ${options.read} then ${at}::timestamp else chat_read_at end
      where chat_id = ${ref.id}`;
  }

  /** Marks the newest delivered, unread messages the other side wrote as read. */
  async markRead(options: MarkReadOptions): Promise<number[]> {
    const writer = options.reader === "client"
      ? this.#sql`c.sys_user_id is not null`
      : this.#sql`c.client_id is not null`;
    const since = options.since === undefined
      ? this.#sql``
      : this.#sql`and c.chat_created_at >= ${options.since.toISOString()}::timestamp`;
    const at = options.at.toISOString();
    const rows = await this.#sql<{ chat_id: string }[]>`
      with picked as (
        select c.chat_id from chat c
        where c.chat_group_id = ${options.chatGroupId} and c.chat_read_at is null
          and c.chat_delivered_at is not null and ${writer} ${since}
        order by c.chat_created_at desc, c.chat_id desc
        limit ${options.limit}
        for update skip locked
      )
      update chat set chat_read_at = ${at}::timestamp
      from picked where chat.chat_id = picked.chat_id
      returning chat.chat_id`;
    return rows.map((row) => Number(row.chat_id)).sort((a, b) => b - a);
  }

  /** The newest `limit` messages of a group with `id < before`, in ascending id order. */
  async listMessages(
    chatGroupId: number,
    options: ListMessagesOptions = {},
  ): Promise<ChatMessage[]> {
    const limit = Math.floor(options.limit ?? DEFAULT_LIMIT);
    if (!(limit > 0)) return [];
    const before = options.before === undefined
      ? this.#sql``
      : this.#sql`and chat_id < ${options.before}`;
    const rows = await this.#sql<ChatRow[]>`
      select ${this.#sql.unsafe(CHAT_COLUMNS)} from chat
      where chat_group_id = ${chatGroupId} ${before}
      order by chat_id desc
      limit ${limit}`;
    return rows.map(toMessage).reverse();
  }

  /** Queued, unassigned conversations of these departments, oldest first. */
  async listQueued(departmentIds: readonly number[]): Promise<QueuedChat[]> {
    if (departmentIds.length === 0) return [];
    const rows = await this.#sql<GroupRow[]>`
      select ${this.#sql.unsafe(GROUP_COLUMNS)} from chat_group
      where status = 'queued' and sys_user_id is null
        and dept_id = any(${departmentIds as number[]}::bigint[])
      order by created_at asc nulls last, chat_group_id asc`;
    return rows.map((row) => ({
      chatGroupId: Number(row.chat_group_id),
      departmentId: Number(row.dept_id),
      clientId: Number(row.client_id),
      createdAt: fromUtcTimestamp(row.created_at),
    }));
  }

  /** Active conversations per agent. */
  async activeLoads(agentIds: readonly number[]): Promise<Map<number, number>> {
    const loads = new Map<number, number>(agentIds.map((id) => [id, 0]));
    if (agentIds.length === 0) return loads;
    const rows = await this.#sql<{ sys_user_id: string; n: number }[]>`
      select sys_user_id, count(*)::int as n from chat_group
      where status = 'active' and sys_user_id = any(${agentIds as number[]}::bigint[])
      group by sys_user_id`;
    for (const row of rows) loads.set(Number(row.sys_user_id), row.n);
    return loads;
  }

  /**
   * Assigns a queued, unassigned conversation to an agent: under an advisory
   * lock on the agent (so concurrent assignments to one agent count its load
   * one at a time), an `update … where sys_user_id is null and status = 'queued'`
   * (so one conversation is never assigned twice).
   */
  async assignQueued(
    chatGroupId: number,
    agentId: number,
    options: AssignOptions,
  ): Promise<ChatGroup | null> {
    return await this.#sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${ASSIGN_LOCK_NAMESPACE}::int,
        (${agentId}::bigint % 2147483647)::int)`;
      const [{ n }] = await tx<{ n: number }[]>`
        select count(*)::int as n from chat_group
        where sys_user_id = ${agentId} and status = 'active'`;
      if (n >= options.maxActive) return null;
      const rows = await tx<GroupRow[]>`
        update chat_group set sys_user_id = ${agentId}, status = 'active'
        where chat_group_id = ${chatGroupId} and sys_user_id is null and status = 'queued'
        returning ${tx.unsafe(GROUP_COLUMNS)}`;
      return rows.length === 0 ? null : toGroup(rows[0]);
    }) as ChatGroup | null;
  }

  /**
   * Inserts or updates the rows of a fixture in one transaction, with their
   * own ids (identity columns overridden, sequences moved past them). Unknown
   * references reject with `INVALID_DATA` and nothing is written.
   */
  async loadFixture(fixture: Fixture): Promise<void> {
    try {
      await this.#sql.begin(async (tx) => {
        for (const row of fixture.department ?? []) {
          await tx`
            insert into department (dept_id, dept_name, dept_is_active)
            values (${row.dept_id}, ${row.dept_name},
              ${row.dept_is_active === undefined ? true : row.dept_is_active})
            on conflict (dept_id) do update set dept_name = excluded.dept_name,
              dept_is_active = excluded.dept_is_active`;
        }
        for (const row of fixture.role ?? []) {
          await tx`
            insert into role (role_id, role_name) overriding system value
            values (${row.role_id}, ${row.role_name})
            on conflict (role_id) do update set role_name = excluded.role_name`;
        }
        for (const row of fixture.profile ?? []) {
          await tx`
            insert into profile (prof_id, prof_firstname, prof_lastname) overriding system value
            values (${row.prof_id}, ${row.prof_firstname ?? null}, ${row.prof_lastname ?? null})
            on conflict (prof_id) do update set prof_firstname = excluded.prof_firstname,
              prof_lastname = excluded.prof_lastname`;
        }
        for (const row of fixture.image ?? []) {
          await tx`
            insert into image (img_id, img_location, img_is_current, prof_id)
            overriding system value
            values (${row.img_id}, ${row.img_location}, ${row.img_is_current ?? null},
              ${row.prof_id})
            on conflict (img_id) do update set img_location = excluded.img_location,
              img_is_current = excluded.img_is_current, prof_id = excluded.prof_id`;
        }
        for (const row of fixture.sys_user ?? []) {
          await tx`
            insert into sys_user (sys_user_id, sys_user_email, supabase_user_id, role_id, prof_id,
              sys_user_is_active)
            values (${row.sys_user_id}, ${row.sys_user_email}, ${row.supabase_user_id ?? null},
              ${row.role_id ?? null}, ${row.prof_id ?? null},
              ${row.sys_user_is_active === undefined ? true : row.sys_user_is_active})
            on conflict (sys_user_id) do update set sys_user_email = excluded.sys_user_email,
              supabase_user_id = excluded.supabase_user_id, role_id = excluded.role_id,
              prof_id = excluded.prof_id, sys_user_is_active = excluded.sys_user_is_active`;
        }
        for (const row of fixture.sys_user_department ?? []) {
          await tx`
            insert into sys_user_department (sys_user_id, dept_id)
            select ${row.sys_user_id}, ${row.dept_id}
            where not exists (select 1 from sys_user_department
              where sys_user_id = ${row.sys_user_id} and dept_id = ${row.dept_id})`;
        }
        for (const row of fixture.client ?? []) {
          await tx`
            insert into client (client_id, client_country_code, client_number, prof_id,
              client_is_active)
            values (${row.client_id}, ${row.client_country_code}, ${row.client_number},
              ${row.prof_id ?? null},
              ${row.client_is_active === undefined ? true : row.client_is_active})
            on conflict (client_id) do update
              set client_country_code = excluded.client_country_code,
              client_number = excluded.client_number, prof_id = excluded.prof_id,
              client_is_active = excluded.client_is_active`;
        }
        for (const row of fixture.chat_group ?? []) {
          await tx`
            insert into chat_group (chat_group_id, client_id, dept_id, sys_user_id, status,
              created_at)
            values (${row.chat_group_id}, ${row.client_id}, ${row.dept_id ?? null},
              ${row.sys_user_id ?? null}, ${row.status ?? null},
              coalesce(${row.created_at ?? null}::timestamp, now() at time zone 'utc'))
            on conflict (chat_group_id) do update set client_id = excluded.client_id,
              dept_id = excluded.dept_id, sys_user_id = excluded.sys_user_id,
              status = excluded.status, created_at = excluded.created_at`;
        }
        // explicit ids: keep the tables' own id generators past them
        for (
          const [table, column] of [
            ["department", "dept_id"],
            ["role", "role_id"],
            ["profile", "prof_id"],
            ["image", "img_id"],
            ["sys_user", "sys_user_id"],
            ["sys_user_department", "id"],
            ["client", "client_id"],
            ["chat_group", "chat_group_id"],
          ]
        ) {
          await tx.unsafe(
            `select setval(pg_get_serial_sequence('${table}', '${column}'),
              greatest((select coalesce(max(${column}), 0) from ${table}), 1))`,
          );
        }
      });
    } catch (error) {
      const pg = pgError(error);
      if (pg?.code === "23503" || pg?.code === "23505" || pg?.code === "23514") {
        throw new ServanaError("INVALID_DATA", `Fixture rejected: ${pg.detail}`, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Resolves when the database answers and holds every table and column of
   * {@linkcode REQUIRED_COLUMNS}; rejects with {@linkcode SchemaError} naming
   * what is missing.
   */
  async ping(): Promise<void> {
    const rows = await this.#sql<{ table_name: string; column_name: string }[]>`
      select table_name, column_name from information_schema.columns
      where table_schema = current_schema()
        and table_name = any(${Object.keys(REQUIRED_COLUMNS)})`;
    const present = new Set(rows.map((row) => `${row.table_name}.${row.column_name}`));
    const tables = new Set(rows.map((row) => row.table_name));
    const missing: string[] = [];
    for (const [table, columns] of Object.entries(REQUIRED_COLUMNS)) {
      if (!tables.has(table)) {
        missing.push(table);
        continue;
      }
      for (const column of columns) {
        if (!present.has(`${table}.${column}`)) missing.push(`${table}.${column}`);
      }
    }
    if (missing.length > 0) throw new SchemaError(missing);
  }

  /** Ends the connection pool (waits up to 5 s for running queries). */
  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}

/** Options of `postgres()` the store relies on: `timestamp` (OID 1114) read as text. */
export function postgresOptions(
  url: string,
  options: PostgresStoreOptions = {},
): postgres.Options<Record<string, postgres.PostgresType>> {
  return {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeout ?? 10,
    idle_timeout: options.idleTimeout ?? 30,
    prepare: options.prepare ?? usesPreparedStatements(url),
    onnotice: () => {},
    types: {
      utcTimestamp: {
        to: 1114,
        from: [1114],
        serialize: (value: unknown) => String(value),
        parse: (value: string) => value,
      },
    },
  };
}

/**
 * Connects to PostgreSQL at `url` (lazily: the first query opens the pool).
 * With `migrate: true`, applies the migrations first.
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  if (options.prepare === true && !usesPreparedStatements(url)) {
    log("warn", "prepared statements on through what looks like a transaction-mode pooler", {
      hint: "they break there under load: DATABASE_PREPARE=auto or false",
    });
  }
  const sql = postgres(withoutPoolerHint(url), postgresOptions(url, options));
  if (options.migrate) {
    try {
      await migrate(sql);
    } catch (error) {
      await sql.end({ timeout: 5 });
      throw error;
    }
  }
  return new PostgresStore(sql, { dedupeWindowMs: options.dedupeWindowMs });
}
