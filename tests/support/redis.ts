/**
 * A throwaway Redis server for tests: Debian's `redis-server` (package
 * `redis-server`) on 127.0.0.1 and a free port, in a temporary directory,
 * without persistence.
 *
 * @module
 */

/** A running test Redis. */
export interface TestRedis {
  /** `redis://127.0.0.1:PORT` */
  url: string;
  /** TCP port (kept across pause/resume). */
  port: number;
  /** Kills the server and deletes its directory. Safe to call twice. */
  stop(): Promise<void>;
  /** Kills the server ("Redis went away"); its data is lost (no persistence). */
  pause(): Promise<void>;
  /** Starts the server again on the same port. */
  resume(): Promise<void>;
}

const CANDIDATES = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"];

function findBinary(): string | null {
  const override = Deno.env.get("REDIS_SERVER_BIN");
  for (const path of override ? [override] : CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return null;
}

/** Why a test Redis cannot be started here, or null when it can. */
export function redisAvailable(): string | null {
  if (findBinary() === null) {
    return `redis-server not found (${CANDIDATES.join(", ")}); install the Debian package ` +
      "`redis-server`, or set REDIS_SERVER_BIN";
  }
  return null;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function canConnect(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buf = new Uint8Array(16);
      const n = await conn.read(buf);
      return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG");
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

/** Starts a fresh Redis. Throws when {@linkcode redisAvailable} gives a reason. */
export async function startRedis(): Promise<TestRedis> {
  const reason = redisAvailable();
  if (reason !== null) throw new Error(reason);
  const bin = findBinary() as string;
  const dir = await Deno.makeTempDir({ prefix: "servana_redis_" });
  const port = freePort();
  let child: Deno.ChildProcess | null = null;
  let removed = false;

  async function start(): Promise<void> {
    const process = new Deno.Command(bin, {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        `${dir}/redis.log`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child = process;
    for (let i = 0; i < 200; i++) {
      if (await canConnect(port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    await halt();
    let logText = "";
    try {
      logText = await Deno.readTextFile(`${dir}/redis.log`);
    } catch {
      // no log
    }
    throw new Error(`redis-server did not start on port ${port}: ${logText.slice(-2000)}`);
  }

  async function halt(): Promise<void> {
    const process = child;
    if (!process) return;
    child = null;
    try {
      process.kill("SIGKILL");
    } catch {
      // already gone
    }
    await process.status;
  }

  try {
    await start();
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (removed) return;
      removed = true;
      await halt();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    async pause() {
      await halt();
    },
    async resume() {
      if (removed) throw new Error("test Redis was stopped and removed");
      if (!child) await start();
    },
  };
}
