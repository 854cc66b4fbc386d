/**
 * Starts the real service for the bench: `deno run` of main.ts with exactly
 * the permission flags of `deno task compile` (as tests/permissions_test.ts
 * does), `APP_ENV=production`, the agents' and the customers' HS256
 * secrets, a generated seed file (Servana's tables) and a KV file in a fresh
 * directory under bench/out/. Also reads the server process's resident
 * memory and CPU time from /proc.
 *
 * @module
 */

import type { Fixture } from "../src/store/mod.ts";
import { onServerCore } from "./pinning.ts";

const root = new URL("../", import.meta.url);
const rootPath = decodeURIComponent(root.pathname);

/**
 * The HS256 secrets the bench's service verifies tokens with: agents'
 * Supabase-shaped tokens (`SUPABASE_JWT_SECRET`) and customers' backend
 * tokens (`JWT_ACCESS_SECRET`), two different secrets as in production.
 */
export const BENCH_SECRETS: BenchSecrets = {
  agents: "bench-agents-secret-0123456789abcdef-0123456789abcdef",
  customers: "bench-customers-secret-0123456789abcdef-0123456789abcdef",
};

/** The two token secrets (see {@linkcode BENCH_SECRETS}). */
export interface BenchSecrets {
  /** `SUPABASE_JWT_SECRET`: agents and admins (`sys_user` rows). */
  agents: string;
  /** `JWT_ACCESS_SECRET`: customers (`client` rows). */
  customers: string;
}

/** A seed file's content: Servana's tables (see src/store/fixture.ts). */
export type Seed = Fixture;

/** A `supabase_user_id` for bench agent `n` (a uuid, as the column holds). */
export function benchAuthId(n: number): string {
  return `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
}

/** A running service process. */
export interface Service {
  url: string;
  pid: number;
  /** Lines the service logged at level warn or error so far. */
  problems: string[];
  /** Count of log lines by level so far. */
  levels: Record<string, number>;
  /** The last 2,000 V8 `--trace-gc` Mark-Compact lines (with `BENCH_SERVER_FLAGS=--v8-flags=--trace-gc`). */
  gcLines: string[];
  /**
   * With `BENCH_INSPECT=1` (investigation; the server runs with `--inspect`): the V8 heap
   * in use and committed, bytes, optionally after a full GC (DevTools protocol). Else null.
   */
  heap: ((options: { gc: boolean }) => Promise<{ used: number; total: number }>) | null;
  /** Stops it with SIGTERM (SIGKILL after 15 s) and removes its directory. */
  stop(): Promise<{ code: number }>;
}

/** The `--allow-*` flags of `deno task compile`. */
export function compileFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", root)));
  const task: string = config.tasks.compile;
  return task.split(/\s+/).filter((arg) => arg.startsWith("--allow-"));
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function drain(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buffered = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    }
  } catch {
    // closed
  }
  if (buffered) onLine(buffered);
}

/**
 * Starts main.ts on a free port with `seed` loaded; resolves once `/readyz`
 * answers 200. `env` adds or overrides variables (e.g. RATE_LIMIT_MESSAGES).
 */
export async function startService(
  seed: Seed,
  options: { name: string; env?: Record<string, string>; cpuProf?: boolean },
): Promise<Service> {
  const outDir = `${rootPath}bench/out`;
  await Deno.mkdir(outDir, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: outDir, prefix: `${options.name}-` });
  const seedFile = `${dir}/seed.json`;
  await Deno.writeTextFile(seedFile, JSON.stringify(seed));
  const port = freePort();
  const args = ["run", "--config", `${rootPath}deno.json`, ...compileFlags()];
  if (options.cpuProf) {
    args.push("--cpu-prof", "--cpu-prof-interval=250", `--cpu-prof-dir=${outDir}`);
  }
  // investigation only, e.g. BENCH_SERVER_FLAGS=--v8-flags=--trace-gc
  const extra = Deno.env.get("BENCH_SERVER_FLAGS");
  if (extra) args.push(...extra.split(/\s+/).filter(Boolean));
  const inspectPort = Deno.env.get("BENCH_INSPECT") === "1" ? freePort() : 0;
  if (inspectPort) args.push(`--inspect=127.0.0.1:${inspectPort}`);
  args.push(`${rootPath}main.ts`);
  const [command, commandArgs] = onServerCore(Deno.execPath(), args);
  const child = new Deno.Command(command, {
    args: commandArgs,
    cwd: dir,
    env: {
      APP_ENV: "production",
      HOST: "127.0.0.1",
      PORT: String(port),
      SUPABASE_JWT_SECRET: BENCH_SECRETS.agents,
      JWT_ACCESS_SECRET: BENCH_SECRETS.customers,
      SOCKET_CORS_ORIGINS: "https://app.bench.example",
      SEED_FILE: seedFile,
      KV_PATH: "./data/servana.kv",
      // the bench measures this process alone: no database, no Redis
      DATABASE_URL: "",
      REDIS_URL: "",
      NO_COLOR: "1",
      ...options.env,
      ...serviceEnvOverride(),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const problems: string[] = [];
  const levels: Record<string, number> = {};
  const gcLines: string[] = [];
  const lastLines: string[] = [];
  function onLine(line: string): void {
    lastLines.push(line);
    if (lastLines.length > 20) lastLines.shift();
    if (line.includes("Mark-Compact")) {
      gcLines.push(line);
      if (gcLines.length > 2000) gcLines.shift();
      return;
    }
    const match = line.match(/"level":"(\w+)"/);
    const level = match ? match[1] : "other";
    levels[level] = (levels[level] ?? 0) + 1;
    if ((level === "warn" || level === "error") && problems.length < 50) problems.push(line);
  }
  const drained = Promise.all([drain(child.stdout, onLine), drain(child.stderr, onLine)]);
  const url = `http://127.0.0.1:${port}`;
  let exited = false;
  child.status.then(() => (exited = true));
  const deadline = Date.now() + 120_000;
  while (true) {
    if (exited) {
      await drained;
      throw new Error(`${options.name} service exited: ${lastLines.join("\n")}`);
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${options.name} service did not become ready`);
    }
    try {
      const res = await fetch(`${url}/readyz`);
      await res.body?.cancel();
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid,
    problems,
    levels,
    gcLines,
    heap: inspectPort ? (o) => inspectHeap(inspectPort, o) : null,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, 15_000);
      const status = await child.status;
      clearTimeout(timer);
      await drained;
      await Deno.remove(dir, { recursive: true });
      return { code: status.code };
    },
  };
}

/**
 * Resident memory of a process, bytes: current (VmRSS) and peak so far
 * (VmHWM), from /proc/<pid>/status. Deno lets only `--allow-all` read
 * /proc/<pid>, so the file is read by `cat` (the bench has `--allow-run`).
 */
export async function readRss(pid: number): Promise<{ rss: number; hwm: number }> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stderr: "null" })
    .output();
  if (!out.success) throw new Error(`no process ${pid}`);
  const status = new TextDecoder().decode(out.stdout);
  const kb = (name: string) => Number(status.match(new RegExp(`${name}:\\s+(\\d+) kB`))?.[1] ?? 0);
  return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
}

/**
 * CPU seconds (user + system, all threads) a process has used, from
 * /proc/<pid>/stat (read by `cat`, as {@linkcode readRss}), in Linux's
 * USER_HZ clock ticks (100 per second).
 */
export async function readCpuSeconds(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stderr: "null" })
    .output();
  if (!out.success) throw new Error(`no process ${pid}`);
  const stat = new TextDecoder().decode(out.stdout);
  // the fields after the command name (which may hold spaces) in parentheses
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Heap usage through the V8 inspector (DevTools protocol), optionally after a full GC. */
async function inspectHeap(
  port: number,
  options: { gc: boolean },
): Promise<{ used: number; total: number }> {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as {
    webSocketDebuggerUrl: string;
  }[];
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let nextId = 1;
  const waiting = new Map<number, (result: Record<string, number>) => void>();
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data as string);
    waiting.get(message.id)?.(message.result ?? {});
  };
  function call(method: string): Promise<Record<string, number>> {
    const id = nextId++;
    return new Promise((resolve) => {
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method }));
    });
  }
  try {
    if (options.gc) await call("HeapProfiler.collectGarbage");
    const usage = await call("Runtime.getHeapUsage");
    return { used: usage.usedSize, total: usage.totalSize };
  } finally {
    ws.close();
  }
}

/**
 * `BENCH_SERVICE_ENV="NAME=value NAME2=value2"` (investigation only): more
 * variables for the service under test, e.g. `ACCESS_RECHECK_INTERVAL=60000`.
 */
function serviceEnvOverride(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of (Deno.env.get("BENCH_SERVICE_ENV") ?? "").split(/\s+/)) {
    const at = pair.indexOf("=");
    if (at > 0) env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return env;
}
