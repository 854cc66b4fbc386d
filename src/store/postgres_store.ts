/**
 * {@linkcode ChatStore} over PostgreSQL (Supabase's database), chosen by
 * `DATABASE_URL`, through `npm:postgres`. The schema is the SQL of
 * `supabase/migrations/` (see `migrate.ts`); the store does not migrate on
 * open unless asked to (`migrate: true`).
 *
 * @module
 */

import postgres from "postgres";
import { ServanaError } from "../errors.ts";
import { migrate } from "./migrate.ts";
import type {
  AddMessageResult,
  ChatGroup,
  ChatGroupCounts,
  ChatGroupStatus,
  ChatMessage,
  ChatStore,
  Department,
  Fixture,
  ListMessagesOptions,
  NewMessage,
  Role,
  User,
} from "./mod.ts";

const DEFAULT_LIMIT = 50;

/** Options of {@linkcode openPostgresStore}. */
export interface PostgresStoreOptions {
  /** Pool size, default 10. */
  max?: number;
  /** Seconds to wait for a connection, default 10. */
  connectTimeout?: number;
  /** Seconds before an idle connection is closed, default 30. */
  idleTimeout?: number;
  /**
   * Prepared statements, default true. Set false behind a transaction-mode
   * pooler (Supabase's port 6543), which does not support them.
   */
  prepare?: boolean;
  /** Apply `supabase/migrations/` on open (development, tests). Default false. */
  migrate?: boolean;
}

interface UserRow {
  id: string | number;
  auth_id: string;
  role: Role;
  prof_firstname: string;
  prof_lastname: string;
  departments: (string | number)[];
}

interface ChatGroupRow {
  id: string | number;
  client_id: string | number;
  department_id: string | number | null;
  agent_id: string | number | null;
  status: ChatGroupStatus;
}

interface ChatRow {
  chat_id: string | number;
  chat_group_id: string | number;
  sender_id: string | number;
  sender_type: Role;
  chat_message: string;
  chat_created_at: Date;
  client_message_id: string | null;
}

function toUser(row: UserRow): User {
  return {
    id: Number(row.id),
    authId: row.auth_id,
    role: row.role,
    departments: row.departments.map(Number).sort((a, b) => a - b),
    firstName: row.prof_firstname,
    lastName: row.prof_lastname,
  };
}

function toChatGroup(row: ChatGroupRow): ChatGroup {
  return {
    id: Number(row.id),
    clientId: Number(row.client_id),
    departmentId: row.department_id === null ? null : Number(row.department_id),
    agentId: row.agent_id === null ? null : Number(row.agent_id),
    status: row.status,
  };
}

function toMessage(row: ChatRow): ChatMessage {
  return {
    id: Number(row.chat_id),
    chatGroupId: Number(row.chat_group_id),
    senderId: Number(row.sender_id),
    senderType: row.sender_type,
    message: row.chat_message,
    createdAt: new Date(row.chat_created_at).toISOString(),
    clientMessageId: row.client_message_id,
  };
}

/** The SQLSTATE and constraint of a database error, if it is one. */
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

const CHAT_COLUMNS = "chat_id, chat_group_id, sender_id, sender_type, chat_message, " +
  "chat_created_at, client_message_id";

/** Chat data in PostgreSQL. `close()` ends the connection pool it was given. */
export class PostgresStore implements ChatStore {
  /** Always `"postgres"`. */
  readonly kind = "postgres" as const;
  readonly #sql: postgres.Sql;

  /** Wraps a `postgres()` client; the store owns it from now on. */
  constructor(sql: postgres.Sql) {
    this.#sql = sql;
  }

  /** The underlying client (migrations, tests). */
  get sql(): postgres.Sql {
    return this.#sql;
  }

  async #selectUsers(where: postgres.PendingQuery<postgres.Row[]>): Promise<User | null> {
    const rows = await this.#sql<UserRow[]>`
      select u.id, u.auth_id, u.role, u.prof_firstname, u.prof_lastname,
        coalesce(
          (select array_agg(ud.department_id order by ud.department_id)
             from user_departments ud where ud.user_id = u.id),
          '{}'
        ) as departments
      from users u
      where ${where}`;
    return rows.length === 0 ? null : toUser(rows[0]);
  }

  /** User by Servana id, or null. */
  getUser(id: number): Promise<User | null> {
    return this.#selectUsers(this.#sql`u.id = ${id}`);
  }

  /** User by Supabase auth id (a token's `sub`), or null. */
  getUserByAuthId(authId: string): Promise<User | null> {
    return this.#selectUsers(this.#sql`u.auth_id = ${authId}`);
  }

  /** Department by id, or null. */
  async getDepartment(id: number): Promise<Department | null> {
    const rows = await this.#sql<{ id: string; name: string }[]>`
      select id, name from departments where id = ${id}`;
    return rows.length === 0 ? null : { id: Number(rows[0].id), name: rows[0].name };
  }

  /** Chat group by id, or null. */
  async getChatGroup(id: number): Promise<ChatGroup | null> {
    const rows = await this.#sql<ChatGroupRow[]>`
      select id, client_id, department_id, agent_id, status from chat_groups where id = ${id}`;
    return rows.length === 0 ? null : toChatGroup(rows[0]);
  }

  /** Total and active chat groups. */
  async countChatGroups(): Promise<ChatGroupCounts> {
    const rows = await this.#sql<{ total: number; active: number }[]>`
      select count(*)::int as total,
        (count(*) filter (where status = 'active'))::int as active
      from chat_groups`;
    return { total: rows[0].total, active: rows[0].active };
  }

  /**
   * Stores a message (`insert … on conflict do nothing`, then the earlier row
   * on a repeated `clientMessageId`). Rejects with `ROOM_NOT_FOUND` for an
   * unknown group and `USER_NOT_FOUND` for an unknown sender.
   */
  async addMessage(input: NewMessage): Promise<AddMessageResult> {
    const clientMessageId = input.clientMessageId ?? null;
    for (let attempt = 0; attempt < 3; attempt++) {
      let inserted: ChatRow[];
      try {
        inserted = await this.#sql<ChatRow[]>`
          insert into chats (chat_group_id, sender_id, sender_type, chat_message, client_message_id)
          values (${input.chatGroupId}, ${input.senderId}, ${input.senderType},
            ${input.message}, ${clientMessageId})
          on conflict (sender_id, client_message_id) do nothing
          returning ${this.#sql.unsafe(CHAT_COLUMNS)}`;
      } catch (error) {
        const pg = pgError(error);
        if (pg?.code === "23503" && pg.constraint === "chats_chat_group_id_fkey") {
          throw new ServanaError("ROOM_NOT_FOUND", `Chat group ${input.chatGroupId} not found`);
        }
        if (pg?.code === "23503" && pg.constraint === "chats_sender_id_fkey") {
          throw new ServanaError("USER_NOT_FOUND", `User ${input.senderId} not found`);
        }
        throw error;
      }
      if (inserted.length === 1) return { message: toMessage(inserted[0]), created: true };
      const earlier = await this.#sql<ChatRow[]>`
        select ${this.#sql.unsafe(CHAT_COLUMNS)} from chats
        where sender_id = ${input.senderId} and client_message_id = ${clientMessageId}`;
      if (earlier.length === 1) return { message: toMessage(earlier[0]), created: false };
      // The conflicting row vanished between both statements: try again.
    }
    throw new Error("PostgresStore: could not store or find the message");
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
      select ${this.#sql.unsafe(CHAT_COLUMNS)} from chats
      where chat_group_id = ${chatGroupId} ${before}
      order by chat_id desc
      limit ${limit}`;
    return rows.map(toMessage).reverse();
  }

  /**
   * Inserts or updates departments, users and chat groups in one transaction.
   * Unknown references (departments, users) reject with `INVALID_DATA` and
   * nothing is written.
   */
  async loadFixture(fixture: Fixture): Promise<void> {
    try {
      await this.#sql.begin(async (tx) => {
        for (const department of fixture.departments ?? []) {
          await tx`
            insert into departments (id, name) values (${department.id}, ${department.name})
            on conflict (id) do update set name = excluded.name`;
        }
        for (const user of fixture.users ?? []) {
          await tx`
            insert into users (id, auth_id, role, prof_firstname, prof_lastname)
            values (${user.id}, ${user.authId}, ${user.role}, ${user.firstName}, ${user.lastName})
            on conflict (id) do update set auth_id = excluded.auth_id, role = excluded.role,
              prof_firstname = excluded.prof_firstname, prof_lastname = excluded.prof_lastname`;
          const departments = [...new Set(user.departments)];
          await tx`
            delete from user_departments
            where user_id = ${user.id} and not (department_id = any(${departments}::bigint[]))`;
          for (const departmentId of departments) {
            await tx`
              insert into user_departments (user_id, department_id)
              values (${user.id}, ${departmentId})
              on conflict do nothing`;
          }
        }
        for (const group of fixture.chatGroups ?? []) {
          await tx`
            insert into chat_groups (id, client_id, department_id, agent_id, status)
            values (${group.id}, ${group.clientId}, ${group.departmentId ?? null},
              ${group.agentId ?? null}, ${group.status})
            on conflict (id) do update set client_id = excluded.client_id,
              department_id = excluded.department_id, agent_id = excluded.agent_id,
              status = excluded.status`;
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

  /** Resolves when the database answers `select 1`. */
  async ping(): Promise<void> {
    await this.#sql`select 1`;
  }

  /** Ends the connection pool (waits up to 5 s for running queries). */
  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}

/**
 * Connects to PostgreSQL at `url` (lazily: the first query opens the pool).
 * With `migrate: true`, applies the migrations first.
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  const sql = postgres(url, {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeout ?? 10,
    idle_timeout: options.idleTimeout ?? 30,
    prepare: options.prepare ?? true,
    onnotice: () => {},
  });
  if (options.migrate) {
    try {
      await migrate(sql);
    } catch (error) {
      await sql.end({ timeout: 5 });
      throw error;
    }
  }
  return new PostgresStore(sql);
}
