import assert from "node:assert/strict";
import postgres from "postgres";
import { listMigrations, migrate } from "../src/store/migrate.ts";
import { postgresAvailable, startPostgres } from "./support/postgres.ts";

const unavailable = postgresAvailable();
if (unavailable !== null) console.log(`migrate_test: PostgreSQL tests skipped: ${unavailable}`);

Deno.test("listMigrations lists the repo's .sql files in name order", async () => {
  const names = await listMigrations();
  assert.ok(names.includes("20261202090000_servana_schema.sql"), JSON.stringify(names));
  assert.deepEqual(names, [...names].sort());
  assert.ok(names.every((name) => name.endsWith(".sql")));
});

Deno.test("listMigrations: only .sql files of the folder, sorted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "servana_migrations_" });
  try {
    await Deno.writeTextFile(`${dir}/20260102_b.sql`, "select 1;");
    await Deno.writeTextFile(`${dir}/20260101_a.sql`, "select 1;");
    await Deno.writeTextFile(`${dir}/README.md`, "not a migration");
    await Deno.mkdir(`${dir}/20260103_dir.sql`);
    assert.deepEqual(await listMigrations(dir), ["20260101_a.sql", "20260102_b.sql"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The migration that creates Servana's tables on a fresh install. */
const SCHEMA = "20261202090000_servana_schema.sql";

Deno.test({
  name: "migrate applies the migrations once and is re-runnable",
  ignore: unavailable !== null,
  async fn(t) {
    const pg = await startPostgres();
    const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
    try {
      const names = await listMigrations();
      assert.ok(names.includes(SCHEMA));

      await t.step("first run applies every file and creates Servana's tables", async () => {
        const applied: string[] = [];
        const first = await migrate(sql, { onApplied: (name) => applied.push(name) });
        assert.deepEqual(first.applied, names);
        assert.deepEqual(first.skipped, []);
        assert.deepEqual(applied, names);
        const tables = await sql<{ table_name: string }[]>`
          select table_name from information_schema.tables
          where table_schema = 'public' order by table_name`;
        assert.deepEqual(
          tables.map((row) => row.table_name),
          [
            "chat",
            "chat_group",
            "client",
            "department",
            "image",
            "profile",
            "realtime_message_dedupe",
            "role",
            "servana_migrations",
            "sys_user",
            "sys_user_department",
          ],
        );
      });

      await t.step("the applied names are recorded", async () => {
        const rows = await sql<{ name: string }[]>`
          select name from servana_migrations order by name`;
        assert.deepEqual(rows.map((row) => row.name), names);
      });

      await t.step("second run applies nothing", async () => {
        const applied: string[] = [];
        const second = await migrate(sql, { onApplied: (name) => applied.push(name) });
        assert.deepEqual(second.applied, []);
        assert.deepEqual(second.skipped, names);
        assert.deepEqual(applied, []);
        const rows = await sql`select name from servana_migrations`;
        assert.equal(rows.length, names.length);
      });

      await t.step(
        "the SQL itself runs twice without error (supabase db push + migrate)",
        async () => {
          for (const name of names) {
            const text = await Deno.readTextFile(
              new URL(`../supabase/migrations/${name}`, import.meta.url),
            );
            await sql.unsafe(text).simple();
          }
          // the analytics triggers exist once, not once per run
          const triggers = await sql<{ tgname: string }[]>`
            select tgname from pg_trigger where not tgisinternal order by tgname`;
          assert.deepEqual(triggers.map((row) => row.tgname), [
            "trigger_calculate_response_time",
            "trigger_mark_resolved",
          ]);
        },
      );

      await t.step("two concurrent runs do not race", async () => {
        await sql`delete from servana_migrations`;
        const [a, b] = await Promise.all([migrate(sql), migrate(sql)]);
        assert.deepEqual([...a.applied, ...b.applied].sort(), names);
        // the one that waited for the lock found everything recorded
        assert.deepEqual([...a.skipped, ...b.skipped].sort(), names);
        const rows = await sql`select name from servana_migrations`;
        assert.equal(rows.length, names.length);
      });

      await t.step("Servana's column names exist", async () => {
        const columns = await sql<{ table_name: string; column_name: string }[]>`
          select table_name, column_name from information_schema.columns
          where table_schema = 'public'`;
        const found = new Set(columns.map((row) => `${row.table_name}.${row.column_name}`));
        for (
          const column of [
            "chat.chat_id",
            "chat.chat_body",
            "chat.chat_created_at",
            "chat.sys_user_id",
            "chat.client_id",
            "chat.chat_group_id",
            "chat.chat_delivered_at",
            "chat.chat_read_at",
            "chat_group.chat_group_id",
            "chat_group.client_id",
            "chat_group.dept_id",
            "chat_group.sys_user_id",
            "chat_group.status",
            "chat_group.created_at",
            "sys_user.sys_user_email",
            "sys_user.supabase_user_id",
            "sys_user.sys_user_is_active",
            "sys_user.role_id",
            "sys_user.prof_id",
            "sys_user_department.sys_user_id",
            "sys_user_department.dept_id",
            "client.client_number",
            "client.client_country_code",
            "client.client_is_active",
            "profile.prof_firstname",
            "profile.prof_lastname",
            "image.img_location",
            "image.img_is_current",
            "role.role_name",
            "department.dept_name",
            "department.dept_is_active",
          ]
        ) {
          assert.ok(found.has(column), `missing column ${column}`);
        }
      });

      await t.step("the service's own table and indexes", async () => {
        const indexes = await sql<{ indexname: string }[]>`
          select indexname from pg_indexes where schemaname = 'public'`;
        const found = new Set(indexes.map((row) => row.indexname));
        for (
          const index of [
            "idx_chat_chat_group_id",
            "idx_chat_group_status",
            "realtime_chat_group_chat_id_idx",
            "realtime_message_dedupe_pkey",
            "realtime_message_dedupe_created_at_idx",
          ]
        ) {
          assert.ok(found.has(index), `missing index ${index}`);
        }
        const [rls] = await sql<{ relrowsecurity: boolean }[]>`
          select relrowsecurity from pg_class where relname = 'realtime_message_dedupe'`;
        assert.equal(rls.relrowsecurity, true);
        // a dedupe entry names an agent or a client, nothing else
        const [{ client_id }] = await sql<{ client_id: string }[]>`
          insert into client (client_country_code, client_number) values ('+63', '1')
          returning client_id`;
        const [{ chat_group_id }] = await sql<{ chat_group_id: string }[]>`
          insert into chat_group (client_id) values (${client_id}) returning chat_group_id`;
        const [{ chat_id }] = await sql<{ chat_id: string }[]>`
          insert into chat (chat_body, client_id, chat_group_id)
          values ('hi', ${client_id}, ${chat_group_id}) returning chat_id`;
        await sql`
          insert into realtime_message_dedupe (sender_kind, sender_id, client_message_id, chat_id)
          values ('client', ${client_id}, 'm1', ${chat_id})`;
        await assert.rejects(
          sql`
            insert into realtime_message_dedupe (sender_kind, sender_id, client_message_id, chat_id)
            values ('admin', ${client_id}, 'm2', ${chat_id})`,
          /realtime_message_dedupe_kind_check/,
        );
        await assert.rejects(
          sql`
            insert into realtime_message_dedupe (sender_kind, sender_id, client_message_id, chat_id)
            values ('client', ${client_id}, 'm1', ${chat_id})`,
          /realtime_message_dedupe_pkey/,
        );
        // deleting the message deletes its dedupe entry
        await sql`delete from chat where chat_id = ${chat_id}`;
        const left = await sql`select 1 from realtime_message_dedupe`;
        assert.equal(left.length, 0);
      });
    } finally {
      await sql.end();
      await pg.stop();
    }
  },
});

Deno.test({
  name: "migrate: a failing file applies nothing of the run",
  ignore: unavailable !== null,
  async fn() {
    const pg = await startPostgres();
    const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
    const dir = await Deno.makeTempDir({ prefix: "servana_migrations_" });
    try {
      await Deno.writeTextFile(`${dir}/1_ok.sql`, "create table ok_one (id int);");
      await Deno.writeTextFile(`${dir}/2_bad.sql`, "create table broken (id int;");
      await assert.rejects(migrate(sql, { dir }));
      const tables = await sql`
        select table_name from information_schema.tables
        where table_schema = 'public' and table_name in ('ok_one', 'servana_migrations')`;
      assert.equal(tables.length, 0);
      await Deno.writeTextFile(`${dir}/2_bad.sql`, "create table fixed (id int);");
      const result = await migrate(sql, { dir });
      assert.deepEqual(result.applied, ["1_ok.sql", "2_bad.sql"]);
    } finally {
      await sql.end();
      await pg.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
