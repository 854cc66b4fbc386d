/**
 * A throwaway PostgreSQL server for tests: a fresh cluster in a temporary
 * directory, listening on 127.0.0.1 on a free port, made with Debian's
 * `initdb` and `pg_ctl` (package `postgresql`).
 *
 * initdb refuses to run as root, so when the tests run as root the cluster
 * directory is handed to the `postgres` system user and the binaries run
 * through `runuser -u postgres --`.
 *
 * @module
 */

/** A running test server. */
export interface TestPostgres {
  /** Connection URL, e.g. `postgres://postgres@127.0.0.1:54321/postgres`. */
  url: string;
  /** TCP port the server listens on (kept across pause/resume). */
  port: number;
  /** Stops the server and deletes its directory. Safe to call twice. */
  stop(): Promise<void>;
  /** Stops the server but keeps its data ("the database went away"). */
  pause(): Promise<void>;
  /** Starts a paused server again on the same port with the same data. */
  resume(): Promise<void>;
}

const SEARCH_ROOT = "/usr/lib/postgresql";

/** Directory holding initdb and pg_ctl, or null. `POSTGRES_BIN` overrides the search. */
function findBinDir(): string | null {
  const override = Deno.env.get("POSTGRES_BIN");
  const candidates: string[] = [];
  if (override) {
    candidates.push(override);
  } else {
    let versions: string[] = [];
    try {
      for (const entry of Deno.readDirSync(SEARCH_ROOT)) {
        if (entry.isDirectory) versions.push(entry.name);
      }
    } catch {
      return null;
    }
    versions = versions.sort((a, b) => Number(b) - Number(a));
    for (const version of versions) candidates.push(`${SEARCH_ROOT}/${version}/bin`);
  }
  for (const dir of candidates) {
    if (isFile(`${dir}/initdb`) && isFile(`${dir}/pg_ctl`)) return dir;
  }
  return null;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** The uid and gid of the `postgres` system user, read from /etc/passwd. */
export function postgresUser(): { uid: number; gid: number } | null {
  let passwd: string;
  try {
    passwd = Deno.readTextFileSync("/etc/passwd");
  } catch {
    return null;
  }
  for (const line of passwd.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === "postgres" && fields.length >= 4) {
      return { uid: Number(fields[2]), gid: Number(fields[3]) };
    }
  }
  return null;
}

/**
 * Why a test PostgreSQL cannot be started here, or null when it can: the
 * binaries are missing, or (as root) the `postgres` user or `runuser` is.
 */
export function postgresAvailable(): string | null {
  const bin = findBinDir();
  if (bin === null) {
    return `PostgreSQL binaries (initdb, pg_ctl) not found under ${SEARCH_ROOT}/*/bin ` +
      "(install the Debian package `postgresql`, or set POSTGRES_BIN)";
  }
  if (isRoot()) {
    if (postgresUser() === null) return "running as root and there is no `postgres` system user";
    if (!isFile("/usr/sbin/runuser") && !isFile("/sbin/runuser") && !isFile("/usr/bin/runuser")) {
      return "running as root and `runuser` is missing";
    }
  }
  return null;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function run(bin: string, args: string[]): Promise<void> {
  const command = isRoot()
    ? new Deno.Command("runuser", { args: ["-u", "postgres", "--", bin, ...args] })
    : new Deno.Command(bin, { args });
  const result = await command.output();
  if (!result.success) {
    const decoder = new TextDecoder();
    throw new Error(
      `${bin} ${args.join(" ")} failed (exit ${result.code}): ` +
        decoder.decode(result.stderr) + decoder.decode(result.stdout),
    );
  }
}

/**
 * Creates and starts a fresh cluster. Throws when {@linkcode postgresAvailable}
 * gives a reason. Call `stop()` when done.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const reason = postgresAvailable();
  if (reason !== null) throw new Error(reason);
  const bin = findBinDir() as string;
  const dir = await Deno.makeTempDir({ prefix: "servana_pg_" });
  const dataDir = `${dir}/data`;
  const socketDir = `${dir}/sock`;
  const logFile = `${dir}/server.log`;
  await Deno.mkdir(socketDir);
  if (isRoot()) {
    const user = postgresUser() as { uid: number; gid: number };
    await Deno.chown(dir, user.uid, user.gid);
    await Deno.chown(socketDir, user.uid, user.gid);
  }
  const port = freePort();
  let running = false;
  let removed = false;

  async function start(): Promise<void> {
    await run(`${bin}/pg_ctl`, [
      "start",
      "-w",
      "-D",
      dataDir,
      "-l",
      logFile,
      "-o",
      `-c listen_addresses=127.0.0.1 -p ${port} -k ${socketDir} -c fsync=off ` +
      "-c synchronous_commit=off -c full_page_writes=off",
    ]);
    running = true;
  }

  async function halt(mode: "fast" | "immediate"): Promise<void> {
    if (!running) return;
    await run(`${bin}/pg_ctl`, ["stop", "-w", "-D", dataDir, "-m", mode]);
    running = false;
  }

  try {
    await run(`${bin}/initdb`, [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "-A",
      "trust",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
    await start();
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }

  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (removed) return;
      try {
        await halt("immediate");
      } finally {
        removed = true;
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
    async pause() {
      await halt("fast");
    },
    async resume() {
      if (removed) throw new Error("test PostgreSQL was stopped and removed");
      if (!running) await start();
    },
  };
}
