/**
 * The session of a connection: the handshake middleware (who is this?), the
 * rooms joined on connection, token expiry (`tokenExpiring`, then
 * `AUTH_REQUIRED` and disconnect) and `refreshToken`, and the guard that
 * answers unknown events with INVALID_DATA.
 *
 * @module
 */

import type { ExtendedError } from "socket.io";
import { z } from "zod";
import { roomsOnConnect } from "../access.ts";
import type { Identity } from "../auth/mod.ts";
import { ServanaError, toErrorPayload } from "../errors.ts";
import { log, security } from "../log.ts";
import {
  type AppSocket,
  enforceRateLimit,
  type EventContext,
  onEvent,
  replyError,
  type Services,
  type SocketData,
} from "./context.ts";

/** `refreshToken { token }` */
export const refreshTokenSchema = z.object({ token: z.string().min(1).max(16_384) });

/** Events a client may send; anything else is answered with INVALID_DATA. */
export const CLIENT_EVENTS: ReadonlySet<string> = new Set([
  "userOnline",
  "userHeartbeat",
  "userOffline",
  "getOnlineUsers",
  "joinChatGroup",
  "leaveRoom",
  "sendMessage",
  "getMessages",
  "typing",
  "stopTyping",
  "getRoomStats",
  "disconnectUser",
  "refreshToken",
]);

const identities = new WeakMap<AppSocket, Identity>();

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
 * The handshake middleware: authenticates the socket or refuses it with a
 * `connect_error` whose `message` is the code and whose `data` is
 * `{ code, message }`.
 */
export function authMiddleware(
  services: Pick<Services, "authenticator" | "metrics">,
): (socket: AppSocket, next: (err?: ExtendedError) => void) => void {
  return (socket, next) => {
    const handshake = socket.handshake;
    services.authenticator.authenticate({
      headers: headersOf(handshake.headers),
      auth: handshake.auth,
      address: handshake.address,
    }).then((identity) => {
      // A recovered session (connection state recovery) comes back with the
      // rooms of the user it belonged to: it must be this handshake's user.
      const restoredUserId = (socket.data as Partial<SocketData> | undefined)?.user?.id;
      if (socket.recovered && restoredUserId !== identity.user.id) {
        security("session_identity_mismatch", {
          address: handshake.address,
          userId: identity.user.id,
          sessionUserId: restoredUserId,
        });
        refuse(
          new ServanaError("ACCESS_DENIED", "Recovered session belongs to another user", {
            details: { reason: "session_user_mismatch" },
          }),
        );
        return;
      }
      identities.set(socket, identity);
      socket.data = { user: identity.user, expiresAt: identity.expiresAt };
      next();
    }, refuse);

    function refuse(error: unknown): void {
      const payload = toErrorPayload(error);
      const reason = error instanceof ServanaError
        ? String((error.details as { reason?: string } | undefined)?.reason ?? payload.code)
        : "server_error";
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

/** Schedules `tokenExpiring` and the expiry disconnect; returns a canceller. */
function scheduleExpiry(socket: AppSocket, expiresAt: number | null, warnSec: number): () => void {
  if (expiresAt === null) return () => {};
  const cancelWarn = runAt(expiresAt - warnSec * 1000, () => {
    socket.emit("tokenExpiring", { expiresAt: new Date(expiresAt).toISOString() });
  });
  const cancelExpire = runAt(expiresAt, () => {
    replyError(socket, new ServanaError("AUTH_REQUIRED", "Session expired: token expired"));
    socket.disconnect(true);
  });
  return () => {
    cancelWarn();
    cancelExpire();
  };
}

/**
 * Sets a new connection up: joins its rooms, guards unknown events, starts
 * the expiry timers and registers `refreshToken`.
 */
export function startSession(ctx: EventContext): void {
  const { socket, user, services } = ctx;
  socket.join(roomsOnConnect(user));

  socket.use((packet, next) => {
    const event = packet[0];
    if (typeof event === "string" && CLIENT_EVENTS.has(event)) return next();
    services.metrics.errors.inc({ code: "INVALID_DATA" });
    const name = typeof event === "string" ? event.slice(0, 64) : String(typeof event);
    // an ack, if the client passed one, is the last argument
    const last = packet.at(-1);
    replyError(
      socket,
      new ServanaError("INVALID_DATA", `Unknown event: ${name}`, { details: { event: name } }),
      typeof last === "function" ? last : undefined,
    );
  });

  let cancelExpiry = scheduleExpiry(
    socket,
    socket.data.expiresAt,
    services.config.auth.expiryWarningSec,
  );
  socket.on("disconnect", () => {
    cancelExpiry();
    identities.delete(socket);
    services.typing.forget(user.id);
  });

  onEvent(ctx, "refreshToken", {
    schema: refreshTokenSchema,
    handler: async (payload) => {
      await enforceRateLimit(ctx, "status", "refreshToken");
      const current = identities.get(socket);
      if (!current) throw new ServanaError("AUTH_REQUIRED");
      const next = await services.authenticator.refresh(current, payload.token, {
        address: socket.handshake.address,
        userAgent: socket.handshake.headers["user-agent"],
      });
      identities.set(socket, next);
      socket.data.expiresAt = next.expiresAt;
      cancelExpiry();
      cancelExpiry = scheduleExpiry(socket, next.expiresAt, services.config.auth.expiryWarningSec);
      log("debug", "token refreshed", { userId: user.id });
      return { expiresAt: next.expiresAt === null ? null : new Date(next.expiresAt).toISOString() };
    },
  });
}
