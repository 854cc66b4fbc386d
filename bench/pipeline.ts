/**
 * Two benches of the full service (main.ts under the compile permissions,
 * see service.ts), driven by socket.io clients spread over Worker threads
 * (pipeline_worker.ts):
 *
 * - {@linkcode pipelineSoak}: 2,000 authenticated users in 200 chat groups,
 *   each sending `sendMessage` every 5 s (staggered) for 60 s through the
 *   whole pipeline (auth, zod, rate limit in KV, sanitize, store in KV,
 *   broadcast), then idle 30 s: messages/s, ack p50/p99, errors, deliveries,
 *   and the server's resident memory at start, peak and after.
 * - {@linkcode roomCapacity}: websocket-shootout style: the room grows in
 *   steps; at each step 40 broadcasts (4 in flight) are timed until every
 *   member received them; the capacity is the largest room whose 95th
 *   percentile is within 250 ms.
 *
 * @module
 */

import { io, type Socket, WebSocket as WebSocketTransport } from "socket.io-client";
import process from "node:process";
import { benchToken, type BenchUser, type RampReport, type SoakReport } from "./pipeline_worker.ts";
import {
  BENCH_SECRETS,
  benchAuthId,
  readCpuSeconds,
  readRss,
  type Seed,
  type Service,
  startService,
} from "./service.ts";

const MB = 1024 * 1024;

// ---------------------------------------------------------------- worker pool

interface Reply {
  id?: number;
  ok?: boolean;
  result?: unknown;
  error?: string;
  event?: string;
  key?: string;
  t?: number;
}

class ClientWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  #nextId = 0;
  /** Called for `{ event: "got" }` messages. */
  onGot: (key: string, t: number) => void = () => {};

  constructor() {
    this.#worker = new Worker(new URL("./pipeline_worker.ts", import.meta.url), {
      type: "module",
    });
    this.#worker.onmessage = (event: MessageEvent<Reply>) => {
      const reply = event.data;
      if (reply.event === "got") {
        this.onGot(reply.key!, reply.t!);
        return;
      }
      const waiter = this.#pending.get(reply.id!);
      this.#pending.delete(reply.id!);
      if (reply.ok) waiter?.resolve(reply.result);
      else waiter?.reject(new Error(reply.error));
    };
  }

  request<T>(command: Record<string, unknown>): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#worker.postMessage({ ...command, id });
    });
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

function workerCount(): number {
  return Number(Deno.env.get("BENCH_CLIENT_WORKERS") ?? 2);
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

// ---------------------------------------------------------------- soak

const SOAK_GROUPS = 200;
const SOAK_MEMBERS_PER_GROUP = 10; // the group's customer + 9 agents of its department
const SOAK_INTERVAL_MS = 5_000;
const SOAK_DURATION_MS = 60_000;
const SOAK_IDLE_MS = 30_000;
const CONNECT_CONCURRENCY = 25;

/**
 * Servana's tables for the soak: 200 departments and 200 active
 * conversations (`chat_group`); conversation g belongs to customer g (a
 * `client` row: a customer may only join their own conversation) and is
 * routed to department g, whose 9 agents (`sys_user` rows with a
 * `supabase_user_id`, role Agent) may join it; the first of them is
 * assigned. 2,000 people: 200 customers and 1,800 agents.
 */
export function soakSeed(): { seed: Seed; users: BenchUser[] } {
  const seed = emptySeed();
  const users: BenchUser[] = [];
  for (let g = 1; g <= SOAK_GROUPS; g++) {
    const clientId = 10_000 + g;
    const number = `917${String(clientId).padStart(7, "0")}`;
    seed.department!.push({ dept_id: g, dept_name: `Dept ${g}` });
    seed.profile!.push({ prof_id: clientId, prof_firstname: "Client", prof_lastname: String(g) });
    seed.client!.push({
      client_id: clientId,
      client_country_code: "+63",
      client_number: number,
      prof_id: clientId,
    });
    users.push({ kind: "client", id: clientId, number, groupId: g, clientId, offsetMs: 0 });
    for (let k = 1; k < SOAK_MEMBERS_PER_GROUP; k++) {
      const id = 100_000 + g * 100 + k;
      addAgent(seed, { id, role: AGENT_ROLE, departments: [g], name: `${g}-${k}` });
      users.push({ kind: "agent", id, authId: benchAuthId(id), groupId: g, clientId, offsetMs: 0 });
    }
    seed.chat_group!.push({
      chat_group_id: g,
      client_id: clientId,
      dept_id: g,
      sys_user_id: 100_000 + g * 100 + 1,
      status: "active",
    });
  }
  // interleave the groups (member k of every group, then member k + 1) and spread the first
  // sends evenly over the interval
  const order = (u: BenchUser) => (u.kind === "client" ? 0 : u.id % 100) * 1000 + u.groupId;
  users.sort((a, b) => order(a) - order(b));
  users.forEach((u, i) => (u.offsetMs = Math.floor((i * SOAK_INTERVAL_MS) / users.length)));
  return { seed, users };
}

const ADMIN_ROLE = 1;
const AGENT_ROLE = 2;

function emptySeed(): Seed {
  return {
    department: [],
    role: [{ role_id: ADMIN_ROLE, role_name: "Admin" }, {
      role_id: AGENT_ROLE,
      role_name: "Agent",
    }],
    profile: [],
    sys_user: [],
    sys_user_department: [],
    client: [],
    chat_group: [],
  };
}

/** A `sys_user` row (agent or admin) with its profile and departments. */
function addAgent(
  seed: Seed,
  agent: { id: number; role: number; departments: number[]; name: string },
): void {
  seed.profile!.push({ prof_id: agent.id, prof_firstname: "Agent", prof_lastname: agent.name });
  seed.sys_user!.push({
    sys_user_id: agent.id,
    sys_user_email: `agent${agent.id}@bench.example`,
    supabase_user_id: benchAuthId(agent.id),
    role_id: agent.role,
    prof_id: agent.id,
  });
  for (const dept of agent.departments) {
    seed.sys_user_department!.push({ sys_user_id: agent.id, dept_id: dept });
  }
}

/** The `"pipeline"` figures. */
export interface PipelineResult {
  clients: number;
  groups: number;
  durationSec: number;
  sent: number;
  acked: number;
  messagesPerSec: number;
  ackP50Ms: number;
  ackP99Ms: number;
  ackMaxMs: number;
  /** Every failure: connect or join refused, failed or timed-out acks, drops, server error logs. */
  errors: number;
  errorKinds: Record<string, number>;
  /** `receiveMessage` receptions / (acked × members per group). */
  deliveredRatio: number;
  connectSec: number;
  rssStartMb: number;
  rssPeakMb: number;
  rssAfterMb: number;
  /** Whether the RSS 30 s after the clients left is within 10% of the start. */
  rssBackWithin10pct: boolean;
  serverWarnLines: number;
  /** The machine's 1-minute load average when the part started (other work skews the figures). */
  loadAvg1m: number;
  /** With `BENCH_INSPECT=1` only: V8 heap in use (MB) and RSS after a forced full GC. */
  heap?: Record<string, number>;
}

function splitAcross<T>(items: T[], parts: number): T[][] {
  const out: T[][] = Array.from({ length: parts }, () => []);
  items.forEach((item, i) => out[i % parts].push(item));
  return out;
}

async function openAll(
  workers: ClientWorker[],
  url: string,
  options: { users: BenchUser[]; lean?: boolean; concurrency?: number },
): Promise<void> {
  const parts = splitAcross(options.users, workers.length);
  await Promise.all(
    workers.map((w, i) =>
      parts[i].length
        ? w.request({
          cmd: options.lean ? "openLean" : "open",
          url,
          secrets: BENCH_SECRETS,
          users: parts[i],
          concurrency: options.concurrency ?? CONNECT_CONCURRENCY,
        })
        : Promise.resolve(0)
    ),
  );
}

function mergeErrors(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Records the service's V8 heap (only with `BENCH_INSPECT=1`) as `<name>UsedMb`/`<name>TotalMb`. */
async function noteHeap(
  service: Service,
  heap: Record<string, number>,
  options: { name: string; gc: boolean },
): Promise<void> {
  if (!service.heap) return;
  const h = await service.heap({ gc: options.gc });
  heap[`${options.name}UsedMb`] = round1(h.used / MB);
  heap[`${options.name}TotalMb`] = round1(h.total / MB);
}

/** Runs the 2,000-client soak on a fresh service process. */
export async function pipelineSoak(
  options: { cpuProf?: boolean; log?: (line: string) => void } = {},
): Promise<PipelineResult> {
  const say = options.log ?? console.log;
  const loadAvg1m = Deno.loadavg()[0];
  const { seed, users } = soakSeed();
  const service = await startService(seed, {
    name: "pipeline",
    cpuProf: options.cpuProf,
    env: {
      // 12 messages per user per minute in the soak (+ warm-up); the limiter still runs on every send
      RATE_LIMIT_MESSAGES: "1000",
      ...recoveryOverride(),
    },
  });
  const workers = Array.from({ length: workerCount() }, () => new ClientWorker());
  const errorKinds: Record<string, number> = {};
  try {
    // warm-up: load the code paths of connect, join and send, then leave
    const warmUsers = users.filter((_, i) => i % 100 === 0).map((u) => ({ ...u, offsetMs: 0 }));
    await workers[0].request({
      cmd: "open",
      url: service.url,
      secrets: BENCH_SECRETS,
      users: warmUsers,
      concurrency: 5,
    });
    await workers[0].request({
      cmd: "soak",
      startAt: Date.now() + 100,
      durationMs: 2_000,
      intervalMs: 400,
      ackTimeoutMs: 10_000,
    });
    await workers[0].request({ cmd: "close" });
    await sleep(3_000);
    const heap: Record<string, number> = {};
    await noteHeap(service, heap, { name: "start", gc: true });
    const start = await readRss(service.pid);
    say(`pipeline: service ready, RSS ${round1(start.rss / MB)} MB after warm-up`);

    let sampledPeak = start.rss;
    const sampler = setInterval(() => {
      readRss(service.pid).then((m) => (sampledPeak = Math.max(sampledPeak, m.rss)), () => {});
    }, 500);

    const t0 = performance.now();
    try {
      await openAll(workers, service.url, { users });
    } catch (error) {
      errorKinds.connect = (errorKinds.connect ?? 0) + 1;
      throw error;
    }
    const connectSec = (performance.now() - t0) / 1000;
    say(`pipeline: ${users.length} clients connected and joined in ${connectSec.toFixed(1)} s`);

    const before = await Promise.all(
      workers.map((w) =>
        w.request<{ received: number; errors: Record<string, number> }>({ cmd: "received" })
      ),
    );
    for (const b of before) mergeErrors(errorKinds, b.errors); // warm-up and connect-phase errors
    const startAt = Date.now() + 500;
    const reports = await Promise.all(
      workers.map((w) =>
        w.request<SoakReport>({
          cmd: "soak",
          startAt,
          durationMs: SOAK_DURATION_MS,
          intervalMs: SOAK_INTERVAL_MS,
          ackTimeoutMs: 10_000,
        })
      ),
    );
    await sleep(1_000); // last broadcasts reach the other members
    const after = await Promise.all(
      workers.map((w) =>
        w.request<{ received: number; errors: Record<string, number> }>({ cmd: "received" })
      ),
    );
    const peak = Math.max(sampledPeak, (await readRss(service.pid)).hwm);
    await noteHeap(service, heap, { name: "endOfLoad", gc: false });
    const latencies: number[] = [];
    let sent = 0;
    let acked = 0;
    for (const r of reports) {
      sent += r.sent;
      acked += r.acked;
      for (const l of r.latencies) latencies.push(l);
    }
    // errors counted in the workers are cumulative: take the final counts minus the pre-soak ones
    const soakErrors: Record<string, number> = {};
    for (const a of after) mergeErrors(soakErrors, a.errors);
    for (const b of before) {
      mergeErrors(
        soakErrors,
        Object.fromEntries(Object.entries(b.errors).map(([k, v]) => [k, -v])),
      );
    }
    mergeErrors(errorKinds, soakErrors);
    const receivedDuring = after.reduce((s, a) => s + a.received, 0) -
      before.reduce((s, b) => s + b.received, 0);
    latencies.sort((a, b) => a - b);
    say(
      `pipeline: ${acked}/${sent} acked in ${SOAK_DURATION_MS / 1000} s, ack p50 ` +
        `${round1(percentile(latencies, 50))} ms p99 ${round1(percentile(latencies, 99))} ms, ` +
        `RSS peak ${round1(peak / MB)} MB`,
    );

    await Promise.all(workers.map((w) => w.request({ cmd: "close" })));
    await sleep(SOAK_IDLE_MS);
    clearInterval(sampler);
    const end = await readRss(service.pid);
    await noteHeap(service, heap, { name: "after", gc: false });
    if (service.heap) {
      await noteHeap(service, heap, { name: "afterGc", gc: true });
      heap.rssAfterGcMb = round1((await readRss(service.pid)).rss / MB);
    }
    const errorLines = service.levels.error ?? 0;
    if (errorLines) errorKinds.server_error_log = errorLines;
    for (const line of service.problems.slice(0, 5)) say(`pipeline: server logged ${line}`);
    sayGcSummary(service, (line) => say(`pipeline: ${line}`));
    const stopped = await service.stop();
    if (stopped.code !== 0) errorKinds.server_exit = stopped.code;
    const errors = Object.entries(errorKinds).reduce((s, [, v]) => s + v, 0);
    const result: PipelineResult = {
      clients: users.length,
      groups: SOAK_GROUPS,
      durationSec: SOAK_DURATION_MS / 1000,
      sent,
      acked,
      messagesPerSec: round1(acked / (SOAK_DURATION_MS / 1000)),
      ackP50Ms: round1(percentile(latencies, 50)),
      ackP99Ms: round1(percentile(latencies, 99)),
      ackMaxMs: round1(latencies.at(-1) ?? NaN),
      errors,
      errorKinds,
      deliveredRatio: Math.round((receivedDuring / (acked * SOAK_MEMBERS_PER_GROUP)) * 10_000) /
        10_000,
      connectSec: round1(connectSec),
      rssStartMb: round1(start.rss / MB),
      rssPeakMb: round1(peak / MB),
      rssAfterMb: round1(end.rss / MB),
      rssBackWithin10pct: end.rss <= start.rss * 1.1,
      serverWarnLines: service.levels.warn ?? 0,
      loadAvg1m,
      ...(service.heap ? { heap } : {}),
    };
    return result;
  } catch (error) {
    await service.stop().catch(() => {});
    throw error;
  } finally {
    for (const w of workers) w.terminate();
  }
}

// ---------------------------------------------------------------- ramp

/** Offered rates of the ramp, messages per second across all clients. */
const RAMP_RATES = [100, 150, 200, 300, 450, 675, 1000, 1500, 2250, 3400, 5000];
const RAMP_STEP_MS = 10_000;
const RAMP_PAUSE_MS = 2_000;
const RAMP_P99_LIMIT_MS = 50;
/** A step whose sends fell further behind their schedule did not offer its rate. */
const RAMP_MAX_LAG_MS = 100;

/** One offered rate of the ramp. */
export interface RampStep {
  /** Offered messages per second (all clients). */
  rate: number;
  sent: number;
  acked: number;
  /** Acked messages per second over the step. */
  ackedPerSec: number;
  ackP50Ms: number;
  ackP99Ms: number;
  ackMaxMs: number;
  errors: number;
  errorKinds: Record<string, number>;
  /** `receiveMessage` receptions / (acked × members per group). */
  deliveredRatio: number;
  /** Cores the service used during the step (user + system). */
  serverCpu: number;
  /** Cores the load generator (this process and its workers) used. */
  loadCpu: number;
  /** Most the load generator's sends fell behind their schedule, ms. */
  maxLagMs: number;
  /** p99 within the limit, no errors, every send acked, the rate offered on time. */
  pass: boolean;
}

/** The `"ramp"` figures. */
export interface RampResult {
  clients: number;
  groups: number;
  stepSec: number;
  p99LimitMs: number;
  /** Highest offered rate that passed (messages/s); 0 if none. */
  sustainedPerSec: number;
  /** Why the ramp stopped: `p99`, `errors`, `load` (the load generator fell behind), or `cap`. */
  stoppedBy: string;
  steps: RampStep[];
  loadAvg1m: number;
}

/**
 * The full pipeline to saturation: the soak's 2,000 people in 200
 * conversations on a fresh service, then steps of {@linkcode RAMP_STEP_MS}
 * at rising offered rates (open loop: sends go out on schedule whatever the
 * acks do, each from the next client in turn, with the bench's message mix),
 * until a step's ack p99 passes {@linkcode RAMP_P99_LIMIT_MS}, an error
 * appears, or the load generator cannot keep the schedule.
 */
export async function messageRamp(
  options: { cpuProf?: boolean; log?: (line: string) => void; rates?: number[] } = {},
): Promise<RampResult> {
  const say = options.log ?? console.log;
  const loadAvg1m = Deno.loadavg()[0];
  const { seed, users } = soakSeed();
  const service = await startService(seed, {
    name: "ramp",
    cpuProf: options.cpuProf,
    env: { RATE_LIMIT_MESSAGES: "1000", ...recoveryOverride(), ...metricsOverride() },
  });
  const workers = Array.from({ length: workerCount() }, () => new ClientWorker());
  const result: RampResult = {
    clients: users.length,
    groups: SOAK_GROUPS,
    stepSec: RAMP_STEP_MS / 1000,
    p99LimitMs: RAMP_P99_LIMIT_MS,
    sustainedPerSec: 0,
    stoppedBy: "cap",
    steps: [],
    loadAvg1m,
  };
  try {
    await openAll(workers, service.url, { users });
    say(`ramp: ${users.length} clients connected and joined`);
    const received = async () => {
      const replies = await Promise.all(
        workers.map((w) => w.request<{ received: number }>({ cmd: "received" })),
      );
      return replies.reduce((sum, r) => sum + r.received, 0);
    };
    for (const rate of options.rates ?? RAMP_RATES) {
      const received0 = await received();
      const serverCpu0 = await readCpuSeconds(service.pid);
      const loadCpu0 = ownCpuSeconds();
      const startAt = Date.now() + 200;
      const reports = await Promise.all(
        workers.map((w) =>
          w.request<RampReport>({
            cmd: "ramp",
            startAt,
            durationMs: RAMP_STEP_MS,
            rate: rate / workers.length,
            ackTimeoutMs: 10_000,
          })
        ),
      );
      const elapsedSec = (Date.now() - startAt) / 1000;
      const serverCpu = (await readCpuSeconds(service.pid) - serverCpu0) / elapsedSec;
      const loadCpu = (ownCpuSeconds() - loadCpu0) / elapsedSec;
      await sleep(RAMP_PAUSE_MS / 2); // the last broadcasts reach the members
      const receivedDuring = await received() - received0;
      const latencies: number[] = [];
      const errorKinds: Record<string, number> = {};
      let sent = 0;
      let acked = 0;
      let maxLagMs = 0;
      for (const r of reports) {
        sent += r.sent;
        acked += r.acked;
        maxLagMs = Math.max(maxLagMs, r.maxLagMs);
        for (const l of r.latencies) latencies.push(l);
        mergeErrors(errorKinds, r.errors);
      }
      latencies.sort((a, b) => a - b);
      const errors = Object.values(errorKinds).reduce((a, b) => a + b, 0);
      const p99 = percentile(latencies, 99);
      const step: RampStep = {
        rate,
        sent,
        acked,
        ackedPerSec: round1(acked / (RAMP_STEP_MS / 1000)),
        ackP50Ms: round1(percentile(latencies, 50)),
        ackP99Ms: round1(p99),
        ackMaxMs: round1(latencies.at(-1) ?? NaN),
        errors,
        errorKinds,
        deliveredRatio: acked
          ? Math.round((receivedDuring / (acked * SOAK_MEMBERS_PER_GROUP)) * 10_000) / 10_000
          : 0,
        serverCpu: Math.round(serverCpu * 100) / 100,
        loadCpu: Math.round(loadCpu * 100) / 100,
        maxLagMs: Math.round(maxLagMs),
        pass: errors === 0 && acked === sent && p99 <= RAMP_P99_LIMIT_MS &&
          maxLagMs <= RAMP_MAX_LAG_MS,
      };
      result.steps.push(step);
      say(
        `ramp: ${rate} msg/s offered: ${acked}/${sent} acked, ack p50 ${step.ackP50Ms} ms ` +
          `p99 ${step.ackP99Ms} ms, ${errors} errors, delivered ${step.deliveredRatio}, ` +
          `server ${step.serverCpu} cores, load ${step.loadCpu} cores, lag ${step.maxLagMs} ms ` +
          (step.pass ? "ok" : "FAIL"),
      );
      if (!step.pass) {
        result.stoppedBy = errors > 0 || acked !== sent
          ? "errors"
          : p99 > RAMP_P99_LIMIT_MS
          ? "p99"
          : "load";
        break;
      }
      result.sustainedPerSec = rate;
      await sleep(RAMP_PAUSE_MS / 2);
    }
    for (const line of service.problems.slice(0, 5)) say(`ramp: server logged ${line}`);
    sayGcSummary(service, (line) => say(`ramp: ${line}`));
    if (Deno.env.get("BENCH_METRICS") === "1") {
      const text = await (await fetch(`${service.url}/metrics`)).text();
      const file = "bench/out/ramp-metrics.txt";
      await Deno.writeTextFile(file, text);
      say(`ramp: the service's /metrics at the end written to ${file}`);
    }
    return result;
  } finally {
    await Promise.all(workers.map((w) => w.request({ cmd: "close" }).catch(() => {})));
    for (const w of workers) w.terminate();
    await service.stop();
  }
}

/**
 * With `BENCH_SERVER_FLAGS=--v8-flags=--trace-gc` (investigation only): how
 * many full GCs the server ran and how long they paused it.
 */
function sayGcSummary(service: Service, say: (line: string) => void): void {
  if (service.gcLines.length === 0) return;
  const pauses = service.gcLines.map((l) => Number(l.match(/([\d.]+) \/ [\d.]+ ms/)?.[1] ?? 0));
  const sorted = [...pauses].sort((a, b) => a - b);
  say(
    `server ran ${pauses.length} Mark-Compact GCs, pauses median ${
      sorted[Math.floor(sorted.length / 2)]
    } ms, longest ${sorted.at(-1)} ms; last: ${service.gcLines.at(-1)}`,
  );
}

/** CPU seconds (user + system, all threads) used so far by this process and its workers. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** `BENCH_METRICS=1` (investigation only): the service answers `/metrics` for the bench to save. */
function metricsOverride(): Record<string, string> {
  return Deno.env.get("BENCH_METRICS") === "1" ? { METRICS_PUBLIC: "true" } : {};
}

/** `BENCH_SOCKET_RECOVERY_WINDOW` (investigation only) overrides the service's default window. */
function recoveryOverride(): Record<string, string> {
  const value = Deno.env.get("BENCH_SOCKET_RECOVERY_WINDOW");
  return value === undefined ? {} : { SOCKET_RECOVERY_WINDOW: value };
}

// ---------------------------------------------------------------- capacity

const CAPACITY_STEPS = [250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000];
const CAPACITY_SENDERS = 4; // broadcasts in flight, as websocket-shootout's -c 4
const CAPACITY_SAMPLES = 40; // broadcasts per step, as websocket-shootout's -s 40
const CAPACITY_LIMIT_MS = 250;
const CAPACITY_PERCENTILE = 95;
const BROADCAST_TIMEOUT_MS = 5_000;
/** Joins in flight per client worker while the room fills (outside the timed broadcasts). */
const CAPACITY_CONNECT_CONCURRENCY = 50;

/** One measured room size. */
export interface CapacityStep {
  clients: number;
  p95Ms: number;
  medianMs: number;
  maxMs: number;
  /** Seconds to connect and join the clients added at this step. */
  connectSec: number;
  pass: boolean;
}

/** The `"capacity"` figures. */
export interface CapacityResult {
  /** Largest room (connected members) whose p95 broadcast time was within the limit; 0 if none. */
  clients: number;
  limitMs: number;
  percentile: number;
  /** Why the stepping stopped: `failed`, `cap` or `time`. */
  stoppedBy: string;
  steps: CapacityStep[];
  errors: number;
  /** The machine's 1-minute load average when the part started. */
  loadAvg1m: number;
}

/**
 * People in the capacity room: member socket i belongs to admin i mod 160,
 * so the first 160 members are 160 people and the rest their further tabs
 * (at most 50 each at the 8,000 cap). The service announces a person, not a
 * socket (`userJoined` to the room and `presence:change` to everyone, once
 * per person), so filling the room costs O(people × members) instead of
 * O(members²), while every broadcast still goes to every member socket.
 */
const CAPACITY_PEOPLE = 160;

/** Capacity member socket i: a tab of an admin without departments (admins may join every conversation). */
function capacityMember(i: number): BenchUser {
  const id = 1_000_000 + (i % CAPACITY_PEOPLE);
  return { kind: "agent", id, authId: benchAuthId(id), groupId: 1, clientId: 1, offsetMs: 0 };
}

/**
 * One conversation (chat group 1, customer 1, no department) and
 * {@linkcode CAPACITY_PEOPLE} admins without departments: a message reaches
 * each member socket once, as `receiveMessage`.
 */
function capacitySeed(): Seed {
  const seed = emptySeed();
  seed.client!.push({ client_id: 1, client_country_code: "+63", client_number: "9170000001" });
  seed.chat_group!.push({ chat_group_id: 1, client_id: 1, dept_id: null, status: "active" });
  for (let i = 0; i < CAPACITY_PEOPLE; i++) {
    addAgent(seed, { id: capacityMember(i).id, role: ADMIN_ROLE, departments: [], name: `${i}` });
  }
  return seed;
}

interface PendingBroadcast {
  t0: number;
  waiting: number;
  last: number;
  done: (rtt: number) => void;
}

/** Runs the room-capacity steps on a fresh service process. */
export async function roomCapacity(
  options: { cap?: number; budgetMs?: number; cpuProf?: boolean; log?: (line: string) => void } =
    {},
): Promise<CapacityResult> {
  const say = options.log ?? console.log;
  const cap = options.cap ?? 8000;
  const budgetMs = options.budgetMs ?? 150_000;
  const steps = CAPACITY_STEPS.filter((s) => s <= cap);
  const started = Date.now();
  const service = await startService(capacitySeed(), {
    name: "capacity",
    cpuProf: options.cpuProf,
    env: {
      RATE_LIMIT_MESSAGES: "1000",
      MAX_SOCKETS_PER_PERSON: String(Math.ceil(cap / CAPACITY_PEOPLE) + CAPACITY_SENDERS),
      // all the bench's handshakes come from one address, more at once than the default cap
      SOCKET_PENDING_PER_ADDRESS: String(4 * CAPACITY_CONNECT_CONCURRENCY * workerCount()),
      ...recoveryOverride(),
    },
  });
  const workers = Array.from({ length: workerCount() }, () => new ClientWorker());
  const senders: Socket[] = [];
  const pending = new Map<string, PendingBroadcast>();
  let errors = 0;
  function reached(key: string, t: number): void {
    const p = pending.get(key);
    if (!p) return;
    p.last = Math.max(p.last, t);
    if (--p.waiting === 0) {
      pending.delete(key);
      p.done(p.last - p.t0);
    }
  }
  for (const w of workers) w.onGot = reached;
  const result: CapacityResult = {
    clients: 0,
    limitMs: CAPACITY_LIMIT_MS,
    percentile: CAPACITY_PERCENTILE,
    stoppedBy: "cap",
    steps: [],
    errors: 0,
    loadAvg1m: Deno.loadavg()[0],
  };
  try {
    // the senders are members too (they receive their own broadcasts)
    for (let i = 0; i < CAPACITY_SENDERS; i++) {
      const token = await benchToken(capacityMember(i), BENCH_SECRETS);
      const socket = io(service.url, {
        transports: [WebSocketTransport],
        forceNew: true,
        reconnection: false,
        auth: { token },
      });
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", () => resolve());
        socket.once("connect_error", reject);
      });
      const ack = await socket.emitWithAck("joinChatGroup", { groupId: 1 });
      if (!ack.ok) throw new Error(`sender join: ${ack.code}`);
      socket.on("receiveMessage", (payload: { chat_message: string }) => {
        if (payload.chat_message.startsWith("cap:")) reached(payload.chat_message, now());
      });
      senders.push(socket);
    }
    let members = CAPACITY_SENDERS;
    let seq = 0;
    let lastConnectSec = 0;
    let lastAdded = 0;
    let lastSize = 0;
    for (const size of steps) {
      // a join lists the room's member entries in KV (O(n) each, so filling stays O(n²), if
      // cheaper than the announcements were): predict the next fill from the last one and stay
      // within the budget
      const added = size - members;
      const predictedMs = lastAdded
        ? lastConnectSec * 1000 * (added / lastAdded) *
            ((size + members) / (2 * lastSize - lastAdded)) +
          10_000
        : 0;
      if (Date.now() - started + predictedMs > budgetMs) {
        result.stoppedBy = "time";
        say(
          `capacity: stopping before ${size} clients: filling the room would take ` +
            `~${Math.round(predictedMs / 1000)} s, beyond the ${budgetMs / 1000} s budget`,
        );
        break;
      }
      const users: BenchUser[] = [];
      for (let i = members; i < size; i++) users.push(capacityMember(i));
      const t0 = performance.now();
      await openAll(workers, service.url, {
        users,
        lean: true,
        concurrency: CAPACITY_CONNECT_CONCURRENCY,
      });
      const connectSec = (performance.now() - t0) / 1000;
      lastConnectSec = connectSec;
      lastAdded = added;
      lastSize = size;
      members = size;
      await sleep(500);

      // every worker holds some members; a broadcast is complete when each worker and each sender saw it
      const broadcast = (sender: Socket): Promise<number> => {
        const key = `cap:${seq++}`;
        return new Promise((resolve) => {
          const timer = setTimeout(() => {
            pending.delete(key);
            resolve(Infinity);
          }, BROADCAST_TIMEOUT_MS);
          pending.set(key, {
            t0: now(),
            waiting: workers.length + senders.length,
            last: 0,
            done: (rtt) => {
              clearTimeout(timer);
              resolve(rtt);
            },
          });
          sender.emit(
            "sendMessage",
            { message: key, chatGroupId: 1, clientId: 1 },
            (ack: { ok: boolean; code?: string }) => {
              if (!ack.ok) {
                errors++;
                say(`capacity: sendMessage refused: ${ack.code}`);
                clearTimeout(timer);
                pending.delete(key);
                resolve(Infinity);
              }
            },
          );
        });
      };
      const rtts: number[] = [];
      // one warm-up broadcast per sender, not counted
      await Promise.all(senders.map((s) => broadcast(s)));
      await Promise.all(senders.map(async (s) => {
        for (let i = 0; i < CAPACITY_SAMPLES / CAPACITY_SENDERS; i++) rtts.push(await broadcast(s));
      }));
      rtts.sort((a, b) => a - b);
      const step: CapacityStep = {
        clients: size,
        p95Ms: round1(percentile(rtts, CAPACITY_PERCENTILE)),
        medianMs: round1(percentile(rtts, 50)),
        maxMs: round1(rtts.at(-1)!),
        connectSec: round1(connectSec),
        pass: percentile(rtts, CAPACITY_PERCENTILE) <= CAPACITY_LIMIT_MS,
      };
      result.steps.push(step);
      say(
        `capacity: ${size} clients in one room: p95 ${step.p95Ms} ms, median ${step.medianMs} ms, ` +
          `max ${step.maxMs} ms (connected in ${step.connectSec} s) ${step.pass ? "ok" : "FAIL"}`,
      );
      if (!step.pass) {
        result.stoppedBy = "failed";
        break;
      }
      result.clients = size;
    }
    const totals = await Promise.all(
      workers.map((w) => w.request<{ errors: Record<string, number> }>({ cmd: "received" })),
    );
    for (const t of totals) errors += Object.values(t.errors).reduce((a, b) => a + b, 0);
    errors += service.levels.error ?? 0;
    for (const line of service.problems.slice(0, 5)) say(`capacity: server logged ${line}`);
    result.errors = errors;
    return result;
  } finally {
    for (const s of senders) s.disconnect();
    await Promise.all(workers.map((w) => w.request({ cmd: "close" }).catch(() => {})));
    for (const w of workers) w.terminate();
    await service.stop();
  }
}
