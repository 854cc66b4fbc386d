/**
 * Composition root: builds the Engine.IO engine, socket.io's `Server` on top
 * of it, and the HTTP routes, and returns a web-standard request handler.
 *
 * @module
 */

import { Server } from "socket.io";
import type { Config } from "./config.ts";
import { Engine } from "./engine/mod.ts";
import { log } from "./log.ts";

/** A running service: its request handler and how to stop it. */
export interface App {
  /** The handler for `Deno.serve`. */
  handler: (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;
  /** Stops taking connections, closes every socket, releases resources. */
  close: () => Promise<void>;
  /** socket.io's server (for tests and wiring). */
  io: Server;
  /** The Engine.IO engine. */
  engine: Engine;
}

/** Options of {@linkcode createApp}. */
export interface AppOptions {
  /** Extra readiness check (store, KV); rejects when not ready. */
  ready?: () => Promise<void>;
}

/** Builds the service from its configuration. */
export function createApp(config: Config, options: AppOptions = {}): App {
  const engine = new Engine({
    pingInterval: config.heartbeatInterval,
    pingTimeout: config.heartbeatTimeout,
    maxHttpBufferSize: config.maxHttpBufferSize,
    cors: { origin: config.corsOrigins, credentials: true },
  });
  engine.on("connection_error", (err) => {
    log("info", "connection refused", {
      code: err.code,
      message: err.message,
      context: err.context,
      address: err.req.remoteAddress,
    });
  });
  const io = new Server({ maxHttpBufferSize: config.maxHttpBufferSize, serveClient: false });
  io.bind(engine as never);

  let closing = false;
  const engineHandler = engine.handler();

  async function readyz(): Promise<Response> {
    if (closing) return json({ status: "shutting_down" }, 503);
    try {
      await options.ready?.();
      return json({ status: "ready" }, 200);
    } catch (error) {
      return json({ status: "not_ready", reason: String(error) }, 503);
    }
  }

  function handler(req: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> {
    const { pathname } = new URL(req.url);
    if (engine.matches(pathname)) {
      if (closing) return json({ code: 3, message: "Server shutting down" }, 503);
      return engineHandler(req, info);
    }
    if (req.method === "GET" || req.method === "HEAD") {
      if (pathname === "/healthz") return json({ status: "ok" }, 200);
      if (pathname === "/readyz") return readyz();
    }
    return json({ error: "not_found" }, 404);
  }

  async function close(): Promise<void> {
    if (closing) return;
    closing = true;
    await io.close();
  }

  return { handler, close, io, engine };
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}
