/**
 * Test helper: runs `main.ts` in child processes under exactly the
 * permissions of `deno task compile` (like tests/permissions_test.ts), and
 * small socket.io-client helpers for talking to them.
 *
 * @module
 */

import { io as connect, type Socket } from "socket.io-client";
import { testSecrets, tokenForPerson } from "./people.ts";

const root = new URL("../../", import.meta.url);
/** Absolute path of the repository, with a trailing slash. */
export const ROOT_PATH: string = decodeURIComponent(root.pathname);

/** The `--allow-*` flags of the `compile` task. */
export function compileFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", root)));
  const task: string = config.tasks.compile;
  return task.split(/\s+/).filter((arg) => arg.startsWith("--allow-"));
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A server running in a child process. */
export interface ServerProcess {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  /** Everything written to stderr so far (the JSON log lines). */
  stderr(): string;
  /** Kills the process (SIGKILL unless told) and waits for it. Safe to call twice. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

async function collect(stream: ReadableStream<Uint8Array>, into: { text: string }): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) into.text += decoder.decode(chunk, { stream: true });
}

/**
 * Starts `main.ts` in `cwd` with `env` (plus HOST, PORT, NO_COLOR) and waits
 * until `/readyz` answers 200 (or, with `readyStatus`, any of those codes).
 */
export async function spawnServer(
  cwd: string,
  env: Record<string, string>,
  options: { port?: number; readyStatus?: number[] } = {},
): Promise<ServerProcess> {
  const port = options.port ?? freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${ROOT_PATH}deno.json`, ...compileFlags(), `${ROOT_PATH}main.ts`],
    cwd,
    env: { HOST: "127.0.0.1", PORT: String(port), NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = { text: "" };
  const err = { text: "" };
  const readers = Promise.all([collect(child.stdout, out), collect(child.stderr, err)]);
  let status: Deno.CommandStatus | null = null;
  const url = `http://127.0.0.1:${port}`;
  const server: ServerProcess = {
    url,
    port,
    stderr: () => err.text,
    async stop(signal: Deno.Signal = "SIGKILL") {
      if (status) return status;
      try {
        child.kill(signal);
      } catch {
        // already exited
      }
      status = await child.status;
      await readers;
      return status;
    },
  };
  const accept = options.readyStatus ?? [200];
  for (let i = 0; i < 400; i++) {
    try {
      const res = await fetch(`${url}/readyz`);
      await res.body?.cancel();
      if (accept.includes(res.status)) return server;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await server.stop();
  throw new Error(`server did not become ready:\n${err.text.slice(-3000)}`);
}

/** Connects a socket.io client over WebSocket with a bearer token; resolves once connected. */
export async function connectClient(
  url: string,
  token: string,
  options: { reconnection?: boolean } = {},
): Promise<Socket> {
  const socket = connect(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: options.reconnection ?? false,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    auth: { token },
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("connect_error", (error: Error) => reject(error));
  });
  return socket;
}

/** Guard against a hang when an expected event never comes (not a timing assert). */
export const WAIT_LIMIT = 10_000;

/**
 * Resolves with the first argument of the next `event` on `socket` that
 * satisfies `match`; rejects after {@linkcode WAIT_LIMIT} ms.
 */
export function nextEvent<T = Record<string, unknown>>(
  socket: Socket,
  event: string,
  match: (payload: T) => boolean = () => true,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, listener);
      reject(new Error(`no ${event} within ${WAIT_LIMIT} ms`));
    }, WAIT_LIMIT);
    function listener(payload: T): void {
      if (!match(payload)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(payload);
    }
    socket.on(event, listener);
  });
}

/** An ack reply. */
export type Ack = { ok: boolean; code?: string; [key: string]: unknown };

/** Emits with an ack and a time limit. */
export function request(socket: Socket, event: string, payload?: unknown): Promise<Ack> {
  return socket.timeout(WAIT_LIMIT).emitWithAck(event, payload) as Promise<Ack>;
}

/**
 * Environment of a production-mode process that shares `./data/servana.kv`
 * (relative to its working directory) and Redis at `redisUrl` with its peers:
 * HS256 tokens signed with `secret`, the demo fixture as seed, a 5 s shutdown
 * timeout. Spread it and add what a test needs on top.
 */
export function clusterEnv(secret: string, redisUrl: string): Record<string, string> {
  const secrets = testSecrets(secret);
  return {
    APP_ENV: "production",
    SUPABASE_JWT_SECRET: secrets.agents,
    JWT_ACCESS_SECRET: secrets.customers,
    SOCKET_CORS_ORIGINS: "http://localhost:5173",
    KV_PATH: "./data/servana.kv",
    SEED_FILE: `${ROOT_PATH}demo/fixture.json`,
    REDIS_URL: redisUrl,
    SHUTDOWN_TIMEOUT: "5000",
  };
}

/**
 * Connects to `server` as the fixture person `who` (`agent:123`,
 * `client:789`) with a token signed with the secrets {@linkcode clusterEnv}
 * derives from `options.secret` (see {@linkcode connectClient}) and pushes the
 * socket onto `options.sockets` for {@linkcode stopAll}.
 */
export async function connectAsUser(
  server: { url: string },
  who: string,
  options: { secret: string; sockets: Socket[]; reconnection?: boolean },
): Promise<Socket> {
  const token = await tokenForPerson(who, testSecrets(options.secret));
  const socket = await connectClient(server.url, token, { reconnection: options.reconnection });
  options.sockets.push(socket);
  return socket;
}

/** Disconnects every socket, then stops every server process (SIGKILL), one after the other. */
export async function stopAll(sockets: Socket[], servers: ServerProcess[]): Promise<void> {
  for (const s of sockets) s.disconnect();
  for (const server of servers) await server.stop();
}
