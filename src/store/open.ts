/**
 * Chooses the store: PostgreSQL when a database URL is given
 * (`DATABASE_URL`), Deno KV otherwise (`KV_PATH`, Deno Deploy's attached
 * database when no path is set, or a KV handle opened by the caller).
 *
 * @module
 */

import { KvStore, openKvStore } from "./kv_store.ts";
import type { ChatStore } from "./mod.ts";
import { openPostgresStore, type PostgresStoreOptions } from "./postgres_store.ts";

/** Options of {@linkcode openStore}. */
export interface OpenStoreOptions {
  /** `DATABASE_URL`: when set, the store is PostgreSQL. */
  databaseUrl?: string;
  /** An open KV to use (tests); the store takes ownership and closes it. */
  kv?: Deno.Kv;
  /** `KV_PATH`: a KV file, or `:memory:`; unset on Deno Deploy. */
  kvPath?: string;
  /** Pool and migration options of the PostgreSQL store. */
  postgres?: PostgresStoreOptions;
}

/** Opens the store the options select (PostgreSQL when `databaseUrl` is set, else KV). */
export async function openStore(options: OpenStoreOptions = {}): Promise<ChatStore> {
  if (options.databaseUrl) return await openPostgresStore(options.databaseUrl, options.postgres);
  if (options.kv) return new KvStore(options.kv);
  return await openKvStore(options.kvPath);
}
