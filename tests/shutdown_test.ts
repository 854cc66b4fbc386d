/**
 * Graceful shutdown and crash safety.
 *
 * - In-process, with a send held inside the store: after `close()` starts,
 *   `/readyz` answers 503 and new handshakes are refused while connected
 *   sockets stay; the held send finishes, is acked and broadcast; then the
 *   sockets close with a reason socket.io-client reconnects on.
 * - `main.ts` in a child process under the compile task's permissions: SIGTERM
 *   during a stream of acked sends exits 0; the clients see a reconnectable
 *   disconnect and reconnect by themselves to the process restarted on the
 *   same KV file, where every acked message is (getMessages).
 * - `kill -9` during a stream of acked sends: after a restart on the same KV
 *   file no acked message is missing.
 */

import assert from "node:assert/strict";
import { io as connect, type Socket } from "socket.io-client";
import { tokenFor } from "./support/clients.ts";
import { testSecrets, tokenForPerson } from "./support/people.ts";
import { setLogSink } from "../src/log.ts";
import { KvStore } from "../src/store/kv_store.ts";
import { MemberClient, type MessagePayload } from "./support/delivery_client.ts";
import { FailingStore } from "./support/failing_store.ts";
import { compileFlags, freePort, ROOT_PATH } from "./support/processes.ts";
import { startApp } from "./support/server.ts";

const GROUP = 456;
const SECRET = "shutdown-test-secret-0123456789abcdef";
const GUARD_MS = 15_000;

type Ack = { ok: boolean; [key: string]: unknown };

function guard<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), GUARD_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function once<T = unknown>(socket: Socket, event: string): Promise<T> {
  return guard(
    new Promise((resolve) => socket.once(event, (value: T) => resolve(value))),
    event,
  );
}

async function connected(socket: Socket): Promise<void> {
  if (!socket.connected) await once(socket, "connect");
}

function connectSocket(url: string, token: string, transports: string[]): Socket {
  return connect(url, {
    forceNew: true,
    transports,
    auth: { token },
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
  });
}

Deno.test("shutdown in-process: 503 and refused handshakes at once, the in-flight send is acked, reconnectable close", async () => {
  const previousSink = setLogSink({ write() {} });
  const kv = await Deno.openKv(":memory:");
  const store = new FailingStore(new KvStore(kv));
  const running = await startApp({ SEED_FILE: "demo/fixture.json" }, { kv, store });
  const sockets: Socket[] = [];
  try {
    const client = connectSocket(running.url, await tokenFor(running, "client:789"), ["websocket"]);
    const agent = connectSocket(running.url, await tokenFor(running, "agent:123"), ["polling"]);
    sockets.push(client, agent);
    await Promise.all([connected(client), connected(agent)]);
    for (const socket of [client, agent]) {
      const joined: Ack = await socket.timeout(5_000).emitWithAck("joinChatGroup", {
        groupId: GROUP,
      });
      assert.equal(joined.ok, true);
    }

    const gate = store.holdNextAddMessage();
    const received = once<MessagePayload>(agent, "receiveMessage");
    const acked: Promise<Ack | Error> = client.timeout(GUARD_MS).emitWithAck("sendMessage", {
      message: "sent just before the shutdown",
      chatGroupId: GROUP,
      clientId: 789,
      clientMessageId: "in-flight-1",
    }).catch((error: Error) => error);
    await guard(gate.entered, "send reaches the store");
    const reasons = [once<string>(client, "disconnect"), once<string>(agent, "disconnect")];

    const closing = running.app.close();
    const ready = await fetch(`${running.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), { status: "shutting_down" });

    for (const transports of [["websocket"], ["polling"]]) {
      const late = connect(running.url, {
        forceNew: true,
        reconnection: false,
        transports,
        auth: { token: await tokenFor(running, "agent:123") },
      });
      sockets.push(late);
      await once(late, "connect_error");
      assert.equal(late.connected, false, `new ${transports} handshake refused`);
    }
    assert.equal(client.connected, true, "connected sockets stay while sends are in flight");

    gate.release();
    const ack = await acked;
    assert.ok(!(ack instanceof Error), `the in-flight send is acked, got ${ack}`);
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const message = await received;
    assert.equal(message.chat_id, ack.chat_id);
    await guard(closing, "close");

    for (const [i, socket] of [client, agent].entries()) {
      const reason = await reasons[i];
      assert.ok(
        reason === "transport close" || reason === "transport error",
        `a reason the client reconnects on, got ${reason}`,
      );
      assert.equal(socket.active, true, "socket.io-client is reconnecting");
    }
  } finally {
    for (const socket of sockets) socket.disconnect();
    await running.close();
    setLogSink(previousSink);
  }
});

// ---- child processes of main.ts -------------------------------------------------

/** `main.ts` running in a child process. */
interface Child {
  process: Deno.ChildProcess;
  /** stdout + stderr once it has exited. */
  output: Promise<string>;
}

function spawnServer(cwd: string, port: number): Child {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${ROOT_PATH}deno.json`, ...compileFlags(), `${ROOT_PATH}main.ts`],
    cwd,
    env: {
      APP_ENV: "production",
      HOST: "127.0.0.1",
      PORT: String(port),
      KV_PATH: "./data/servana.kv",
      SEED_FILE: `${ROOT_PATH}demo/fixture.json`,
      SUPABASE_JWT_SECRET: testSecrets(SECRET).agents,
      JWT_ACCESS_SECRET: testSecrets(SECRET).customers,
      SOCKET_CORS_ORIGINS: "http://localhost:5173",
      RATE_LIMIT_MESSAGES: "4000",
      RATE_LIMIT_WINDOW: "1000",
      SHUTDOWN_TIMEOUT: "10000",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([
    new Response(process.stdout).text(),
    new Response(process.stderr).text(),
  ]).then(([out, err]) => out + err);
  return { process, output };
}

async function waitReady(url: string, child: Child): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`${url}/readyz`);
      await res.body?.cancel();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.process.kill("SIGKILL");
  throw new Error(`server did not become ready:\n${await child.output}`);
}

async function stopChild(child: Child): Promise<void> {
  try {
    child.process.kill("SIGKILL");
  } catch {
    // already exited
  }
  await child.process.status;
  await child.output;
}

/**
 * A sender that keeps sending while the server goes away and comes back:
 * each message has a `clientMessageId`; without an ack (timeout, drop) it is
 * sent again with the same id once reconnected, and the server's dedupe
 * answers with the stored message. Returns the acked chat_ids.
 */
class Sender {
  readonly acked = new Map<string, number>();
  readonly socket: Socket;
  #stop = false;
  #done: Promise<void> | null = null;

  constructor(url: string, token: string) {
    this.socket = connectSocket(url, token, ["websocket"]);
    this.socket.on("connect", () => {
      if (!this.socket.recovered) {
        void this.socket.timeout(5_000).emitWithAck("joinChatGroup", { groupId: GROUP })
          .catch(() => {});
      }
    });
  }

  start(prefix: string): void {
    this.#done = this.#run(prefix);
  }

  async #run(prefix: string): Promise<void> {
    for (let i = 0; !this.#stop; i++) {
      const clientMessageId = `${prefix}-${i}`;
      for (;;) {
        await connected(this.socket);
        try {
          const ack: Ack = await this.socket.timeout(2_000).emitWithAck("sendMessage", {
            message: `${prefix} #${i}`,
            chatGroupId: GROUP,
            clientId: 789,
            clientMessageId,
          });
          if (ack.ok) {
            this.acked.set(clientMessageId, ack.chat_id as number);
            break;
          }
          // not a member yet after a fresh reconnect, or storage busy: retry
          await new Promise((r) => setTimeout(r, 50));
        } catch {
          // no ack: dropped or timed out; retry the same clientMessageId
        }
      }
    }
  }

  /** Waits until `n` more messages are acked. */
  async waitFor(n: number): Promise<void> {
    const target = this.acked.size + n;
    await guard(
      (async () => {
        while (this.acked.size < target) await new Promise((r) => setTimeout(r, 10));
      })(),
      `${n} acks`,
    );
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await guard(this.#done ?? Promise.resolve(), "sender stops");
  }
}

/** Every message of the group, through `getMessages` paging back from the newest. */
async function history(socket: Socket): Promise<MessagePayload[]> {
  const all: MessagePayload[] = [];
  let before: number | undefined;
  for (;;) {
    const reply: Ack = await socket.timeout(5_000).emitWithAck("getMessages", {
      chatGroupId: GROUP,
      limit: 200,
      ...(before === undefined ? {} : { before }),
    });
    assert.equal(reply.ok, true, JSON.stringify(reply));
    const page = reply.messages as MessagePayload[];
    all.unshift(...page);
    if (page.length < 200) return all;
    before = page[0].chat_id;
  }
}

async function withServerDir(
  fn: (cwd: string, port: number) => Promise<void>,
): Promise<void> {
  const cwd = await Deno.makeTempDir({ prefix: "servana-shutdown-" });
  try {
    await fn(cwd, freePort());
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
}

Deno.test("shutdown: SIGTERM during acked sends exits 0, clients reconnect to the restarted process, nothing acked is lost", async () => {
  await withServerDir(async (cwd, port) => {
    const url = `http://127.0.0.1:${port}`;
    let child = spawnServer(cwd, port);
    const children = [child];
    let sender: Sender | null = null;
    const members: MemberClient[] = [];
    try {
      await waitReady(url, child);
      sender = new Sender(url, await tokenForPerson("client:789", testSecrets(SECRET)));
      for (const transports of [["websocket"], ["polling", "websocket"]]) {
        members.push(
          new MemberClient({
            url,
            token: await tokenForPerson("agent:123", testSecrets(SECRET)),
            chatGroupId: GROUP,
            transports,
            name: `agent-123/${transports.join("+")}`,
          }),
        );
      }
      await Promise.all(members.map((m) => m.settle()));
      await connected(sender.socket);
      const reasons = [sender.socket, ...members.map((m) => m.socket)].map((s) =>
        once<string>(s, "disconnect")
      );

      sender.start("term");
      await sender.waitFor(30);
      child.process.kill("SIGTERM");
      const status = await guard(child.process.status, "exit after SIGTERM");
      const log = await child.output;
      assert.equal(status.code, 0, log);
      assert.match(log, /"shutting down"/);
      const seen = await Promise.all(reasons);
      console.log(JSON.stringify({ disconnectReasons: seen }));
      for (const reason of seen) {
        assert.ok(
          reason === "transport close" || reason === "transport error",
          `a reason the client reconnects on, got ${reason}`,
        );
      }
      assert.equal(sender.socket.active, true, "the sender is reconnecting");
      for (const member of members) assert.equal(member.socket.active, true);

      // the same KV file, the same port: the clients come back by themselves
      child = spawnServer(cwd, port);
      children.push(child);
      await waitReady(url, child);
      await sender.waitFor(30);
      await sender.stop();
      await Promise.all(members.map((m) => m.settle()));

      const acked = [...sender.acked.values()];
      const stored = new Map((await history(sender.socket)).map((m) => [m.chat_id, m]));
      const lost = acked.filter((id) => !stored.has(id));
      assert.deepEqual(lost, [], "acked messages missing after the restart");
      for (const member of members) {
        const missing = acked.filter((id) => !member.messages.has(id));
        assert.deepEqual(missing, [], `${member.name} misses acked messages`);
        assert.ok(member.stats.fresh >= 2, `${member.name} reconnected to the new process`);
      }
      console.log(JSON.stringify({ sigterm: { acked: acked.length, lost: lost.length } }));

      child.process.kill("SIGTERM");
      assert.equal((await guard(child.process.status, "second exit")).code, 0);
    } finally {
      sender?.socket.disconnect();
      await Promise.all(members.map((m) => m.close()));
      for (const c of children) await stopChild(c);
    }
  });
});

Deno.test("shutdown: kill -9 during acked sends loses no acked message (restart on the same KV file)", async () => {
  await withServerDir(async (cwd, port) => {
    const url = `http://127.0.0.1:${port}`;
    let child = spawnServer(cwd, port);
    const children = [child];
    const senders: Sender[] = [];
    try {
      await waitReady(url, child);
      for (const who of ["client:789", "agent:123"]) {
        const sender = new Sender(url, await tokenForPerson(who, testSecrets(SECRET)));
        senders.push(sender);
        await connected(sender.socket);
      }
      senders.forEach((s, i) => s.start(`kill-${i}`));
      await Promise.all(senders.map((s) => s.waitFor(50)));
      child.process.kill("SIGKILL");
      const status = await child.process.status;
      assert.equal(status.signal, "SIGKILL");
      await child.output;
      const ackedBeforeKill = senders.flatMap((s) => [...s.acked.values()]);

      child = spawnServer(cwd, port);
      children.push(child);
      await waitReady(url, child);
      await Promise.all(senders.map((s) => s.waitFor(10)));
      await Promise.all(senders.map((s) => s.stop()));

      const acked = senders.flatMap((s) => [...s.acked.values()]);
      const stored = new Set((await history(senders[0].socket)).map((m) => m.chat_id));
      const lost = acked.filter((id) => !stored.has(id));
      console.log(
        JSON.stringify({
          kill9: {
            ackedBeforeKill: ackedBeforeKill.length,
            acked: acked.length,
            lost: lost.length,
          },
        }),
      );
      assert.deepEqual(lost, [], "acked messages missing after kill -9 and restart");
    } finally {
      for (const s of senders) s.socket.disconnect();
      for (const c of children) await stopChild(c);
    }
  });
});
