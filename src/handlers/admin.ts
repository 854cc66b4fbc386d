/**
 * Admin events: `getRoomStats` (→ `roomStatsUpdate`) and `disconnectUser`,
 * plus the periodic `roomStatsUpdate` push to the `admins` room.
 *
 * @module
 */

import type { Server } from "socket.io";
import { z } from "zod";
import { ADMINS_ROOM, isAdmin, userRoom } from "../access.ts";
import { ServanaError } from "../errors.ts";
import { log, security } from "../log.ts";
import type { Presence } from "../presence.ts";
import type { ChatStore } from "../store/mod.ts";
import {
  enforceReadBudget,
  type EventContext,
  idSchema,
  noPayloadSchema,
  onEvent,
} from "./context.ts";

/** `disconnectUser { userId, reason? }` */
export const disconnectUserSchema = z.object({
  userId: idSchema,
  reason: z.string().max(200).optional(),
});

/** The seed's `roomStatsUpdate` payload. */
export interface RoomStats {
  totalRooms: number;
  activeRooms: number;
  totalUsers: number;
  timestamp: string;
}

/**
 * Room statistics: `totalRooms` chat groups, `activeRooms` of them active,
 * `totalUsers` users online now.
 */
export async function roomStats(store: ChatStore, presence: Presence): Promise<RoomStats> {
  const [counts, online] = await Promise.all([store.countChatGroups(), presence.list()]);
  return {
    totalRooms: counts.total,
    activeRooms: counts.active,
    totalUsers: online.length,
    timestamp: new Date().toISOString(),
  };
}

function requireAdmin(ctx: EventContext, event: string): void {
  if (isAdmin(ctx.user)) return;
  security("access_denied", {
    socketEvent: event,
    reason: "admin_only",
    userId: ctx.user.id,
    role: ctx.user.role,
    address: ctx.socket.handshake.address,
  });
  throw new ServanaError("ACCESS_DENIED", "Admins only");
}

/** Registers the admin events on a socket. */
export function registerAdminHandlers(ctx: EventContext): void {
  onEvent(ctx, "getRoomStats", {
    schema: noPayloadSchema,
    handler: async (_payload, { socket, services }) => {
      requireAdmin(ctx, "getRoomStats");
      enforceReadBudget(ctx, "getRoomStats");
      const stats = await roomStats(services.store, services.presence);
      socket.emit("roomStatsUpdate", stats);
      return { stats };
    },
  });

  onEvent(ctx, "disconnectUser", {
    schema: disconnectUserSchema,
    handler: async (payload, { user, services }) => {
      requireAdmin(ctx, "disconnectUser");
      const target = services.io.in(userRoom(payload.userId));
      const sockets = await target.fetchSockets();
      const reason = payload.reason ?? "Disconnected by an administrator";
      target.emit("forcedDisconnect", { reason, by: user.id });
      target.disconnectSockets(true);
      security("forced_disconnect", {
        adminId: user.id,
        userId: payload.userId,
        sockets: sockets.length,
        reason,
      });
      return { userId: payload.userId, disconnected: sockets.length };
    },
  });
}

/**
 * Pushes `roomStatsUpdate` to this process's admin sockets every
 * `intervalMs` while any is connected. Returns a stop function.
 */
export function startRoomStatsPush(
  io: Server,
  options: { store: ChatStore; presence: Presence; intervalMs: number },
): () => void {
  let running = false;
  const timer = setInterval(async () => {
    const local = io.of("/").adapter.rooms.get(ADMINS_ROOM);
    if (!local?.size || running) return;
    running = true;
    try {
      const stats = await roomStats(options.store, options.presence);
      io.local.to(ADMINS_ROOM).emit("roomStatsUpdate", stats);
    } catch (error) {
      log("warn", "room stats push failed", { error: String(error) });
    } finally {
      running = false;
    }
  }, options.intervalMs);
  return () => clearInterval(timer);
}
