/**
 * Test helper: runs the service in-process on a free loopback port.
 *
 * @module
 */

import { loadConfig } from "../../src/config.ts";
import { type App, type AppOptions, createApp } from "../../src/server.ts";

/** A service running for one test. */
export interface RunningApp {
  app: App;
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  /** Stops the service and the HTTP server. */
  close: () => Promise<void>;
}

/** Starts the service with environment `env` (merged over quiet test defaults). */
export async function startApp(
  env: Record<string, string> = {},
  options: AppOptions = {},
): Promise<RunningApp> {
  const config = loadConfig({
    APP_ENV: "development",
    HOST: "127.0.0.1",
    PORT: "0",
    KV_PATH: ":memory:",
    ...env,
  });
  const app = await createApp(config, options);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.handler);
  const port = server.addr.port;
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    port,
    async close() {
      await app.close();
      await server.shutdown();
    },
  };
}
