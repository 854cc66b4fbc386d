/**
 * A throwaway PgBouncer for tests, in transaction pool mode (what Supabase's
 * pooled connection string is): Debian's `pgbouncer` (package `pgbouncer`)
 * on 127.0.0.1 and a free port, in front of a test PostgreSQL, configured in
 * a temporary directory. PgBouncer refuses to run as root, so as root it runs
 * as the `postgres` system user through `runuser`.
 *
 * @module
 */

import { postgresUser } from "./postgres.ts";
import { freePort } from "./processes.ts";

/** A running test PgBouncer. */
export interface TestPgbouncer {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (through the pooler). */
  url: string;
  port: number;
  /** Stops it and deletes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

const CANDIDATES = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"];

function findBinary(): string | null {
  for (const path of CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return null;
}

/** Why a test PgBouncer cannot be started here, or null when it can. */
export function pgbouncerAvailable(): string | null {
  if (findBinary() === null) {
    return `pgbouncer not found (${CANDIDATES.join(", ")}); install the Debian package pgbouncer`;
  }
  if (Deno.uid() === 0 && postgresUser() === null) {
    return "running as root and there is no `postgres` system user to run pgbouncer as";
  }
  return null;
}

/**
 * Starts PgBouncer in transaction mode in front of the PostgreSQL at
 * `upstreamPort` (database `postgres`, user `postgres`, trust), with a small
 * server pool so that consecutive statements of one client land on
 * different server connections.
 */
export async function startPgbouncer(
  upstreamPort: number,
  options: { poolSize?: number } = {},
): Promise<TestPgbouncer> {
  const reason = pgbouncerAvailable();
  if (reason !== null) throw new Error(reason);
  const bin = findBinary()!;
  const dir = await Deno.makeTempDir({ prefix: "servana_pgbouncer_" });
  const port = freePort();
  await Deno.writeTextFile(`${dir}/users.txt`, `"postgres" ""\n`);
  await Deno.writeTextFile(
    `${dir}/pgbouncer.ini`,
    [
      "[databases]",
      `postgres = host=127.0.0.1 port=${upstreamPort} dbname=postgres user=postgres`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${dir}/users.txt`,
      "pool_mode = transaction",
      `default_pool_size = ${options.poolSize ?? 4}`,
      "max_client_conn = 200",
      `logfile = ${dir}/pgbouncer.log`,
      "ignore_startup_parameters = extra_float_digits,options",
      "",
    ].join("\n"),
  );
  const ids = Deno.uid() === 0 ? postgresUser() : null;
  if (ids !== null) {
    for (const path of [dir, `${dir}/users.txt`, `${dir}/pgbouncer.ini`]) {
      await Deno.chown(path, ids.uid, ids.gid);
    }
  }
  const args = [`${dir}/pgbouncer.ini`];
  const child =
    (ids !== null
      ? new Deno.Command("runuser", { args: ["-u", "postgres", "--", bin, ...args] })
      : new Deno.Command(bin, { args })).spawn();
  let stopped = false;
  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  // ready once it accepts connections
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, port, stop };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const log = await Deno.readTextFile(`${dir}/pgbouncer.log`).catch(() => "(no log)");
  await stop();
  throw new Error(`pgbouncer did not start:\n${log.slice(-2000)}`);
}
