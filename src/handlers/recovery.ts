/**
 * Connection state recovery and the handshake middlewares.
 *
 * socket.io restores a recovered socket's rooms and replays what it missed
 * before the middlewares run again (`skipMiddlewares: false`), but delivers
 * broadcasts only to sockets listed in `nsp.sockets`, which it adds after the
 * middlewares: a message broadcast while the recovered handshake is being
 * re-authenticated would be lost. The first middleware lists a recovered
 * socket at once (moving it out of socket.io's pre-connect map, so a refusal,
 * which deletes it from `nsp.sockets`, leaves nothing behind); the client
 * buffers events received before its CONNECT, as it does for the replay.
 *
 * @module
 */

import type { Server } from "socket.io";

/** Lists recovered sockets from the first middleware on (see the module docs). */
export function deliverToRecoveredSockets(io: Server): void {
  const nsp = io.of("/");
  nsp.use((socket, next) => {
    if (socket.recovered) {
      (nsp as unknown as { _preConnectSockets: Map<string, unknown> })._preConnectSockets
        .delete(socket.id);
      nsp.sockets.set(socket.id, socket);
    }
    next();
  });
}
