/**
 * Test helper: sockets configured as Servana's shipping apps configure
 * theirs (read from their public code, written here from scratch):
 *
 * - the agents' web app: socket.io-client 4.8, default transports (long-polling
 *   first, then the upgrade), `Authorization: Bearer` on the polling requests
 *   only (a browser cannot put it on the WebSocket upgrade), an `Origin`, and
 *   CONNECT auth `{ userId: sys_user_id, timestamp }` without a token;
 *   reconnection on (5 attempts);
 * - the customers' mobile app: socket.io-client 4.7, transports
 *   `["polling", "websocket"]`, the customer token as `auth.token` and as
 *   `Authorization: Bearer`, path `/socket.io/`, reconnection on.
 *
 * Each returns a {@linkcode TestClient} (recording everything received) once
 * connected.
 *
 * @module
 */

import { io as io48 } from "socket.io-client";
import { io as io47 } from "socket.io-client-4.7";
import { guard, TestClient } from "./clients.ts";

/** The web app's own origin (its Vite dev server). */
export const WEB_ORIGIN = "http://localhost:5173";

async function connected(client: TestClient, name: string): Promise<TestClient> {
  const socket = client.socket;
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  socket.once("connect", () => resolve());
  socket.once("connect_error", (err: Error) => reject(err));
  socket.connect();
  try {
    await guard(promise, `${name}: connect`);
  } catch (error) {
    socket.disconnect();
    throw error;
  }
  return client;
}

/** The web app's socket for agent `sysUserId` holding Supabase access token `token`. */
export function webAppSocket(
  url: string,
  options: { token: string; sysUserId: number; origin?: string },
): Promise<TestClient> {
  const origin = options.origin ?? WEB_ORIGIN;
  const socket = io48(url, {
    forceNew: true,
    autoConnect: false,
    reconnection: true,
    reconnectionAttempts: 5,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    randomizationFactor: 0.5,
    timeout: 20000,
    auth: (cb) => cb({ userId: options.sysUserId, timestamp: Date.now() }),
    // what a browser sends: the header on XHR polling, none on the WebSocket upgrade
    transportOptions: {
      polling: {
        extraHeaders: { Authorization: `Bearer ${options.token}`, Origin: origin },
      },
      websocket: { extraHeaders: { Origin: origin } },
    },
  });
  return connected(new TestClient(socket, `web:${options.sysUserId}`), "web app");
}

/** The mobile app's socket for a customer holding the backend's token `token`. */
export function mobileAppSocket(url: string, options: { token: string }): Promise<TestClient> {
  const socket = io47(url, {
    forceNew: true,
    autoConnect: false,
    transports: ["polling", "websocket"],
    auth: { token: options.token },
    extraHeaders: { Authorization: `Bearer ${options.token}` },
    reconnection: true,
    reconnectionAttempts: 5,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    randomizationFactor: 0.5,
    timeout: 20000,
    path: "/socket.io/",
    upgrade: true,
    rememberUpgrade: true,
  });
  // the 4.7 client's Socket type differs in name only from the 4.8 one TestClient records
  return connected(
    new TestClient(socket as unknown as ConstructorParameters<typeof TestClient>[0], "mobile"),
    "mobile app",
  );
}
