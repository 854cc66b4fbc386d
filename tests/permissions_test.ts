/**
 * The compiled binary's permission set is the least the service needs: this
 * test reads the flags of `deno task compile` and runs `main.ts` under exactly
 * those flags in a child process, then uses it like a client would: connect
 * over every transport, chat, read /readyz, and stop it with SIGTERM.
 * (`deno compile` itself needs to download Deno's runtime base, which these
 * machines cannot reach; the permission set is what this test proves.)
 */

import assert from "node:assert/strict";
import { io as connect, type Socket } from "socket.io-client";
import { testSecrets, tokenForPerson } from "./support/people.ts";
import { compileFlags, freePort, ROOT_PATH } from "./support/processes.ts";

const root = new URL("../", import.meta.url);

async function waitReady(url: string, child: Deno.ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const res = await fetch(`${url}/readyz`);
      await res.body?.cancel();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error("server did not become ready");
}

function once<T>(socket: Socket, event: string): Promise<T> {
  return new Promise((resolve) => socket.once(event, (value: T) => resolve(value)));
}

Deno.test("compile permissions: least privilege, and the server runs under exactly them", async (t) => {
  const flags = compileFlags();
  await t.step("no blanket or dangerous permission", () => {
    for (const forbidden of ["--allow-all", "-A", "--allow-run", "--allow-ffi", "--allow-sys"]) {
      assert.ok(!flags.some((f) => f === forbidden || f.startsWith(forbidden + "=")), forbidden);
    }
    assert.ok(flags.includes("--allow-net"));
    assert.ok(flags.some((f) => f.startsWith("--allow-write=")), "writes are scoped");
    const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", root)));
    assert.ok(config.tasks.start.includes(flags.join(" ")), "start task runs with the same set");
  });

  const cwd = await Deno.makeTempDir({ prefix: "servana-perm-" });
  const port = freePort();
  const secret = "permissions-test-secret-0123456789abcdef";
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${ROOT_PATH}deno.json`, ...flags, `${ROOT_PATH}main.ts`],
    cwd,
    env: {
      APP_ENV: "production",
      HOST: "127.0.0.1",
      PORT: String(port),
      KV_PATH: "./data/servana.kv",
      SEED_FILE: `${ROOT_PATH}demo/fixture.json`,
      SUPABASE_JWT_SECRET: testSecrets(secret).agents,
      JWT_ACCESS_SECRET: testSecrets(secret).customers,
      SOCKET_CORS_ORIGINS: "http://localhost:5173",
      SHUTDOWN_TIMEOUT: "5000",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  const url = `http://127.0.0.1:${port}`;
  const sockets: Socket[] = [];
  try {
    await waitReady(url, child);
    await t.step("KV file written under ./data", async () => {
      const entries = [];
      for await (const e of Deno.readDir(`${cwd}/data`)) entries.push(e.name);
      assert.ok(entries.includes("servana.kv"), entries.join(","));
    });

    for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
      await t.step(`chat over ${transports.join("+")}`, async () => {
        const agent = connect(url, {
          transports,
          forceNew: true,
          reconnection: false,
          auth: { token: await tokenForPerson("agent:123", testSecrets(secret)) },
        });
        const client = connect(url, {
          transports,
          forceNew: true,
          reconnection: false,
          extraHeaders: {
            authorization: `Bearer ${await tokenForPerson("client:789", testSecrets(secret))}`,
          },
        });
        sockets.push(agent, client);
        await Promise.all([once(agent, "connect"), once(client, "connect")]);
        assert.equal((await agent.emitWithAck("joinChatGroup", { groupId: 456 })).ok, true);
        assert.equal((await client.emitWithAck("joinChatGroup", { groupId: 456 })).ok, true);
        const received = once<{ chat_message: string }>(agent, "receiveMessage");
        const ack = await client.emitWithAck("sendMessage", {
          message: `hello over ${transports.join("+")}`,
          chatGroupId: 456,
          clientId: 789,
        });
        assert.equal(ack.ok, true);
        assert.equal((await received).chat_message, `hello over ${transports.join("+")}`);
        agent.disconnect();
        client.disconnect();
      });
    }

    await t.step("development-only routes are absent in production", async () => {
      const res = await fetch(`${url}/dev/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      assert.equal(res.status, 404);
      await res.body?.cancel();
    });

    await t.step("SIGTERM stops it cleanly", async () => {
      child.kill("SIGTERM");
      const status = await child.status;
      assert.equal(status.code, 0);
    });
  } finally {
    for (const s of sockets) s.disconnect();
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await child.status;
    const [, stderr] = await output;
    assert.ok(!stderr.includes("PermissionDenied") && !stderr.includes("NotCapable"), stderr);
    await Deno.remove(cwd, { recursive: true });
  }
});

/** Runs main.ts under the compile task's flags with `env`; returns its exit code and stderr. */
async function runBinary(cwd: string, env: Record<string, string>) {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${ROOT_PATH}deno.json`, ...compileFlags(), `${ROOT_PATH}main.ts`],
    cwd,
    env: {
      APP_ENV: "production",
      HOST: "127.0.0.1",
      PORT: String(freePort()),
      SUPABASE_JWT_SECRET: "permissions-test-secret-0123456789abcdef",
      SOCKET_CORS_ORIGINS: "http://localhost:5173",
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: result.code, stderr: new TextDecoder().decode(result.stderr) };
}

Deno.test("a permission the binary lacks stops start-up with one line naming the variable", async (t) => {
  const cwd = await Deno.makeTempDir({ prefix: "servana-perm-" });
  const outside = await Deno.makeTempDir({ prefix: "servana-outside-" });
  try {
    await t.step("KV_PATH outside ./data", async () => {
      const { code, stderr } = await runBinary(cwd, { KV_PATH: `${outside}/servana.kv` });
      assert.equal(code, 1);
      const lines = stderr.trim().split("\n");
      assert.equal(lines.length, 1, stderr);
      assert.match(
        lines[0],
        /^permission error: KV_PATH: .*servana\.kv is outside what this process may write.*\.\/data/,
      );
      assert.ok(!stderr.includes("NotCapable") && !stderr.includes("    at "), "no stack trace");
    });
  } finally {
    await Deno.remove(cwd, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});
