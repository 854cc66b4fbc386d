/**
 * Supabase's pooled connection string (transaction mode) does not support
 * prepared statements. A real PgBouncer in transaction mode, with a small
 * server pool, in front of a Servana-shaped PostgreSQL: the service, told by
 * the connection string (`?pgbouncer=true`, as Supabase documents it) or by
 * `DATABASE_PREPARE=false`, chats under concurrent load through it with
 * every message acked once and stored once; `deno task migrate` takes the
 * same connection string. Prepared statements through it break under this
 * load (statements prepared on one server connection are executed on
 * another), which is what these tests would show if the detection went.
 * Skipped, with the reason printed, where PostgreSQL or PgBouncer is absent.
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { type Ack, closeAll, connectUsers, type TestClient } from "./support/clients.ts";
import { pgbouncerAvailable, startPgbouncer } from "./support/pgbouncer.ts";
import { postgresAvailable, startPostgres } from "./support/postgres.ts";
import { ROOT_PATH } from "./support/processes.ts";
import { startApp } from "./support/server.ts";
import { migrate } from "../src/store/migrate.ts";
import {
  openPostgresStore,
  usesPreparedStatements,
  withoutPoolerHint,
} from "../src/store/postgres_store.ts";
import { captureLog } from "./support/log_capture.ts";

const reason = postgresAvailable() ?? pgbouncerAvailable();
if (reason) console.log(`pooler_test skipped: ${reason}`);

const SCHEMA = await Deno.readTextFile(new URL("./support/servana_schema.sql", import.meta.url));

/** Both sides of conversation 456 send `perSender` messages each, `inFlight` at a time. */
async function chatUnderLoad(
  clients: TestClient[],
  options: { perSender: number; inFlight: number },
): Promise<{ acked: number[]; failures: string[] }> {
  const [agent, customer] = clients;
  await agent.join(456);
  await customer.join(456);
  const acked: number[] = [];
  const failures: string[] = [];
  async function sender(client: TestClient, offset: number): Promise<void> {
    for (let i = 0; i < options.perSender; i++) {
      const reply = await client.request("sendMessage", {
        message: `load ${offset + i}`,
        chatGroupId: 456,
        clientId: 789,
        clientMessageId: `load-${offset + i}`,
      }).catch((error): Ack => ({ ok: false, code: String(error) }));
      if (!reply.ok) {
        failures.push(String(reply.code));
        return; // the first failure ends this sender: a broken pool fails fast
      }
      acked.push(reply.chat_id as number);
      // history reads interleave with the sends (other statements, other connections)
      if (i % 5 === 0) {
        const history = await client.request("getMessages", { chatGroupId: 456, limit: 20 })
          .catch((error): Ack => ({ ok: false, code: String(error) }));
        if (!history.ok) {
          failures.push(`getMessages ${history.code}`);
          return;
        }
      }
    }
  }
  const senders: Promise<void>[] = [];
  for (let k = 0; k < options.inFlight; k++) {
    senders.push(sender(k % 2 === 0 ? agent : customer, k * 1000));
  }
  await Promise.all(senders);
  return { acked, failures };
}

/**
 * Rejects when `work` has not settled within `ms`: a driver whose prepared
 * statements went to the wrong server connection can wait forever.
 */
async function deadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "through PgBouncer in transaction mode the service chats without prepared statements",
  ignore: reason !== null,
  async fn(t) {
    const pg = await startPostgres();
    const direct = postgres(pg.url, { max: 1, onnotice: () => {} });
    const pooler = await startPgbouncer(pg.port, { poolSize: 3 });
    try {
      await direct.unsafe(SCHEMA).simple();

      await t.step("deno task migrate accepts the pooled connection string", async () => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["task", "migrate"],
          cwd: ROOT_PATH,
          env: { DATABASE_URL: `${pooler.url}?pgbouncer=true`, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, text);
        assert.match(text, /migration\(s\) applied/);
        // and again: nothing left to apply
        assert.deepEqual((await migrate(direct)).applied, []);
      });

      for (
        const [what, env] of [
          ["?pgbouncer=true detected", { DATABASE_URL: `${pooler.url}?pgbouncer=true` }],
          ["DATABASE_PREPARE=false", { DATABASE_URL: pooler.url, DATABASE_PREPARE: "false" }],
        ] as const
      ) {
        await t.step(what, async () => {
          await direct`delete from chat where chat_group_id = 456`;
          const running = await deadline(
            startApp({
              ...env,
              SEED_FILE: "demo/fixture.json",
              RATE_LIMIT_MESSAGES: "4000",
              RATE_LIMIT_READS: "4000",
            }),
            30_000,
            "start-up",
          );
          const clients: (TestClient | undefined)[] = [];
          try {
            const { acked, failures } = await deadline(
              connectUsers(running, ["agent:123", "client:789"], clients)
                .then((people) => chatUnderLoad(people, { perSender: 15, inFlight: 8 })),
              60_000,
              "chat under load",
            );
            assert.deepEqual(failures, []);
            assert.equal(acked.length, 120);
            assert.equal(new Set(acked).size, 120, "each acked once, with its own id");
            const rows = await direct<{ n: number }[]>`
              select count(*)::int as n from chat where chat_group_id = 456`;
            assert.equal(rows[0].n, 120, "each stored once");
          } finally {
            await deadline(closeAll(running, clients), 15_000, "shutdown").catch(() => {});
          }
        });
      }
    } finally {
      await direct.end({ timeout: 5 });
      await pooler.stop();
      await pg.stop();
    }
  },
});

Deno.test("which connection strings get no prepared statements", () => {
  for (
    const [url, prepared] of [
      ["postgres://u:p@db.abcd.supabase.co:5432/postgres", true],
      ["postgres://u:p@aws-0-eu-central-1.pooler.supabase.com:5432/postgres", false],
      ["postgres://u:p@db.abcd.supabase.co:6543/postgres", false],
      ["postgres://u:p@10.0.0.5:6432/servana", false],
      ["postgres://u:p@10.0.0.5:5433/servana?pgbouncer=true", false],
      ["postgres://u:p@10.0.0.5:5433/servana?pgbouncer=false", true],
    ] as const
  ) {
    assert.equal(usesPreparedStatements(url), prepared, url);
  }
  // the hint is ours: the server never sees it, other parameters stay
  assert.equal(
    withoutPoolerHint("postgres://u@h:6543/db?pgbouncer=true&sslmode=require"),
    "postgres://u@h:6543/db?sslmode=require",
  );
});

Deno.test("prepared statements forced on through a pooler-looking URL: a warning at start", async () => {
  const log = captureLog();
  try {
    for (
      const [url, prepare, warned] of [
        ["postgres://u@127.0.0.1:1/db?pgbouncer=true", true, true],
        ["postgres://u@127.0.0.1:1/db?pgbouncer=true", undefined, false],
        ["postgres://u@127.0.0.1:1/db", true, false],
      ] as const
    ) {
      const before = log.lines().length;
      const store = await openPostgresStore(url, { prepare });
      await store.close();
      const warnings = log.lines().slice(before).filter((l) => l.level === "warn");
      assert.equal(warnings.length, warned ? 1 : 0, `${url} prepare=${prepare}`);
    }
  } finally {
    log.restore();
  }
});
