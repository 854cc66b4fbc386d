/**
 * Test helper: real socket.io-client sockets against a running app, logged
 * in as fixture users, recording every event they receive.
 *
 * "Did not receive" is asserted without sleeping: {@linkcode TestClient.sync}
 * does a round trip on the socket's own connection, and since the server
 * writes to one connection in order, anything emitted to that socket before
 * the round trip started has arrived when it returns.
 *
 * @module
 */

import assert from "node:assert/strict";
import { io as connect, type Socket as ClientSocket } from "socket.io-client";
import { parsePersonKey } from "../../src/store/mod.ts";
import { type RunningApp, startApp } from "./server.ts";

/** Guard against a hang when an expected event never comes (not a timing assert). */
export const WAIT_LIMIT = 5_000;

/** One event received by a client: its name and arguments. */
export interface Received {
  event: string;
  args: unknown[];
}

/** An ack reply as the server sends it. */
export type Ack = { ok: boolean; [key: string]: unknown };

/** A connected client socket that records what it receives. */
export class TestClient {
  /** The socket.io-client socket. */
  readonly socket: ClientSocket;
  /** Who this is (for messages). */
  readonly name: string;
  /** Everything received, in order. */
  readonly received: Received[] = [];
  #waiters: { event: string; resolve: (payload: unknown) => void; from: number }[] = [];

  constructor(socket: ClientSocket, name: string) {
    this.socket = socket;
    this.name = name;
    socket.onAny((event: string, ...args: unknown[]) => {
      this.received.push({ event, args });
      for (const waiter of [...this.#waiters]) {
        if (waiter.event === event) {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          waiter.resolve(args[0]);
        }
      }
    });
  }

  /** First arguments (the payloads) of every `event` received so far. */
  payloads(event: string): unknown[] {
    return this.received.filter((r) => r.event === event).map((r) => r.args[0]);
  }

  /** How many `event`s were received so far. */
  count(event: string): number {
    return this.payloads(event).length;
  }

  /** Index to pass to {@linkcode TestClient.next} to wait for events after now. */
  mark(): number {
    return this.received.length;
  }

  /** The payload of the first `event` received at or after index `from` (default: any). */
  next(event: string, from = 0): Promise<unknown> {
    const found = this.received.slice(from).find((r) => r.event === event);
    if (found) return Promise.resolve(found.args[0]);
    const { promise, resolve } = Promise.withResolvers<unknown>();
    this.#waiters.push({ event, resolve, from });
    return guard(promise, `${this.name}: ${event}`);
  }

  /** Emits with an ack and resolves with the reply. */
  async request(event: string, ...args: unknown[]): Promise<Ack> {
    return await this.socket.timeout(WAIT_LIMIT).emitWithAck(event, ...args) as Ack;
  }

  /**
   * Round trip on this socket's connection: afterwards every event the server
   * emitted to this socket before the call has been received.
   */
  async sync(): Promise<void> {
    const reply = await this.request("getOnlineUsers");
    assert.equal(reply.ok, true, `${this.name}: sync round trip failed`);
  }

  /** Emits and returns the `error` payload and the ack, asserting both say `code`. */
  async expectError(
    code: string,
    event: string,
    ...args: unknown[]
  ): Promise<{ error: ErrorPayload; ack: Ack }> {
    const from = this.mark();
    const ack = await this.request(event, ...args);
    // the error event is written before the ack
    const errors = this.received.slice(from).filter((r) => r.event === "error");
    assert.equal(errors.length, 1, `${this.name}: one error event for ${event}`);
    const error = errors[0].args[0] as ErrorPayload;
    assert.equal(error.code, code, `${this.name} ${event}: ${JSON.stringify(error)}`);
    assert.equal(typeof error.message, "string");
    assert.ok(error.message.length > 0);
    const expectedAck: Record<string, unknown> = {
      ok: false,
      code: error.code,
      message: error.message,
    };
    if (error.details !== undefined) expectedAck.details = error.details;
    assert.deepEqual(ack, expectedAck, `${this.name} ${event}: failed ack mirrors the error`);
    return { error, ack };
  }

  /** Emits with an ack and asserts it succeeded without an `error` event. */
  async expectOk(event: string, ...args: unknown[]): Promise<Ack> {
    const from = this.mark();
    const ack = await this.request(event, ...args);
    const errors = this.received.slice(from).filter((r) => r.event === "error");
    assert.deepEqual(errors, [], `${this.name} ${event}: no error event`);
    assert.equal(ack.ok, true, `${this.name} ${event}: ${JSON.stringify(ack)}`);
    return ack;
  }

  /**
   * Sends `joinChatGroup` (the seed's payload, or `{ groupId }` alone), asserts
   * success and returns `joinedRoom`'s payload.
   */
  async join(payload: number | Record<string, unknown>): Promise<unknown> {
    const from = this.mark();
    await this.expectOk(
      "joinChatGroup",
      typeof payload === "number" ? { groupId: payload } : payload,
    );
    return await this.next("joinedRoom", from);
  }

  /** Disconnects. */
  close(): void {
    this.socket.disconnect();
  }
}

/** `error` event payload. */
export interface ErrorPayload {
  code: string;
  message: string;
  details?: unknown;
}

/** Resolves `promise` or rejects after {@linkcode WAIT_LIMIT} ms (a hang guard). */
export function guard<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_LIMIT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Opens a socket with `auth: { token }` (websocket transport); resolves once connected. */
export async function connectWithToken(
  running: RunningApp,
  token: string | null,
  name = "client",
): Promise<TestClient> {
  const socket = connect(running.url, {
    forceNew: true,
    reconnection: false,
    transports: ["websocket"],
    auth: token === null ? {} : { token },
  });
  const client = new TestClient(socket, name);
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  socket.once("connect", () => resolve());
  socket.once("connect_error", (err: Error) => reject(err));
  try {
    await guard(promise, `${name}: connect`);
  } catch (error) {
    socket.disconnect();
    throw error;
  }
  return client;
}

/**
 * A development token for the fixture person `who` (`agent:123`,
 * `client:789`): an agent's Supabase-shaped token, a customer's backend token.
 */
export async function tokenFor(running: RunningApp, who: string): Promise<string> {
  const ref = parsePersonKey(who);
  assert.ok(ref, `not a person key: ${who}`);
  const person = await running.app.services.store.getPerson(ref);
  assert.ok(person, `no such fixture person: ${who}`);
  const { agent, customer } = running.app.devTokens;
  if (person.kind === "agent") {
    assert.ok(agent && person.authId, "agent dev tokens need APP_ENV=development");
    return await agent(person.authId);
  }
  assert.ok(customer, "customer dev tokens need APP_ENV=development");
  return await customer({ clientId: person.id, clientNumber: person.number });
}

/** Connects as the fixture person `who` (`agent:123`, `client:789`). */
export async function connectAs(running: RunningApp, who: string): Promise<TestClient> {
  return await connectWithToken(running, await tokenFor(running, who), who);
}

/**
 * Connects the fixture people `who` one after the other (see
 * {@linkcode connectAs}), pushing each client onto `clients` as soon as it is
 * connected so that {@linkcode closeAll} cleans up even when a later connect
 * fails. Returns the clients in the order of `who`.
 */
export async function connectUsers(
  running: RunningApp,
  who: readonly string[],
  clients: (TestClient | undefined)[],
): Promise<TestClient[]> {
  const connected: TestClient[] = [];
  for (const person of who) {
    const client = await connectAs(running, person);
    clients.push(client);
    connected.push(client);
  }
  return connected;
}

/**
 * Tries to connect and returns the `connect_error` (asserting the connection
 * was refused).
 */
export async function refusedConnection(
  running: RunningApp,
  token: string | null,
): Promise<Error & { data?: unknown }> {
  try {
    const client = await connectWithToken(running, token, "refused");
    client.close();
  } catch (error) {
    return error as Error & { data?: unknown };
  }
  assert.fail("the handshake was accepted");
}

/** Closes every client (ignoring undefined ones), then the app. */
export async function closeAll(
  running: RunningApp | undefined,
  clients: (TestClient | undefined)[],
): Promise<void> {
  for (const client of clients) client?.close();
  await running?.close();
}

/**
 * Every payload (first argument) one plain socket received for one event,
 * and a way to wait for one. With connection state recovery a broadcast
 * carries a trailing offset argument; only the first argument is kept.
 */
export class Recorder<T> {
  /** The payloads received so far, in order. */
  readonly events: T[] = [];
  #waiters: { predicate: (value: T) => boolean; resolve: (value: T) => void }[] = [];

  /** Starts recording `event` on `socket`. */
  constructor(socket: ClientSocket, event: string) {
    socket.on(event, (value: T) => {
      this.events.push(value);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.predicate(value)) return true;
        w.resolve(value);
        return false;
      });
    });
  }

  /** The first payload from index `from` on that satisfies `predicate` (waits for it). */
  async waitFor(predicate: (value: T) => boolean, from = 0, timeoutMs = 5000): Promise<T> {
    const seen = this.events.slice(from).find(predicate);
    if (seen !== undefined) return seen;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await new Promise<T>((resolve, reject) => {
        this.#waiters.push({ predicate, resolve });
        timer = setTimeout(() => reject(new Error("timed out waiting for an event")), timeoutMs);
      });
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Connects a plain socket.io-client socket (websocket transport, no
 * reconnection) as the fixture person `who` with a dev token, and pushes it
 * onto `sockets` for {@linkcode disconnectAll}; resolves once connected.
 */
export async function connectSocketAs(
  running: RunningApp,
  who: string,
  sockets: ClientSocket[],
): Promise<ClientSocket> {
  const token = await tokenFor(running, who);
  const socket = connect(running.url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    auth: { token },
  });
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("connect_error", (err) => reject(err));
  });
  return socket;
}

/** Disconnects every plain socket in `sockets`. */
export function disconnectAll(sockets: ClientSocket[]): void {
  for (const s of sockets) s.disconnect();
}

/**
 * Polls `check` every 20 ms until it returns true (for server-side effects
 * of a client's action); throws `timed out: <what>` after 5 s.
 */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The four fixture users most end-to-end tests need, connected to one app:
 * agent 123 (dept 1), customer 789, agent 124 (dept 2) and admin 1.
 */
export interface Cast {
  running: RunningApp;
  /** `agent:123`, agent of group 456 (dept 1). */
  agent: TestClient;
  /** `client:789`, customer of group 456. */
  client: TestClient;
  /** `agent:124` (dept 2). */
  otherAgent: TestClient;
  /** `agent:1`, the admin. */
  admin: TestClient;
}

/**
 * Starts the app with demo/fixture.json (plus `options.env`, with
 * `options.app` for {@linkcode startApp}), connects the {@linkcode Cast},
 * runs `fn`, then closes every client and the app, whatever happened.
 */
export async function withCast(
  fn: (cast: Cast) => Promise<void>,
  options: { env?: Record<string, string>; app?: Parameters<typeof startApp>[1] } = {},
): Promise<void> {
  const running = await startApp({ SEED_FILE: "demo/fixture.json", ...options.env }, options.app);
  const clients: (TestClient | undefined)[] = [];
  try {
    const [agent, client, otherAgent, admin] = await connectUsers(running, [
      "agent:123",
      "client:789",
      "agent:124",
      "agent:1",
    ], clients);
    await fn({ running, agent, client, otherAgent, admin });
  } finally {
    await closeAll(running, clients);
  }
}
