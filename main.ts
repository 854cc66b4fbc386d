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
