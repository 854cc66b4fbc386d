/**
 * The seed's user status operations: `userOnline`, `userHeartbeat`,
 * `userOffline`, `getOnlineUsers`, and the presence side of a disconnect.
 * People are named by kind and id: customer 5 and agent 5 are two entries.
 *
 * @module
 */

import { log } from "../log.ts";
import { visibleTo } from "../presence_feed.ts";
import { type Claim } from "./chat.ts";
import { assertSelf, enforceRateLimit, type EventContext, personOf } from "./context.ts";

/**
 * Records the socket online. A socket that closed while the write was in
 * flight has already had its disconnect clean-up, so its entry is removed
 * again here (else the person would stay listed until the entry expires).
 * Returns whether the set of online people changed.
 */
async function markOnline(ctx: EventContext): Promise<boolean> {
  const { socket, services } = ctx;
  const person = personOf(ctx);
  const { cameOnline } = await services.presence.online({
    person,
    userType: person.role,
    socketId: socket.id,
  });
  if (socket.connected) return cameOnline;
  const { wentOffline } = await services.presence.socketClosed(person, socket.id);
  return cameOnline !== wentOffline;
}

/** `userOnline`: marks the person online; `userStatusUpdated` to the sender, `onlineUsersUpdate` to those allowed. */
export async function userOnline(input: { claim: Claim }, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  assertSelf(ctx, event, input.claim);
  await enforceRateLimit(ctx, "status", event);
  const changed = await markOnline(ctx);
  if (changed) services.presenceFeed.changed();
  // closed meanwhile: nothing to tell it (its rooms were joined on connection)
  if (socket.disconnected) return { status: "offline" };
  const person = personOf(ctx);
  socket.emit("userStatusUpdated", {
    userId: person.id,
    userType: person.role,
    status: "online",
    timestamp: new Date().toISOString(),
  });
  if (!changed) {
    // already online elsewhere: this socket still gets the current list
    const users = await services.presence.list();
    socket.emit("onlineUsersUpdate", { onlineUsers: visibleTo(person.role, users) });
  }
  return { status: "online" };
}

/** `userHeartbeat`: refreshes `lastSeen`; brings an expired socket back online. */
export async function userHeartbeat(input: { claim: Claim }, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  assertSelf(ctx, event, input.claim);
  await enforceRateLimit(ctx, "status", event);
  const known = await services.presence.heartbeat(personOf(ctx), socket.id);
  if (!known) {
    // expired (or never announced): a heartbeat brings the socket back online
    if (await markOnline(ctx)) services.presenceFeed.changed();
  }
  return { status: "online" };
}

/** `userOffline`: takes the person offline on every device. */
export async function userOffline(input: { claim: Claim }, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  assertSelf(ctx, event, input.claim);
  await enforceRateLimit(ctx, "status", event);
  const person = personOf(ctx);
  const { wentOffline } = await services.presence.offline(person);
  socket.emit("userStatusUpdated", {
    userId: person.id,
    userType: person.role,
    status: "offline",
    timestamp: new Date().toISOString(),
  });
  if (wentOffline) services.presenceFeed.changed();
  return { status: "offline" };
}

/** `getOnlineUsers` → `onlineUsersList`: the online people this person may see. */
export async function getOnlineUsers(_input: unknown, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  await enforceRateLimit(ctx, "read", event);
  const users = visibleTo(personOf(ctx).role, await services.presence.list());
  socket.emit("onlineUsersList", users);
  return { onlineUsers: users };
}

/** The presence side of a disconnect: the socket's entry goes; offline when it was the last. */
export function presenceOnDisconnect(ctx: EventContext): void {
  const { services, socket } = ctx;
  services.track(services.presence.socketClosed(personOf(ctx), socket.id)).then(
    ({ wentOffline }) => {
      if (wentOffline) services.presenceFeed.changed();
    },
    (error) => log("warn", "presence cleanup failed", { error: String(error) }),
  );
}
