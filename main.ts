/**
 * servana-realtime: reads configuration, starts the service, stops it on
 * SIGINT/SIGTERM.
 *
 * @module
 */

import { type Config, ConfigError, loadConfig } from "./src/config.ts";
import { log, setDebug } from "./src/log.ts";
import { isPermissionError, permissionProblems } from "./src/permissions.ts";
import { type App, createApp, type DevTokens } from "./src/server.ts";
import { FixtureError, parseFixture } from "./src/store/fixture.ts";
import { SchemaError } from "./src/store/postgres_store.ts";

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`config error: ${error.message}`);
      Deno.exit(1);
    }
    throw error;
  }
  setDebug(config.debug);
  const problems = await permissionProblems(config);
  if (problems.length > 0) {
    for (const problem of problems) console.error(`permission error: ${problem}`);
    Deno.exit(1);
  }
  let app: App;
  try {
    app = await createApp(config);
  } catch (error) {
    console.error(`start-up error: ${startupMessage(error)}`);
    Deno.exit(1);
  }
  if (config.seedFile) await printDevTokens(app.devTokens, config.seedFile);
  const server = Deno.serve({
    port: config.port,
    hostname: config.host,
    onListen({ hostname, port }) {
      log("info", "listening", { url: `http://${hostname}:${port}`, env: config.appEnv });
    },
  }, app.handler);

  let stopping = false;
  /**
   * Graceful stop: /readyz answers 503 and new handshakes are refused at once,
   * in-flight events finish (acked and stored), sessions close with "transport
   * close" (clients reconnect elsewhere), KV and database close, then the
   * HTTP server. A second signal, an error or SHUTDOWN_TIMEOUT exits with 1.
   */
  async function stop(signal: string): Promise<void> {
    if (stopping) {
      log("warn", "second signal: exiting now", { signal });
      Deno.exit(1);
    }
    stopping = true;
    const started = Date.now();
    log("info", "shutting down", { signal, timeoutMs: config.shutdownTimeoutMs });
    const timer = setTimeout(() => {
      log("warn", "shutdown timed out", { timeoutMs: config.shutdownTimeoutMs });
      Deno.exit(1);
    }, config.shutdownTimeoutMs);
    try {
      await app.close();
      await server.shutdown();
    } catch (error) {
      log("error", "shutdown failed", { error: String(error) });
      Deno.exit(1);
    }
    clearTimeout(timer);
    log("info", "stopped", { ms: Date.now() - started });
    Deno.exit(0);
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void stop(signal));
  }
}

/** One line for what stopped the start: a missing table, a bad fixture, a permission, a connection. */
function startupMessage(error: unknown): string {
  if (error instanceof SchemaError) return `DATABASE_URL: ${error.message}`;
  if (error instanceof FixtureError) return `SEED_FILE: ${error.message}`;
  if (isPermissionError(error)) {
    return `${(error as Error).message} (the binary may read anywhere and write under ./data)`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Prints a ready token for each person of the development fixture (development secrets only). */
async function printDevTokens(devTokens: DevTokens, seedFile: string): Promise<void> {
  if (!devTokens.agent && !devTokens.customer) return;
  const fixture = parseFixture(JSON.parse(await Deno.readTextFile(seedFile)));
  const profiles = new Map((fixture.profile ?? []).map((p) => [p.prof_id, p]));
  const name = (profId: number | null | undefined) => {
    const p = profId == null ? undefined : profiles.get(profId);
    return `${p?.prof_firstname ?? ""} ${p?.prof_lastname ?? ""}`.trim();
  };
  console.log("\nDevelopment tokens (auth: { token } or Authorization: Bearer):");
  if (devTokens.agent) {
    for (const agent of fixture.sys_user ?? []) {
      if (!agent.supabase_user_id) continue;
      console.log(`  agent  ${String(agent.sys_user_id).padEnd(5)} ${name(agent.prof_id)}`);
      console.log(`    ${await devTokens.agent(agent.supabase_user_id)}`);
    }
  }
  if (devTokens.customer) {
    for (const client of fixture.client ?? []) {
      console.log(`  client ${String(client.client_id).padEnd(5)} ${name(client.prof_id)}`);
      console.log(
        `    ${await devTokens.customer({
          clientId: client.client_id,
          clientNumber: client.client_number,
        })}`,
      );
    }
  }
  console.log("");
}

if (import.meta.main) await main();
