/**
 * Access follows the database: every `ACCESS_RECHECK_INTERVAL`, the people
 * with a socket on this process and the conversations those sockets are in
 * are read again (two batched reads), and
 *
 * - a person who is gone or inactive is disconnected (`error ACCESS_DENIED`);
 * - a person whose role or departments changed gets the rooms of who they are now;
 * - a socket in a conversation its person may no longer access (reassigned,
 *   transferred, a department removed) leaves it: `chat:left { chatGroupId,
 *   reason: "access_revoked" }` to it, `userLeft` to the room when it was the
 *   person's last socket there, and no further messages or typing reach it;
 * - a resolved conversation is left the same way one check later, so that
 *   the REST side's `chat:resolved` (emitted after it wrote the status)
 *   still reaches the room.
 *
 * Changes made through the service itself (refreshToken, recovery) are
 * applied at once by `syncRooms`; this catches the rest, such as the REST
 * side's transfers and resolutions.
 *
 * @module
 */

import { canAccessChatGroup, chatGroupOfRoom } from "../access.ts";
import { ServanaError } from "../errors.ts";
import { log } from "../log.ts";
import { runEvery } from "../periodic.ts";
import { isResolved, type Person, personKey } from "../store/mod.ts";
import { exitRoom } from "./chat.ts";
import { type AppSocket, type EventContext, replyError, type Services } from "./context.ts";
import { syncRooms } from "./session.ts";

/** Whether what decides a person's rooms or access changed. */
function changed(a: Person, b: Person): boolean {
  return a.role !== b.role || a.active !== b.active ||
    (a.kind === "agent" && b.kind === "agent" &&
      a.departments.join(",") !== b.departments.join(",")) ||
    a.firstName !== b.firstName || a.lastName !== b.lastName || a.image !== b.image;
}

/** One check of every local socket; `resolvedSeen` carries "resolved at the last check". */
export async function checkAccess(services: Services, resolvedSeen: Set<string>): Promise<void> {
  const sockets = [...services.io.of("/").sockets.values()] as unknown as AppSocket[];
  const live = sockets.filter((s) => s.data?.person !== undefined);
  if (live.length === 0) {
    resolvedSeen.clear();
    return;
  }
  const refs = new Map(live.map((s) => [personKey(s.data.person), s.data.person]));
  const fresh = new Map(
    (await services.store.getPeople([...refs.values()])).map((p) => [personKey(p), p]),
  );
  const groupIds = new Set<number>();
  for (const socket of live) {
    for (const room of socket.rooms) {
      const id = chatGroupOfRoom(room);
      if (id !== null) groupIds.add(id);
    }
  }
  const groups = new Map(
    (await services.store.getChatGroups([...groupIds])).map((g) => [g.id, g]),
  );
  const resolvedNow = new Set<string>();
  for (const socket of live) {
    if (!socket.connected) continue;
    const ctx: EventContext = { socket, services };
    const before = socket.data.person;
    const now = fresh.get(personKey(before));
    if (now === undefined || !now.active) {
      replyError(
        socket,
        new ServanaError("ACCESS_DENIED", "This account is not active", {
          details: { reason: "account_inactive" },
        }),
      );
      socket.disconnect(true);
      continue;
    }
    if (changed(before, now)) {
      socket.data.person = now;
      await syncRooms(ctx, before);
      continue;
    }
    for (const room of [...socket.rooms]) {
      const id = chatGroupOfRoom(room);
      // joined after this check read the conversations: the next check decides
      if (id === null || !groupIds.has(id)) continue;
      const group = groups.get(id);
      let revoke = group === undefined || !canAccessChatGroup(now, group);
      if (!revoke && group !== undefined && isResolved(group)) {
        const key = `${socket.id}:${id}`;
        resolvedNow.add(key);
        revoke = resolvedSeen.has(key);
      }
      if (!revoke) continue;
      await exitRoom(ctx, id, { announce: true });
      socket.emit("chat:left", { chatGroupId: id, reason: "access_revoked" });
    }
  }
  resolvedSeen.clear();
  for (const key of resolvedNow) resolvedSeen.add(key);
}

/** Starts the periodic check (one at a time); returns a stop function. */
export function startAccessWatch(services: Services, options: { everyMs: number }): () => void {
  const resolvedSeen = new Set<string>();
  return runEvery(() => checkAccess(services, resolvedSeen), {
    everyMs: options.everyMs,
    track: services.track,
    onError: (error) => log("warn", "access check failed", { error: String(error) }),
  });
}
