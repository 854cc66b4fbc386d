/**
 * The benchmark: the same room broadcast on three servers, each started as
 * its own process (see deno_server.ts, node_server.mjs, raw_server.ts).
 *
 * Per server: 100 connections in room "bench" (the sender plus 99 receivers
 * spread over receiver Worker threads), one sender keeping 20 acked emits in
 * flight, 1,000 warm-up messages, then 5 measured rounds of 2,000 messages
 * (the median round is reported). Delivered/sec = receptions
 * across all receivers / (last reception − first send). Ack p99 = 99th
 * percentile of emit→ack time. Then, on a fresh server process, 5,000 idle
 * connections: bytes per connection = (RSS with 5,000 open − RSS before) /
 * 5,000, each reading taken right after a forced GC.
 *
 * Then the full service (main.ts under the compile permissions, see
 * pipeline.ts): `"pipeline"`, a 60 s soak of 2,000 authenticated clients in
 * 200 chat groups followed by 30 s idle; `"ramp"`, the same clients at rising
 * offered message rates until ack p99 passes 50 ms or errors appear; and
 * `"capacity"`, the largest room for which 95% of broadcasts reach every
 * member within 250 ms.
 *
 * The last line printed is the JSON summary. `BENCH_CPU_PROF=1` starts the
 * Deno server (and the pipeline's service) with `--cpu-prof` (profiles land
 * in bench/out/; summarise them with bench/profile_top.ts).
 * `BENCH_ONLY=throughput|memory` runs one phase and prints no JSON line;
 * `BENCH_ONLY=pipeline|ramp|capacity` runs one part and prints a JSON line
 * with that key only. `BENCH_RAW_MEMORY=1` also measures the raw server's memory
 * (printed, not in the JSON). `BENCH_CLIENT_WORKERS` (default 2) sets the
 * client threads of the pipeline and capacity parts, `BENCH_CAPACITY_CAP`
 * (default 8000) the largest room tried. Investigation knobs for the service
 * of those parts: `BENCH_INSPECT=1` (V8 heap figures through `--inspect`),
 * `BENCH_SERVER_FLAGS` (extra `deno run` flags, e.g. `--v8-flags=--trace-gc`),
 * `BENCH_SOCKET_RECOVERY_WINDOW` (overrides the default recovery window).
 *
 * @module
 */

import process from "node:process";
import { io, type Socket, WebSocket as WebSocketTransport } from "socket.io-client";
import {
  type CapacityResult,
  messageRamp,
  type PipelineResult,
  pipelineSoak,
  type RampResult,
  roomCapacity,
} from "./pipeline.ts";
import { onServerCore, pinLoadGenerator } from "./pinning.ts";

type ServerName = "deno" | "node" | "raw" | "bun";
type ClientKind = "sio" | "raw";

const CONNECTIONS = 100;
const IN_FLIGHT = 20;
const MESSAGES = 2_000;
const WARMUP_MESSAGES = 1_000;
/** Measured rounds of MESSAGES each; the median round is reported. */
const ROUNDS = 5;
const IDLE_CONNECTIONS = 5_000;
const RECEIVER_WORKERS = 2;
const CONNECT_CONCURRENCY = 50;
const PHASE_TIMEOUT_MS = 60_000;
const PAYLOAD_TEXT = "x".repeat(100);
/** Bun from npm (`npm install --prefix bench`), for the fourth peer. */
const BUN_PATH = new URL("./node_modules/.bin/bun", import.meta.url).pathname;

/** Why the Bun peer cannot run here, or null. */
function bunMissing(): string | null {
  try {
    Deno.statSync(BUN_PATH);
    Deno.statSync(new URL("./node_modules/@socket.io/bun-engine/package.json", import.meta.url));
    return null;
  } catch {
    return "bench/node_modules has no bun or @socket.io/bun-engine: run `npm install --prefix bench`";
  }
}

const root = new URL("../", import.meta.url);
const benchDir = new URL("./", import.meta.url);
const cpuProf = Deno.env.get("BENCH_CPU_PROF") === "1";

interface RunningServer {
  name: ServerName;
  port: number;
  stop(): Promise<void>;
}

function serverCommand(name: ServerName): Deno.Command {
  const cwd = root.pathname;
  if (name === "bun") {
    const [command, args] = onServerCore(BUN_PATH, ["bench/bun_server.mjs"]);
    return new Deno.Command(command, { args, cwd, stdout: "piped", stderr: "inherit" });
  }
  if (name === "node") {
    // Node resolves socket.io from the node_modules Deno lays out ("nodeModulesDir": "auto")
    try {
      Deno.statSync(new URL("node_modules/socket.io/package.json", root));
    } catch {
      throw new Error("node_modules/socket.io is missing: run `deno install` first");
    }
    const [command, nodeArgs] = onServerCore("node", ["--expose-gc", "bench/node_server.mjs"]);
    return new Deno.Command(command, {
      args: nodeArgs,
      cwd,
      stdout: "piped",
      stderr: "inherit",
    });
  }
  const args = ["run", "--allow-net=127.0.0.1", "--allow-env", "--allow-read"];
  args.push("--v8-flags=--expose-gc");
  if (name === "deno") {
    if (cpuProf) {
      Deno.mkdirSync(new URL("out/", benchDir), { recursive: true });
      args.push("--cpu-prof", "--cpu-prof-interval=250", "--cpu-prof-dir=bench/out");
    }
  }
  args.push(name === "deno" ? "bench/deno_server.ts" : "bench/raw_server.ts");
  const [command, pinnedArgs] = onServerCore(Deno.execPath(), args);
  return new Deno.Command(command, { args: pinnedArgs, cwd, stdout: "piped", stderr: "inherit" });
}

async function startServer(name: ServerName): Promise<RunningServer> {
  const child = serverCommand(name).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const deadline = Date.now() + 30_000;
  let port = 0;
  while (!port) {
    if (Date.now() > deadline) throw new Error(`${name} server did not start`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`${name} server exited before listening`);
    buffered += value;
    const match = buffered.match(/PORT (\d+)/);
    if (match) port = Number(match[1]);
  }
  // keep draining stdout so the server never blocks on a full pipe
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* closed */ }
  })();
  return {
    name,
    port,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
    },
  };
}

/** CPU seconds (user + system, all threads) used so far by this process. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** CPU seconds (user + system) used so far by a server (its `/cpu` endpoint). */
async function serverCpuSeconds(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/cpu`);
  const { user, system } = await res.json() as { user: number; system: number };
  return (user + system) / 1e6;
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

// ---------------------------------------------------------------- workers

interface WorkerReply {
  type: string;
  count?: number;
  first?: number;
  last?: number;
  message?: string;
}

class ReceiverWorker {
  readonly #worker: Worker;
  #waiters: ((reply: WorkerReply) => void)[] = [];

  constructor() {
    this.#worker = new Worker(new URL("./load_worker.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      if (event.data.type === "error") console.error("worker error:", event.data.message);
      this.#waiters.shift()?.(event.data);
    };
  }

  /** Sends a command and waits for the next reply. */
  request(command: Record<string, unknown>): Promise<WorkerReply> {
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#worker.postMessage(command);
    });
  }

  /** Waits for the next unsolicited reply (e.g. `reached`). */
  next(): Promise<WorkerReply> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

async function openReceivers(
  kind: ClientKind,
  url: string,
  total: number,
): Promise<ReceiverWorker[]> {
  const workers: ReceiverWorker[] = [];
  const replies: Promise<WorkerReply>[] = [];
  for (let i = 0; i < RECEIVER_WORKERS; i++) {
    const count = Math.floor(total / RECEIVER_WORKERS) + (i < total % RECEIVER_WORKERS ? 1 : 0);
    const worker = new ReceiverWorker();
    workers.push(worker);
    replies.push(
      worker.request({ cmd: "open", kind, url, count, concurrency: CONNECT_CONCURRENCY }),
    );
  }
  for (const reply of await Promise.all(replies)) {
    if (reply.type !== "opened") throw new Error(`receivers failed: ${reply.message}`);
  }
  return workers;
}

async function closeReceivers(workers: ReceiverWorker[]): Promise<void> {
  await Promise.all(workers.map((w) => w.request({ cmd: "close" })));
  for (const w of workers) w.terminate();
}

// ---------------------------------------------------------------- sender

interface Sender {
  send(seq: number, onAck: () => void): void;
  close(): void;
}

function openSioSender(url: string): Promise<Sender> {
  return new Promise((resolve, reject) => {
    const socket: Socket = io(url, {
      transports: [WebSocketTransport],
      forceNew: true,
      reconnection: false,
    });
    socket.once("connect", () =>
      resolve({
        send(seq, onAck) {
          socket.emit("msg", { seq, text: PAYLOAD_TEXT }, onAck);
        },
        close: () => socket.disconnect(),
      }));
    socket.once("connect_error", reject);
  });
}

function openRawSender(url: string): Promise<Sender> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const pending = new Map<string, () => void>();
    let nextId = 0;
    ws.onmessage = (event) => {
      const data = event.data as string;
      if (!data.startsWith("43")) return;
      const id = data.slice(2, data.indexOf("["));
      const onAck = pending.get(id);
      pending.delete(id);
      onAck?.();
    };
    ws.onopen = () =>
      resolve({
        send(seq, onAck) {
          const id = String(nextId++);
          pending.set(id, onAck);
          ws.send("42" + id + JSON.stringify(["msg", { seq, text: PAYLOAD_TEXT }]));
        },
        close: () => ws.close(),
      });
    ws.onerror = () => reject(new Error("raw sender websocket error"));
  });
}

interface SendResult {
  firstSend: number;
  latencies: number[];
}

function sendAll(sender: Sender, total: number): Promise<SendResult> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    let sent = 0;
    let acked = 0;
    const firstSend = now();
    const timer = setTimeout(
      () => reject(new Error(`acks timed out (${acked}/${total})`)),
      PHASE_TIMEOUT_MS,
    );
    function sendOne(): void {
      const seq = sent++;
      const t0 = now();
      sender.send(seq, () => {
        latencies.push(now() - t0);
        acked++;
        if (sent < total) sendOne();
        else if (acked === total) {
          clearTimeout(timer);
          resolve({ firstSend, latencies });
        }
      });
    }
    for (let i = 0; i < Math.min(IN_FLIGHT, total); i++) sendOne();
  });
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface RoundResult {
  deliveredPerSec: number;
  receptions: number;
  expected: number;
  elapsedMs: number;
  /** Cores used by the server process during the round. */
  serverCpu: number;
  /** Cores used by the load generator (all its threads) during the round. */
  loadCpu: number;
  /** Server CPU time per delivered message, µs. */
  serverUsPerDelivery: number;
}

interface ThroughputResult extends RoundResult {
  /** p99 of the ack latencies of all measured rounds. */
  ackP99Ms: number;
  /** delivered/sec of each round, in run order (the median is reported). */
  rounds: number[];
  /** Server µs per delivery of each round, in run order (the median is reported). */
  usRounds: number[];
}

async function broadcastRound(
  workers: ReceiverWorker[],
  sender: Sender,
  messages: number,
): Promise<{ send: SendResult; receptions: number; last: number; expected: number }> {
  const perWorker = Math.floor((CONNECTIONS - 1) / RECEIVER_WORKERS);
  const counts = workers.map((_, i) =>
    perWorker + (i < (CONNECTIONS - 1) % RECEIVER_WORKERS ? 1 : 0)
  );
  await Promise.all(workers.map((w, i) => w.request({ cmd: "expect", n: counts[i] * messages })));
  const reached = workers.map((w) => w.next());
  const send = await sendAll(sender, messages);
  const timeout = new Promise<"timeout">((resolve) => {
    const t = setTimeout(() => resolve("timeout"), PHASE_TIMEOUT_MS);
    Promise.all(reached).then(() => clearTimeout(t));
  });
  let replies: WorkerReply[];
  if ((await Promise.race([Promise.all(reached), timeout])) === "timeout") {
    replies = await Promise.all(workers.map((w) => w.request({ cmd: "report" })));
  } else {
    replies = await Promise.all(reached);
  }
  const receptions = replies.reduce((sum, r) => sum + (r.count ?? 0), 0);
  const last = Math.max(...replies.map((r) => r.last ?? 0));
  return { send, receptions, last, expected: counts.reduce((a, b) => a + b, 0) * messages };
}

interface Prepared {
  name: ServerName;
  server: RunningServer;
  workers: ReceiverWorker[];
  sender: Sender;
  rounds: RoundResult[];
  latencies: number[];
}

async function prepare(name: ServerName): Promise<Prepared> {
  const server = await startServer(name);
  const kind: ClientKind = name === "raw" ? "raw" : "sio";
  const url = name === "raw" ? `ws://127.0.0.1:${server.port}/` : `http://127.0.0.1:${server.port}`;
  const workers = await openReceivers(kind, url, CONNECTIONS - 1);
  const sender = await (kind === "raw" ? openRawSender(url) : openSioSender(url));
  await broadcastRound(workers, sender, WARMUP_MESSAGES);
  return { name, server, workers, sender, rounds: [], latencies: [] };
}

async function measureRound(p: Prepared): Promise<void> {
  const serverCpu0 = await serverCpuSeconds(p.server.port);
  const loadCpu0 = ownCpuSeconds();
  const round = await broadcastRound(p.workers, p.sender, MESSAGES);
  const loadCpu = ownCpuSeconds() - loadCpu0;
  const serverCpu = await serverCpuSeconds(p.server.port) - serverCpu0;
  const elapsedMs = round.last - round.send.firstSend;
  p.latencies.push(...round.send.latencies);
  p.rounds.push({
    deliveredPerSec: Math.round(round.receptions / (elapsedMs / 1000)),
    receptions: round.receptions,
    expected: round.expected,
    elapsedMs: Math.round(elapsedMs),
    serverCpu: round2(serverCpu / (elapsedMs / 1000)),
    loadCpu: round2(loadCpu / (elapsedMs / 1000)),
    serverUsPerDelivery: round2((serverCpu * 1e6) / round.receptions),
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Every server is started and warmed up first, then the measured rounds are
 * interleaved (round i runs each server once, in an order rotated by i), so
 * that a noisy moment on the machine does not favour one server.
 */
async function throughput(names: ServerName[]): Promise<Record<string, ThroughputResult>> {
  const prepared: Prepared[] = [];
  try {
    for (const name of names) prepared.push(await prepare(name));
    for (let i = 0; i < ROUNDS; i++) {
      for (let j = 0; j < prepared.length; j++) {
        await measureRound(prepared[(i + j) % prepared.length]);
      }
    }
    const results: Record<string, ThroughputResult> = {};
    for (const p of prepared) {
      const inOrder = p.rounds.map((r) => r.deliveredPerSec);
      const byRate = [...p.rounds].sort((a, b) => a.deliveredPerSec - b.deliveredPerSec);
      results[p.name] = {
        ...byRate[Math.floor(byRate.length / 2)],
        // the headline: median server CPU per delivery over the rounds
        serverUsPerDelivery: median(p.rounds.map((r) => r.serverUsPerDelivery)),
        ackP99Ms: round2(percentile(p.latencies, 99)),
        rounds: inOrder,
        usRounds: p.rounds.map((r) => r.serverUsPerDelivery),
      };
    }
    return results;
  } finally {
    for (const p of prepared) {
      p.sender.close();
      await closeReceivers(p.workers);
      await p.server.stop();
    }
  }
}

// ---------------------------------------------------------------- memory

interface MemReading {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  clients: number;
}

async function readMemory(port: number): Promise<MemReading> {
  const res = await fetch(`http://127.0.0.1:${port}/mem`);
  return await res.json();
}

interface MemoryResult {
  bytesPerConn: number;
  heapPerConn: number;
  heapTotalPerConn: number;
  externalPerConn: number;
  clients: number;
}

async function memory(name: ServerName): Promise<MemoryResult> {
  const server = await startServer(name);
  const kind: ClientKind = name === "raw" ? "raw" : "sio";
  const url = name === "raw" ? `ws://127.0.0.1:${server.port}/` : `http://127.0.0.1:${server.port}`;
  try {
    // warm up: load the code paths a connection uses, then drop them again
    const warm = await openReceivers(kind, url, 100);
    await closeReceivers(warm);
    await waitForClients(server.port, 0);
    const before = await readMemory(server.port);
    const workers = await openReceivers(kind, url, IDLE_CONNECTIONS);
    await waitForClients(server.port, IDLE_CONNECTIONS);
    const after = await readMemory(server.port);
    await closeReceivers(workers);
    return {
      bytesPerConn: Math.round((after.rss - before.rss) / IDLE_CONNECTIONS),
      heapPerConn: Math.round((after.heapUsed - before.heapUsed) / IDLE_CONNECTIONS),
      heapTotalPerConn: Math.round((after.heapTotal - before.heapTotal) / IDLE_CONNECTIONS),
      externalPerConn: Math.round((after.external - before.external) / IDLE_CONNECTIONS),
      clients: after.clients,
    };
  } finally {
    await server.stop();
  }
}

async function waitForClients(port: number, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if ((await readMemory(port)).clients === n) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = performance.now();
  // "throughput" | "memory": one phase, no JSON line; "pipeline" | "capacity": one part, its JSON
  const only = Deno.env.get("BENCH_ONLY");
  // "engine": throughput and memory of the four servers, and the JSON line without pipeline/capacity
  const runs = (part: string) =>
    !only || only === part || (only === "engine" && (part === "throughput" || part === "memory"));
  const pin = pinLoadGenerator();
  console.log(
    pin.pinned
      ? `pinned: servers on core ${pin.serverCore}, load generator on core ${pin.loadCore}`
      : `not pinned (${pin.reason}): servers and load generator share the cores`,
  );
  const missingBun = bunMissing();
  if (missingBun) console.log(`bun: skipped (${missingBun})`);
  const servers: ServerName[] = ["deno", "node", "raw", ...(missingBun ? [] : ["bun" as const])];
  const results = (runs("throughput") ? await throughput(servers) : {}) as Record<
    ServerName,
    ThroughputResult
  >;
  for (const name of Object.keys(results) as ServerName[]) {
    const r = results[name];
    console.log(
      `${name}: ${r.serverUsPerDelivery} µs server CPU/delivery (rounds [${
        r.usRounds.join(", ")
      }]),` +
        ` ${r.deliveredPerSec} delivered/s (rounds [${r.rounds.join(", ")}];` +
        ` ${r.receptions}/${r.expected} in ${r.elapsedMs} ms), ack p99 ${r.ackP99Ms} ms,` +
        ` CPU: server ${r.serverCpu} cores, load generator ${r.loadCpu} cores`,
    );
  }
  const mem = {} as Record<ServerName, MemoryResult>;
  for (const name of runs("memory") ? servers : []) {
    mem[name] = await memory(name);
    const m = mem[name];
    console.log(
      `${name}: ${m.bytesPerConn} bytes/connection RSS (JS heap used ${m.heapPerConn},` +
        ` heap committed ${m.heapTotalPerConn},` +
        ` external ${m.externalPerConn}; ${m.clients} open)`,
    );
  }
  let pipeline: PipelineResult | undefined;
  if (runs("pipeline")) pipeline = await pipelineSoak({ cpuProf });
  let ramp: RampResult | undefined;
  if (runs("ramp")) ramp = await messageRamp({ cpuProf });
  let capacity: CapacityResult | undefined;
  if (runs("capacity")) {
    const cap = Number(Deno.env.get("BENCH_CAPACITY_CAP") ?? 8000);
    capacity = await roomCapacity({ cap, cpuProf });
  }
  console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (only === "pipeline" || only === "ramp" || only === "capacity") {
    console.log(JSON.stringify({ pipeline, ramp, capacity }));
    return;
  }
  if (only && only !== "engine") return;
  const summary = {
    deliveredPerSec: {
      deno: results.deno.deliveredPerSec,
      node: results.node.deliveredPerSec,
      raw: results.raw.deliveredPerSec,
    },
    ratioVsNode: round2(results.deno.deliveredPerSec / results.node.deliveredPerSec),
    ratioVsRaw: round2(results.deno.deliveredPerSec / results.raw.deliveredPerSec),
    ackP99Ms: { deno: results.deno.ackP99Ms, node: results.node.ackP99Ms },
    bytesPerConn: {
      deno: mem.deno.bytesPerConn,
      node: mem.node.bytesPerConn,
      raw: mem.raw.bytesPerConn,
      bun: mem.bun?.bytesPerConn ?? null,
    },
    usPerDelivery: {
      deno: results.deno.serverUsPerDelivery,
      node: results.node.serverUsPerDelivery,
      raw: results.raw.serverUsPerDelivery,
      bun: results.bun?.serverUsPerDelivery ?? null,
    },
    usPerDeliveryRatio: {
      denoVsRaw: round2(results.deno.serverUsPerDelivery / results.raw.serverUsPerDelivery),
      denoVsNode: round2(results.deno.serverUsPerDelivery / results.node.serverUsPerDelivery),
      denoVsBun: results.bun
        ? round2(results.deno.serverUsPerDelivery / results.bun.serverUsPerDelivery)
        : null,
    },
    bytesPerConnOverRaw: mem.deno.bytesPerConn - mem.raw.bytesPerConn,
    pinned: pin.pinned,
    pipeline,
    ramp,
    capacity,
  };
  console.log(JSON.stringify(summary));
}

if (import.meta.main) await main();
