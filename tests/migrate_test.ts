import assert from "node:assert/strict";
import postgres from "postgres";
import { listMigrations, migrate } from "../src/store/migrate.ts";
import { postgresAvailable, startPostgres } from "./support/postgres.ts";

const unavailable = postgresAvailable();
if (unavailable !== null) console.log(`migrate_test: PostgreSQL tests skipped: ${unavailable}`);

Deno.test("listMigrations lists the repo's .sql files in name order", async () => {
  const names = await listMigrations();
  assert.ok(names.length >= 1);
  assert.deepEqual(names, [...names].sort());
  assert.ok(names.every((name) => name.endsWith(".sql")));
});

Deno.test({
  name: "migrate applies the migrations once and is re-runnable",
  ignore: unavailable !== null,
  async fn(t) {
    const pg = await startPostgres();
    const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
    try {
      const names = await listMigrations();

      await t.step("first run applies every file and creates the tables", async () => {
        const first = await migrate(sql);
        assert.deepEqual(first.applied, names);
        assert.deepEqual(first.skipped, []);
        const tables = await sql<{ table_name: string }[]>`
          select table_name from information_schema.tables
          where table_schema = 'public' order by table_name`;
        assert.deepEqual(
          tables.map((row) => row.table_name),
          [
            "chat_groups",
            "chats",
            "departments",
            "servana_migrations",
            "user_departments",
            "users",
          ],
        );
      });

      await t.step("second run applies nothing", async () => {
        const second = await migrate(sql);
        assert.deepEqual(second.applied, []);
        assert.deepEqual(second.skipped, names);
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
        },
      );

      await t.step("two concurrent runs do not race", async () => {
        await sql`delete from servana_migrations`;
        const [a, b] = await Promise.all([migrate(sql), migrate(sql)]);
        assert.deepEqual([...a.applied, ...b.applied].sort(), names);
      });

      await t.step("the seed's column names exist", async () => {
        const columns = await sql<{ column_name: string }[]>`
          select column_name from information_schema.columns
          where table_schema = 'public' and table_name in ('chats', 'users')`;
        const found = new Set(columns.map((row) => row.column_name));
        for (
          const column of [
            "chat_id",
            "chat_message",
            "chat_created_at",
            "sender_type",
            "prof_firstname",
            "prof_lastname",
            "auth_id",
          ]
        ) {
          assert.ok(found.has(column), `missing column ${column}`);
        }
      });
    } finally {
      await sql.end();
      await pg.stop();
    }
  },
});
