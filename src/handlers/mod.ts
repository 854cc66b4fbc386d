/**
 * Wires every event family onto socket.io: the handshake middleware, then
 * per connection the session, status, chat, typing and admin handlers.
 *
 * @module
 */

import type { Server } from "socket.io";
import { TokenBucket } from "../rate_limit.ts";
import { registerAdminHandlers } from "./admin.ts";
import { registerChatHandlers } from "./chat.ts";
import type { AppSocket, EventContext, Services } from "./context.ts";
import { authMiddleware, startSession } from "./session.ts";
import { registerStatusHandlers } from "./status.ts";
import { registerTypingHandlers } from "./typing.ts";

export type { AppSocket, EventContext, Services, SocketData } from "./context.ts";
export { startRoomStatsPush } from "./admin.ts";

/** Installs authentication and every event handler on the default namespace. */
export function registerHandlers(io: Server, services: Services): void {
  const nsp = io.of("/");
  nsp.use(authMiddleware(services) as never);
  nsp.on("connection", (raw) => {
    const socket = raw as unknown as AppSocket;
    const perMinute = services.config.rateLimits.readsPerMinute;
    const ctx: EventContext = {
      socket,
      user: socket.data.user,
      services,
      reads: new TokenBucket({
        capacity: Math.max(1, perMinute / 4),
        refillPerSec: perMinute / 60,
      }),
    };
    startSession(ctx);
    registerStatusHandlers(ctx);
    registerChatHandlers(ctx);
    registerTypingHandlers(ctx);
    registerAdminHandlers(ctx);
  });
}
