/**
 * The session of a connection: the handshake middleware (who is this? how
 * many connections do they hold?), the rooms joined on connection, token
 * expiry (`tokenExpiring`, then `AUTH_REQUIRED` and the transport closed, so
 * the client reconnects with a fresh token), `refreshToken` (which also
 * picks up role and department changes), and the clean-up of a disconnect.
 *
 * @module
 */

import type { ExtendedError } from "socket.io";
import {
  canAccessChatGroup,
  chatGroupOfRoom,
  chatRoom,
  chatRooms,
  isConnectionRoom,
  roomsOnConnect,
} from "../access.ts";
import type { Identity } from "../auth/mod.ts";
import { ServanaError, toErrorPayload } from "../errors.ts";
import { log, security } from "../log.ts";
import { type ChatGroup, isResolved, type Person, personKey, samePerson } from "../store/mod.ts";
import { availabilityOnConnect, availabilityOnLastDisconnect } from "./availability.ts";
import { exitRoom } from "./chat.ts";
import {
  type AppSocket,
  enforceRateLimit,
  type EventContext,
  personOf,
  replyError,
  type Services,
  type SocketData,
} from "./context.ts";
import { rejoinRooms, savedRooms } from "./recovery.ts";
import { presenceOnDisconnect } from "./status.ts";

const identities = new WeakMap<AppSocket, Identity>();
const expiryTimers = new WeakMap<AppSocket, () => void>();

function headersOf(raw: Record<string, string | string[] | undefined>): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    try {
      headers.set(key, Array.isArray(value) ? value.join(", ") : value);
    } catch {
      // an invalid header value is treated as absent
    }
  }
  return headers;
}

/**
 * Drops the credentials from a verified handshake (`auth.token`, the
 * `Authorization` and `Cookie` headers): nothing that could sign in again is
 * kept in memory or copied to other processes.
 */
export function scrubCredentials(handshake: AppSocket["handshake"]): void {
  const auth = handshake.auth as Record<string, unknown> | undefined;
  if (auth !== null && typeof auth === "object" && "token" in auth) delete auth.token;
  delete handshake.headers.authorization;
  delete handshake.headers.cookie;
}

/**
 * The handshake middleware: authenticates the socket, holds the person to
 * `MAX_SOCKETS_PER_PERSON` connections, or refuses it with a `connect_error`
 * whose `message` is the code and whose `data` is `{ code, message }`.
 */
export function authMiddleware(
  services: Services,
): (socket: AppSocket, next: (err?: ExtendedError) => void) => void {
  return (socket, next) => {
    const handshake = socket.handshake;
    const restored = (socket.data as Partial<SocketData> | undefined)?.person;
    services.authenticator.authenticate({
      headers: headersOf(handshake.headers),
      auth: handshake.auth,
      address: handshake.address,
    }).then(async (identity) => {
      // A recovered session (connection state recovery) comes back with the
      // rooms of the person it belonged to: it must be this handshake's person.
      if (socket.recovered && (restored === undefined || !samePerson(restored, identity.person))) {
        security("session_identity_mismatch", {
          address: handshake.address,
          kind: identity.person.kind,
          userId: identity.person.id,
          sessionKind: restored?.kind,
          sessionUserId: restored?.id,
        });
        throw new ServanaError("ACCESS_DENIED", "Recovered session belongs to another user", {
          details: { reason: "session_user_mismatch" },
        });
      }
      const slot = await services.members.connect(identity.person, socket.id, {
        max: services.config.maxSocketsPerPerson,
      });
      if (!slot.accepted) {
        security("too_many_connections", {
          address: handshake.address,
          kind: identity.person.kind,
          userId: identity.person.id,
          limit: services.config.maxSocketsPerPerson,
        });
        throw new ServanaError("RATE_LIMIT_EXCEEDED", "Too many connections for this account", {
          details: { reason: "too_many_connections", limit: services.config.maxSocketsPerPerson },
        });
      }
      // a socket closed before it connected never sees "disconnect": give its slot back
      socket.conn.once("close", () => {
        if (!socket.connected) {
          services.track(releaseConnection(services, identity.person, socket.id)).catch(
            (error) => log("warn", "disconnect clean-up failed", { error: String(error) }),
          );
        }
      });
      scrubCredentials(handshake);
      identities.set(socket, identity);
      // filled in place: a recovered socket's saved rooms are kept by this object (recovery.ts)
      Object.assign(
        socket.data,
        {
          person: identity.person,
          tokenKind: identity.tokenKind,
          expiresAt: identity.expiresAt,
          currentChat: socket.recovered
            ? (socket.data as Partial<SocketData>).currentChat ?? null
            : null,
        } satisfies SocketData,
      );
      next();
    }).catch(refuse);

    function refuse(error: unknown): void {
      const payload = toErrorPayload(error);
      const reason = error instanceof ServanaError
        ? String((error.details as { reason?: string } | undefined)?.reason ?? payload.code)
        : "server_error";
      if (!(error instanceof ServanaError)) {
        log("error", "handshake failed", { error: String(error) });
      }
      services.metrics.authFailures.inc({ reason });
      const err = new Error(payload.code) as ExtendedError;
      err.data = { code: payload.code, message: payload.message };
      next(err);
    }
  };
}

/** Longest delay `setTimeout` honours; longer ones fire at once (TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2_147_483_647;

/** Runs `fn` at time `at` (ms since the epoch), however far away; returns a canceller. */
function runAt(at: number, fn: () => void): () => void {
  let timer: ReturnType<typeof setTimeout>;
  function arm(): void {
    const wait = at - Date.now();
    if (wait > MAX_TIMER_MS) timer = setTimeout(arm, MAX_TIMER_MS);
    else timer = setTimeout(fn, Math.max(0, wait));
  }
  arm();
  return () => clearTimeout(timer);
}

/**
 * Schedules `tokenExpiring` and, at `exp`, `error { code: "AUTH_REQUIRED" }`
 * and the transport closed (the client sees "transport close" and reconnects
 * with whatever token it holds now; a stale one is refused at the handshake).
 */
function scheduleExpiry(socket: AppSocket, expiresAt: number | null, warnSec: number): void {
  expiryTimers.get(socket)?.();
  if (expiresAt === null) {
    expiryTimers.delete(socket);
    return;
  }
  const cancelWarn = runAt(expiresAt - warnSec * 1000, () => {
    socket.emit("tokenExpiring", { expiresAt: new Date(expiresAt).toISOString() });
  });
  const cancelExpire = runAt(expiresAt, () => {
    replyError(socket, new ServanaError("AUTH_REQUIRED", "Session expired: token expired"));
    socket.conn.close();
  });
  expiryTimers.set(socket, () => {
    cancelWarn();
    cancelExpire();
  });
}

/**
 * Brings a socket's rooms in line with its person: the connection rooms of
 * who they are now, and only the conversations they may still enter (the
 * others are left, with `userLeft` when it was the person's last socket).
 */
export async function syncRooms(ctx: EventContext, previous: Person | null): Promise<void> {
  const { socket, services } = ctx;
  const person = personOf(ctx);
  const wanted = new Set(roomsOnConnect(person));
  for (const room of [...socket.rooms]) {
    if (isConnectionRoom(room) && !wanted.has(room)) socket.leave(room);
  }
  socket.join([...wanted]);
  const groups = [...socket.rooms].map(chatGroupOfRoom).filter((id): id is number => id !== null);
  if (groups.length === 0) return;
  const found = new Map((await services.store.getChatGroups(groups)).map((g) => [g.id, g]));
  for (const id of groups) {
    const group = found.get(id);
    if (group !== undefined && canAccessChatGroup(person, group) && !isResolved(group)) continue;
    if (previous !== null || socket.recovered) {
      await exitRoom(ctx, id, { announce: true });
      socket.emit("chat:left", { chatGroupId: id, reason: "access_revoked" });
    }
  }
}

/**
 * A recovered socket comes back into the connection rooms of who it is now
 * and the conversations it had that it may still enter, with what it missed
 * in them; of the others it is told `chat:left { reason: "access_revoked" }`.
 */
async function recoverRooms(ctx: EventContext): Promise<void> {
  const { socket, services } = ctx;
  const person = personOf(ctx);
  const had = savedRooms(socket) ?? [];
  const groups = [...new Set(had.map(chatGroupOfRoom).filter((id): id is number => id !== null))];
  const found = groups.length === 0
    ? new Map<number, ChatGroup>()
    : new Map((await services.store.getChatGroups(groups)).map((g) => [g.id, g]));
  const kept: number[] = [];
  const lost: number[] = [];
  for (const id of groups) {
    const group = found.get(id);
    const open = group !== undefined && canAccessChatGroup(person, group) && !isResolved(group);
    (open ? kept : lost).push(id);
  }
  await rejoinRooms(socket, [...roomsOnConnect(person), ...kept.flatMap(chatRooms)]);
  for (const id of lost) {
    await exitRoom(ctx, id, { announce: true });
    socket.emit("chat:left", { chatGroupId: id, reason: "access_revoked" });
  }
}

/**
 * Sets a new connection up: its rooms (a recovered session's are checked
 * again), its conversations in the members registry, the expiry timers, the
 * agent's availability, and the clean-up of its disconnect.
 */
export async function startSession(ctx: EventContext): Promise<void> {
  const { socket, services } = ctx;
  // socket.io leaves every room before "disconnect": note them while they are known
  let rooms: string[] = [];
  socket.on("disconnecting", () => rooms = [...socket.rooms]);
  socket.on("disconnect", () => void services.track(endSession(ctx, rooms)));
  scheduleExpiry(socket, socket.data.expiresAt, services.config.auth.expiryWarningSec);
  if (socket.recovered) await recoverRooms(ctx);
  else socket.join(roomsOnConnect(personOf(ctx)));
  for (const room of [...socket.rooms]) {
    const id = chatGroupOfRoom(room);
    if (id === null || !socket.connected) continue;
    await services.members.join(id, personOf(ctx), socket.id);
    // closed meanwhile: its disconnect clean-up has run without this entry
    if (!socket.connected) await services.members.leave(id, personOf(ctx), socket.id);
  }
  await availabilityOnConnect(ctx);
}

/** What a disconnect leaves behind goes: timers, throttles, presence, memberships, the connection. */
async function endSession(ctx: EventContext, rooms: readonly string[]): Promise<void> {
  const { socket, services } = ctx;
  const person = personOf(ctx);
  expiryTimers.get(socket)?.();
  expiryTimers.delete(socket);
  identities.delete(socket);
  services.typing.forget(personKey(person));
  services.securityLog.forget(socket.id);
  presenceOnDisconnect(ctx);
  try {
    // a dropped socket leaves silently: with connection state recovery it comes back
    for (const room of rooms) {
      const id = chatGroupOfRoom(room);
      if (id !== null) await services.members.leave(id, person, socket.id);
    }
    await releaseConnection(services, person, socket.id);
  } catch (error) {
    log("warn", "disconnect clean-up failed", { error: String(error) });
  }
}

/** Gives a connection's slot back; the person's last one takes an agent offline. */
async function releaseConnection(
  services: Services,
  person: Person,
  socketId: string,
): Promise<void> {
  const { last } = await services.members.disconnect(person, socketId);
  if (last) await availabilityOnLastDisconnect(services, person);
}

/**
 * `refreshToken { token }`: its own budget → the new token must name the
 * same person → the person is read again, rooms follow a role or department
 * change, expiry moves.
 */
export async function refreshSession(input: { token: string }, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  await enforceRateLimit(ctx, "refresh", event);
  const current = identities.get(socket);
  if (!current) throw new ServanaError("AUTH_REQUIRED");
  const next = await services.authenticator.refresh(current, input.token, {
    address: socket.handshake.address,
    userAgent: socket.handshake.headers["user-agent"],
  });
  identities.set(socket, next);
  const previous = socket.data.person;
  socket.data.person = next.person;
  socket.data.expiresAt = next.expiresAt;
  await syncRooms(ctx, previous);
  scheduleExpiry(socket, next.expiresAt, services.config.auth.expiryWarningSec);
  log("debug", "token refreshed", { kind: next.person.kind, userId: next.person.id });
  return { expiresAt: next.expiresAt === null ? null : new Date(next.expiresAt).toISOString() };
}

/** Whether a socket is in a conversation's room (tests, diagnostics). */
export function inConversation(socket: AppSocket, chatGroupId: number): boolean {
  return socket.rooms.has(chatRoom(chatGroupId));
}
