/**
 * `deno task migrate`: applies `supabase/migrations/*.sql` to the PostgreSQL
 * database of `DATABASE_URL` (recorded in `servana_migrations`).
 *
 * @module
 */

import postgres from "postgres";
import { migrate } from "../src/store/migrate.ts";
import { usesPreparedStatements, withoutPoolerHint } from "../src/store/postgres_store.ts";

async function main(): Promise<number> {
  const url = Deno.env.get("DATABASE_URL");
  if (!url) {
    console.error("DATABASE_URL is not set: nothing to migrate.");
    return 2;
  }
  // the pooler hint (`?pgbouncer=true`) is ours, not the server's; through a
  // transaction-mode pooler no statement is prepared
  const sql = postgres(withoutPoolerHint(url), {
    max: 1,
    onnotice: () => {},
    connect_timeout: 15,
    prepare: usesPreparedStatements(url),
  });
  try {
    const result = await migrate(sql);
    for (const name of result.applied) console.log(`applied ${name}`);
    console.log(
      `${result.applied.length} migration(s) applied, ${result.skipped.length} already applied.`,
    );
    return 0;
  } catch (error) {
    console.error(`migration failed: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
