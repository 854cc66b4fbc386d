/**
 * Applies the SQL migrations of `supabase/migrations/` to a PostgreSQL
 * database, in file-name order, each once: applied names are recorded in the
 * table `servana_migrations`. All pending files and their records are applied
 * in one transaction (all or nothing), under an advisory lock so that two
 * processes migrating at once do not race.
 *
 * @module
 */

import type postgres from "postgres";

/** Default folder of the migration files (`supabase/migrations/` of this repo). */
export const MIGRATIONS_DIR: URL = new URL("../../supabase/migrations/", import.meta.url);

/** Arbitrary key of the advisory lock held while migrating. */
const LOCK_KEY = 7_319_420_115;

/** Options of {@linkcode migrate}. */
export interface MigrateOptions {
  /** Folder of `*.sql` files; default {@linkcode MIGRATIONS_DIR}. */
  dir?: string | URL;
  /** Called with each applied file name, after the transaction committed. */
  onApplied?: (name: string) => void;
}

/** Result of {@linkcode migrate}. */
export interface MigrateResult {
  /** Files applied by this call, in order. */
  applied: string[];
  /** Files already recorded before this call. */
  skipped: string[];
}

/** Names of the `*.sql` files of a folder, sorted. */
export async function listMigrations(dir: string | URL = MIGRATIONS_DIR): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".sql")) names.push(entry.name);
  }
  return names.sort();
}

function fileUrl(dir: string | URL, name: string): URL | string {
  if (dir instanceof URL) return new URL(name, dir.href.endsWith("/") ? dir : dir.href + "/");
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/**
 * Applies every migration not yet recorded in `servana_migrations`.
 * Re-running it is harmless: recorded files are skipped.
 */
export async function migrate(
  sql: postgres.Sql,
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const dir = options.dir ?? MIGRATIONS_DIR;
  const names = await listMigrations(dir);
  const files: { name: string; text: string }[] = [];
  for (const name of names) {
    files.push({ name, text: await Deno.readTextFile(fileUrl(dir, name)) });
  }
  const result: MigrateResult = { applied: [], skipped: [] };
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${LOCK_KEY})`;
    await tx`
      create table if not exists servana_migrations (
        name text primary key,
        applied_at timestamptz not null default now()
      )`;
    const rows = await tx<{ name: string }[]>`select name from servana_migrations`;
    const done = new Set(rows.map((row) => row.name));
    for (const file of files) {
      if (done.has(file.name)) {
        result.skipped.push(file.name);
        continue;
      }
      await tx.unsafe(file.text).simple();
      await tx`insert into servana_migrations (name) values (${file.name})`;
      result.applied.push(file.name);
    }
  });
  for (const name of result.applied) options.onApplied?.(name);
  return result;
}
