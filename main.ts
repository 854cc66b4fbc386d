/**
 * servana-realtime: reads configuration, starts the service, stops it on
 * SIGINT/SIGTERM.
 *
 * @module
 */

import { type Config, ConfigError, loadConfig } from "./src/config.ts";
import { log, setDebug } from "./src/log.ts";
import { createApp } from "./src/server.ts";

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
  const app = await createApp(config);
  if (app.mintDevToken && config.seedFile) await printDevTokens(app.mintDevToken, config.seedFile);
  const server = Deno.serve({
    port: config.port,
    hostname: config.host,
    onListen({ hostname, port }) {
      log("info", "listening", { url: `http://${hostname}:${port}`, env: config.appEnv });
    },
  }, app.handler);

  let stopping = false;
  async function stop(signal: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    log("info", "shutting down", { signal });
    const timer = setTimeout(() => {
      log("warn", "shutdown timed out", { timeoutMs: config.shutdownTimeoutMs });
      Deno.exit(1);
    }, config.shutdownTimeoutMs);
    await app.close();
    await server.shutdown();
    clearTimeout(timer);
    Deno.exit(0);
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => void stop(signal));
  }
}

/** Prints a ready token for each user of the development fixture. */
async function printDevTokens(
  mint: (authId: string) => Promise<string>,
  seedFile: string,
): Promise<void> {
  const fixture = JSON.parse(await Deno.readTextFile(seedFile)) as {
    users?: { id: number; authId: string; role: string; firstName?: string }[];
  };
  console.log("\nDevelopment tokens (valid 1 hour; auth: { token } or Authorization: Bearer):");
  for (const user of fixture.users ?? []) {
    console.log(`  ${user.role.padEnd(6)} ${String(user.id).padEnd(5)} ${user.firstName ?? ""}`);
    console.log(`    ${await mint(user.authId)}`);
  }
  console.log("");
}

if (import.meta.main) await main();
