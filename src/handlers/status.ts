/**
 * User status events: `userOnline`, `userHeartbeat`, `userOffline`,
 * `getOnlineUsers`, and the presence side of a disconnect.
 *
 * @module
 */

import { z } from "zod";
import { log } from "../log.ts";
import { visibleTo } from "../presence_feed.ts";
import {
  assertSelf,
  enforceRateLimit,
  enforceReadBudget,
  type EventContext,
  idSchema,
  noPayloadSchema,
  onEvent,
  userTypeSchema,
} from "./context.ts";

/** `userOnline { userId, userType }` */
export const userOnlineSchema = z.object({ userId: idSchema, userType: userTypeSchema });
/** `userHeartbeat { userId, timestamp? }` */
export const userHeartbeatSchema = z.object({
  userId: idSchema,
  timestamp: z.number().finite().optional(),
});
/** `userOffline { userId }` */
export const userOfflineSchema = z.object({ userId: idSchema });

/**
 * Records the socket online. A socket that closed while the write was in
 * flight has already had its disconnect clean-up, so its entry is removed
 * again here (else the user would stay listed until the entry expires).
 * Returns whether the set of online users changed.
 */
async function markOnline(ctx: EventContext): Promise<boolean> {
  const { socket, user, services } = ctx;
  const { cameOnline } = await services.presence.online({
    userId: user.id,
    userType: user.role,
    socketId: socket.id,
  });
  if (socket.connected) return cameOnline;
  const { wentOffline } = await services.presence.socketClosed(user.id, socket.id);
  return cameOnline !== wentOffline;
}

/** Registers the status events on a socket. */
export function registerStatusHandlers(ctx: EventContext): void {
  onEvent(ctx, "userOnline", {
    schema: userOnlineSchema,
    handler: async (payload, { socket, user, services }) => {
      assertSelf(ctx, "userOnline", payload);
      await enforceRateLimit(ctx, "status", "userOnline");
      const changed = await markOnline(ctx);
      if (changed) services.presenceFeed.changed();
      // closed meanwhile: nothing to tell it (its rooms were joined on connection)
      if (socket.disconnected) return { status: "offline" };
      socket.emit("userStatusUpdated", {
        userId: user.id,
        status: "online",
        timestamp: new Date().toISOString(),
      });
      if (!changed) {
        // already online elsewhere: this socket still gets the current list
        const users = await services.presence.list();
        socket.emit("onlineUsersUpdate", { onlineUsers: visibleTo(user.role, users) });
      }
      return { status: "online" };
    },
  });

  onEvent(ctx, "userHeartbeat", {
    schema: userHeartbeatSchema,
    handler: async (payload, { socket, user, services }) => {
      assertSelf(ctx, "userHeartbeat", payload);
      await enforceRateLimit(ctx, "status", "userHeartbeat");
      const known = await services.presence.heartbeat(user.id, socket.id);
      if (!known) {
        // expired (or never announced): a heartbeat brings the socket back online
        if (await markOnline(ctx)) services.presenceFeed.changed();
      }
      return { status: "online" };
    },
  });

  onEvent(ctx, "userOffline", {
    schema: userOfflineSchema,
    handler: async (payload, { socket, user, services }) => {
      assertSelf(ctx, "userOffline", payload);
      await enforceRateLimit(ctx, "status", "userOffline");
      const { wentOffline } = await services.presence.offline(user.id);
      socket.emit("userStatusUpdated", {
        userId: user.id,
        status: "offline",
        timestamp: new Date().toISOString(),
      });
      if (wentOffline) services.presenceFeed.changed();
      return { status: "offline" };
    },
  });

  onEvent(ctx, "getOnlineUsers", {
    schema: noPayloadSchema,
    handler: async (_payload, { socket, user, services }) => {
      enforceReadBudget(ctx, "getOnlineUsers");
      const users = visibleTo(user.role, await services.presence.list());
      socket.emit("onlineUsersList", users);
      return { onlineUsers: users };
    },
  });

  ctx.socket.on("disconnect", () => {
    ctx.services.track(ctx.services.presence.socketClosed(ctx.user.id, ctx.socket.id)).then(
      ({ wentOffline }) => {
        if (wentOffline) ctx.services.presenceFeed.changed();
      },
      (error) => log("warn", "presence cleanup failed", { error: String(error) }),
    );
  });
}
