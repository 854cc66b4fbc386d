/**
 * Admin events: `getRoomStats` (→ `roomStatsUpdate`) and `disconnectUser`,
 * plus the periodic `roomStatsUpdate` push to the `admins` room.
 *
 * @module
 */

import type { Server } from "socket.io";
import { ADMINS_ROOM, isAdmin, kindOfUserType, personRoom } from "../access.ts";
import { ServanaError } from "../errors.ts";
import { log, security } from "../log.ts";
import { runEvery } from "../periodic.ts";
import type { Presence } from "../presence.ts";
import type { ChatStore } from "../store/mod.ts";
import { enforceRateLimit, type EventContext, personOf, securityEvent } from "./context.ts";

/** Input of {@linkcode disconnectUser}. */
export interface DisconnectInput {
  userId: number;
  /** Which person: customers and agents share numbers. */
  userType: "agent" | "client" | "admin";
  reason?: string;
}

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
  if (isAdmin(personOf(ctx))) return;
  securityEvent(ctx, "access_denied", { socketEvent: event, reason: "admin_only" });
  throw new ServanaError("ACCESS_DENIED", "Admins only");
}

/** `getRoomStats` (admins) → `roomStatsUpdate`. */
export async function getRoomStats(_input: unknown, ctx: EventContext, event: string) {
  requireAdmin(ctx, event);
  await enforceRateLimit(ctx, "read", event);
  const stats = await roomStats(ctx.services.store, ctx.services.presence);
  ctx.socket.emit("roomStatsUpdate", stats);
  return { stats };
}

/**
 * `disconnectUser { userId, userType, reason? }` (admins): `forcedDisconnect`
 * to every socket of that person, on every process, then they are
 * disconnected. `disconnected` counts their connections.
 */
export async function disconnectUser(input: DisconnectInput, ctx: EventContext, event: string) {
  requireAdmin(ctx, event);
  const { services } = ctx;
  const target = { kind: kindOfUserType(input.userType), id: input.userId };
  const count = await services.members.connectionCount(target);
  const room = services.io.in(personRoom(target));
  const reason = input.reason ?? "Disconnected by an administrator";
  const admin = personOf(ctx);
  room.emit("forcedDisconnect", { reason, by: admin.id });
  room.disconnectSockets(true);
  security("forced_disconnect", {
    adminId: admin.id,
    kind: target.kind,
    userId: target.id,
    sockets: count,
    reason,
  });
  return { userId: target.id, userType: target.kind, disconnected: count };
}

/**
 * Pushes `roomStatsUpdate` to this process's admin sockets every
 * `intervalMs` while any is connected. Returns a stop function.
 */
export function startRoomStatsPush(
  io: Server,
  options: { store: ChatStore; presence: Presence; intervalMs: number },
): () => void {
  return runEvery(async () => {
    const local = io.of("/").adapter.rooms.get(ADMINS_ROOM);
    if (!local?.size) return;
    const stats = await roomStats(options.store, options.presence);
    io.local.to(ADMINS_ROOM).emit("roomStatsUpdate", stats);
  }, {
    everyMs: options.intervalMs,
    onError: (error) => log("warn", "room stats push failed", { error: String(error) }),
  });
}
