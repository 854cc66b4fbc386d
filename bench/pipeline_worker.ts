/**
 * Client side of the pipeline soak and the room-capacity bench, run as a
 * Deno `Worker` by pipeline.ts so that the load generator spreads over
 * threads apart from the coordinating one.
 *
 * Every client is a real socket.io-client (WebSocket transport) that
 * authenticates with its own token, as Servana's apps do: an agent or admin
 * (a `sys_user` row) with a Supabase-shaped HS256 token whose `sub` is its
 * `supabase_user_id`, a customer (a `client` row) with the backend's HS256
 * token carrying its `client_id` (signed with the other secret), and joins
 * its conversation with `joinChatGroup` (acked).
 *
 * Requests (`{ id, cmd, ... }`, answered by `{ id, ok, result | error }`):
 * - `open { url, secrets, users, concurrency }`: connect and join (adds to
 *   the clients already open).
 * - `soak { startAt, durationMs, intervalMs, ackTimeoutMs }`: from `startAt`
 *   (epoch ms) each client sends `sendMessage` at `startAt + offsetMs +
 *   k·intervalMs` while before `startAt + durationMs`; answers when every
 *   send was acked or timed out, with latencies, errors and receptions.
 * - `openLean { url, secrets, users, concurrency }`: the same with lean
 *   clients: a WebSocket speaking Engine.IO v4 / Socket.IO v5 by hand
 *   (handshake with `auth: { token }`, acked `joinChatGroup`, pong), which
 *   only looks for the `cap:` key in `receiveMessage` packets. They cost the
 *   load generator a fraction of a socket.io-client, so the capacity bench
 *   measures the server rather than the client threads.
 * - `ramp { startAt, durationMs, rate, ackTimeoutMs }`: one step of the
 *   ramp: open-loop sends at `rate` per second (the clients in turn) for
 *   `durationMs`, whatever the acks do; answers with the step's latencies,
 *   errors and how far the sends fell behind their schedule.
 * - `received`: receptions of `receiveMessage` counted so far.
 * - `close`: disconnects every client.
 *
 * Unsolicited: `{ event: "got", key, t }` when every client of this worker
 * has received the `receiveMessage` whose text is `key` (capacity bench:
 * texts starting with `cap:`).
 *
 * @module
 */

import { io, type Socket, WebSocket as WebSocketTransport } from "socket.io-client";
import { mintCustomerToken, mintToken } from "../src/auth/mod.ts";
import type { BenchSecrets } from "./service.ts";

/** One simulated person (agent, admin or customer). */
export interface BenchUser {
  /** `agent` (agents and admins, `sys_user`) or `client` (a customer). */
  kind: "agent" | "client";
  /** `sys_user_id` or `client_id`. */
  id: number;
  /** Agents: `supabase_user_id` (the token's `sub`). */
  authId?: string;
  /** Customers: `client_number` (in their token). */
  number?: string;
  /** Chat group to join and write to. */
  groupId: number;
  /** The group's customer id (sendMessage's `clientId`). */
  clientId: number;
  /** Offset of the first send within the interval, ms (soak). */
  offsetMs: number;
}

interface Client {
  user: BenchUser;
  socket: Socket;
  closing: boolean;
}

/** What a soak run reports. */
export interface SoakReport {
  sent: number;
  acked: number;
  /** Emit → ack, ms, one per acked message. */
  latencies: number[];
  /** Error counts by kind (ack code, `timeout`, `disconnect:<reason>`, `error_event:<code>`). */
  errors: Record<string, number>;
  /** `receiveMessage` receptions during the run. */
  received: number;
}

/** The person's token, as Servana's apps hold it (agents: Supabase's; customers: the backend's). */
export async function benchToken(user: BenchUser, secrets: BenchSecrets): Promise<string> {
  if (user.kind === "agent") {
    return await mintToken({ authId: user.authId! }, { secret: secrets.agents });
  }
  return await mintCustomerToken({ clientId: user.id, clientNumber: user.number! }, {
    secret: secrets.customers,
  });
}

/** `agent:5`, `client:7` (for messages). */
function nameOf(user: BenchUser): string {
  return `${user.kind}:${user.id}`;
}

/**
 * The bench's message mix, by sequence number (a cycle of 20): plain Latin
 * text (12), markup the sanitizer removes or escapes (3: bold and italics, a
 * link, a script with its content), non-Latin text (4: Japanese, Arabic,
 * Cyrillic, emoji with modifiers and joiners) and one long reply of ~600
 * characters.
 */
export function benchMessage(seq: number): string {
  const tag = ` #${seq}`;
  switch (seq % 20) {
    case 3:
      return `Your order is <b>confirmed</b>, see <i>details</i> below${tag}`;
    case 7:
      return `Reset it here: <a href="https://help.example.com/reset?id=${seq}">reset</a> & reply${tag}`;
    case 11:
      return `<script>alert("x")</script><p>Hello &amp; welcome, <span style="color:red">agent</span></p>${tag}`;
    case 5:
      return `ご注文ありがとうございます。配送は明日の予定です。${tag}`;
    case 9:
      return `مرحبا، كيف يمكنني مساعدتك اليوم؟ تم استلام طلبك${tag}`;
    case 13:
      return `Здравствуйте! Ваш запрос принят, ожидайте ответа оператора.${tag}`;
    case 17:
      return `Thanks 👍🏽 all good now 🎉👨‍👩‍👧 see you${tag}`;
    case 19:
      return "I tried the steps from the help page twice, cleared the cache, signed out and in " +
        "again, and the invoice still shows the old address. ".repeat(4) + tag;
    default:
      return `Hi, I have a question about my account${tag}`;
  }
}

const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<Record<string, unknown>>) => void) | null;
};

const clients: Client[] = [];
const leanSockets: WebSocket[] = [];
const errors: Record<string, number> = {};
let received = 0;
/** Sequence number of the next message this worker sends (picks its text from the mix). */
let messageSeq = 0;
const capCounts = new Map<string, number>();

function now(): number {
  return performance.timeOrigin + performance.now();
}

function countError(kind: string): void {
  errors[kind] = (errors[kind] ?? 0) + 1;
}

function onReceive(payload: { chat_message?: string }): void {
  received++;
  const key = payload?.chat_message;
  if (typeof key !== "string" || !key.startsWith("cap:")) return;
  countCapKey(key);
}

function countCapKey(key: string): void {
  const n = (capCounts.get(key) ?? 0) + 1;
  if (n >= clients.length + leanSockets.length) {
    capCounts.delete(key);
    scope.postMessage({ event: "got", key, t: now() });
  } else capCounts.set(key, n);
}

function connectOne(url: string, user: BenchUser, token: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket: Socket = io(url, {
      transports: [WebSocketTransport],
      forceNew: true,
      reconnection: false,
      timeout: 60_000,
      auth: { token },
    });
    const client: Client = { user, socket, closing: false };
    socket.on("receiveMessage", onReceive);
    socket.on("error", (e: { code?: string }) => countError(`error_event:${e?.code ?? "?"}`));
    socket.once("connect", async () => {
      try {
        const ack = await socket.timeout(60_000).emitWithAck("joinChatGroup", {
          groupId: user.groupId,
        });
        if (!ack?.ok) throw new Error(`joinChatGroup ${user.groupId}: ${ack?.code}`);
        socket.on("disconnect", (reason: string) => {
          if (!client.closing) countError(`disconnect:${reason}`);
        });
        resolve(client);
      } catch (error) {
        socket.disconnect();
        reject(error);
      }
    });
    socket.once("connect_error", (error: Error) => {
      socket.disconnect();
      reject(new Error(`${nameOf(user)}: connect_error ${error.message}`));
    });
  });
}

async function open(command: Record<string, unknown>): Promise<number> {
  const url = command.url as string;
  const secrets = command.secrets as BenchSecrets;
  const users = command.users as BenchUser[];
  const concurrency = command.concurrency as number;
  let next = 0;
  async function lane(): Promise<void> {
    while (next < users.length) {
      const user = users[next++];
      const token = await benchToken(user, secrets);
      clients.push(await connectOne(url, user, token));
    }
  }
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.min(concurrency, users.length); i++) lanes.push(lane());
  await Promise.all(lanes);
  return clients.length;
}

const RECEIVE_PREFIX = '42["receiveMessage"';
const KEY_MARK = '"chat_message":"';

function onLeanData(ws: WebSocket, data: string): void {
  if (data === "2") {
    ws.send("3");
    return;
  }
  if (!data.startsWith(RECEIVE_PREFIX)) return;
  received++;
  const at = data.indexOf(KEY_MARK);
  if (at < 0) return;
  const start = at + KEY_MARK.length;
  const key = data.slice(start, data.indexOf('"', start));
  if (key.startsWith("cap:")) countCapKey(key);
}

function connectLean(url: string, user: BenchUser, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(
      url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket",
    );
    let state: "open" | "connect" | "join" | "ready" = "open";
    const timer = setTimeout(
      () => fail(new Error(`${nameOf(user)}: lean connect timed out`)),
      60_000,
    );
    function fail(error: Error): void {
      clearTimeout(timer);
      ws.close();
      reject(error);
    }
    ws.onmessage = (event) => {
      const data = event.data as string;
      if (state === "ready") return onLeanData(ws, data);
      if (data === "2") return void ws.send("3");
      if (state === "open" && data.startsWith("0")) {
        state = "connect";
        ws.send("40" + JSON.stringify({ token }));
      } else if (state === "connect" && data.startsWith("40")) {
        state = "join";
        ws.send('420["joinChatGroup",' + JSON.stringify({ groupId: user.groupId }) + "]");
      } else if (state === "connect" && data.startsWith("44")) {
        fail(new Error(`${nameOf(user)}: connect refused ${data}`));
      } else if (state === "join" && data.startsWith("430")) {
        if (!data.includes('"ok":true')) return fail(new Error(`${nameOf(user)}: join ${data}`));
        state = "ready";
        clearTimeout(timer);
        ws.onclose = () => countError("disconnect:lean");
        resolve(ws);
      }
    };
    ws.onerror = () => fail(new Error(`${nameOf(user)}: websocket error`));
  });
}

async function openLean(command: Record<string, unknown>): Promise<number> {
  const url = command.url as string;
  const secrets = command.secrets as BenchSecrets;
  const users = command.users as BenchUser[];
  const concurrency = command.concurrency as number;
  let next = 0;
  async function lane(): Promise<void> {
    while (next < users.length) {
      const user = users[next++];
      const token = await benchToken(user, secrets);
      leanSockets.push(await connectLean(url, user, token));
    }
  }
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.min(concurrency, users.length); i++) lanes.push(lane());
  await Promise.all(lanes);
  return leanSockets.length;
}

/**
 * One acked `sendMessage` of the bench's mix from `client`; `settled` gets
 * the emit→ack time, or null for a timeout or a refusal (counted in `errors`).
 */
function sendTimed(
  client: Client,
  ackTimeoutMs: number,
  settled: (latencyMs: number | null) => void,
): void {
  const t0 = now();
  client.socket.timeout(ackTimeoutMs).emit("sendMessage", {
    message: benchMessage(messageSeq++),
    chatGroupId: client.user.groupId,
    clientId: client.user.clientId,
  }, (err: Error | null, ack?: { ok: boolean; code?: string }) => {
    if (err) countError("timeout");
    else if (!ack?.ok) countError(`ack:${ack?.code ?? "?"}`);
    settled(err || !ack?.ok ? null : now() - t0);
  });
}

function soak(command: Record<string, unknown>): Promise<SoakReport> {
  const startAt = command.startAt as number;
  const durationMs = command.durationMs as number;
  const intervalMs = command.intervalMs as number;
  const ackTimeoutMs = command.ackTimeoutMs as number;
  const endAt = startAt + durationMs;
  const latencies: number[] = [];
  const receivedAtStart = received;
  let sent = 0;
  let acked = 0;
  let settled = 0;
  let scheduled = 0;
  return new Promise((resolve) => {
    let done = false;
    function finish(): void {
      if (done || scheduled > 0 || settled < sent) return;
      done = true;
      resolve({
        sent,
        acked,
        latencies,
        errors: { ...errors },
        received: received - receivedAtStart,
      });
    }
    function sendFrom(client: Client, at: number): void {
      if (at >= endAt) return;
      scheduled++;
      setTimeout(() => {
        scheduled--;
        sendFrom(client, at + intervalMs);
        if (!client.socket.connected) {
          countError("not_connected");
        } else {
          sent++;
          sendTimed(client, ackTimeoutMs, (latency) => {
            settled++;
            if (latency !== null) {
              acked++;
              latencies.push(latency);
            }
            finish();
          });
        }
        finish();
      }, Math.max(0, at - Date.now()));
    }
    for (const client of clients) sendFrom(client, startAt + client.user.offsetMs);
    finish();
  });
}

/** What one ramp step reports (one worker). */
export interface RampReport {
  sent: number;
  acked: number;
  /** Emit → ack, ms, one per acked message. */
  latencies: number[];
  /** Errors during the step, by kind (as in {@linkcode SoakReport}). */
  errors: Record<string, number>;
  /** Most the sends fell behind their schedule, ms (the load generator's own lag). */
  maxLagMs: number;
}

/**
 * One ramp step: open-loop sends at `rate` per second for `durationMs` from
 * `startAt` (epoch ms), each from the next client in turn (so every client
 * sends at rate / clients), whatever the acks do; answers once every send
 * was acked or timed out.
 */
function ramp(command: Record<string, unknown>): Promise<RampReport> {
  const startAt = command.startAt as number;
  const durationMs = command.durationMs as number;
  const rate = command.rate as number;
  const ackTimeoutMs = command.ackTimeoutMs as number;
  const total = Math.round((rate * durationMs) / 1000);
  const errorsAtStart = { ...errors };
  const latencies: number[] = [];
  let sent = 0;
  let acked = 0;
  let settled = 0;
  let maxLagMs = 0;
  let turn = 0;
  return new Promise((resolve) => {
    let finished = false;
    function finish(): void {
      if (finished || sent < total || settled < sent) return;
      finished = true;
      const delta: Record<string, number> = {};
      for (const [k, v] of Object.entries(errors)) {
        const d = v - (errorsAtStart[k] ?? 0);
        if (d > 0) delta[k] = d;
      }
      resolve({ sent, acked, latencies, errors: delta, maxLagMs });
    }
    function sendOne(): void {
      const client = clients[turn++ % clients.length];
      sent++;
      if (!client.socket.connected) {
        countError("not_connected");
        settled++;
        return;
      }
      sendTimed(client, ackTimeoutMs, (latency) => {
        settled++;
        if (latency !== null) {
          acked++;
          latencies.push(latency);
        }
        finish();
      });
    }
    // a 5 ms tick sends what the schedule says is due by now
    function tick(): void {
      const t = Date.now();
      const due = Math.min(total, Math.floor(((t - startAt) * rate) / 1000));
      if (due > sent) maxLagMs = Math.max(maxLagMs, t - (startAt + (sent * 1000) / rate));
      while (sent < due) sendOne();
      if (sent < total) setTimeout(tick, 5);
      else finish();
    }
    setTimeout(tick, Math.max(0, startAt - Date.now()));
  });
}

async function handle(command: Record<string, unknown>): Promise<unknown> {
  switch (command.cmd) {
    case "open":
      return await open(command);
    case "openLean":
      return await openLean(command);
    case "soak":
      return await soak(command);
    case "ramp":
      return await ramp(command);
    case "received":
      return { received, errors: { ...errors } };
    case "close":
      for (const client of clients) {
        client.closing = true;
        client.socket.disconnect();
      }
      clients.length = 0;
      for (const ws of leanSockets) {
        ws.onclose = null;
        ws.close();
      }
      leanSockets.length = 0;
      return { closed: true };
  }
  throw new Error(`unknown command ${String(command.cmd)}`);
}

scope.onmessage = (event) => {
  const command = event.data;
  handle(command).then(
    (result) => scope.postMessage({ id: command.id, ok: true, result }),
    (error) => scope.postMessage({ id: command.id, ok: false, error: String(error) }),
  );
};
