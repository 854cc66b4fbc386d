/**
 * Wires the handlers onto socket.io: the handshake middleware, then per
 * connection the session and one dispatcher for every event of both
 * vocabularies.
 *
 * @module
 */

import type { Server } from "socket.io";
import { log } from "../log.ts";
import type { AppSocket, EventContext, Services } from "./context.ts";
import { dispatcher } from "./dispatch.ts";
import { authMiddleware, startSession } from "./session.ts";
import { EVENTS } from "./vocabulary.ts";

export type { AppSocket, EventContext, Services, SocketData } from "./context.ts";
export { startRoomStatsPush } from "./admin.ts";
export { availabilityOnLastDisconnect, startAvailabilityRefresh } from "./availability.ts";
export { EVENTS } from "./vocabulary.ts";

/** Installs authentication and every event on the default namespace. */
export function registerHandlers(io: Server, services: Services): void {
  const nsp = io.of("/");
  nsp.use(authMiddleware(services) as never);
  nsp.on("connection", (raw) => {
    const socket = raw as unknown as AppSocket;
    const ctx: EventContext = { socket, services };
    socket.use(dispatcher(ctx, EVENTS) as never);
    services.track(startSession(ctx)).catch((error) => {
      log("error", "session start failed", { error: String(error) });
      socket.disconnect(true);
    });
  });
}
