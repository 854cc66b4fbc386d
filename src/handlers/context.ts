/**
 * What every event handler works with: the shared services, the socket's
 * verified person, and the pipeline's gates (payload schemas, identity
 * check, rate limits, error replies), so that each operation reads as
 * parse → access check → rate limit → store → broadcast → ack.
 *
 * @module
 */

import type { BackendCache } from "../backend_cache.ts";
import type { DefaultEventsMap, Server, Socket } from "socket.io";
import { z } from "zod";
import { claimMatches } from "../access.ts";
import type { Authenticator, TokenKind } from "../auth/mod.ts";
import type { Availability } from "../availability.ts";
import type { Config } from "../config.ts";
import { type ErrorPayload, ServanaError, toErrorPayload } from "../errors.ts";
import type { LogFields, LogThrottle } from "../log.ts";
import type { Membership } from "../membership.ts";
import type { Metrics } from "../metrics.ts";
import type { Presence } from "../presence.ts";
import type { PresenceFeed } from "../presence_feed.ts";
import type { QueueDrain } from "../queue.ts";
import type { RateLimiter, TypingThrottle } from "../rate_limit.ts";
import { type ChatStore, type Person, personKey } from "../store/mod.ts";

/** Per-process services the handlers share. */
export interface Services {
  config: Config;
  io: Server;
  store: ChatStore;
  presence: Presence;
  presenceFeed: PresenceFeed;
  /** Sliding-window limits in KV, shared by every process. */
  limiter: RateLimiter;
  typing: TypingThrottle;
  authenticator: Authenticator;
  /** Connections and conversation members across processes. */
  members: Membership;
  /** Agents' availability (and the backend's Redis presence keys). */
  availability: Availability;
  queue: QueueDrain;
  /** Servana's REST cache in Redis, whose stale keys our writes delete. */
  backendCache: BackendCache;
  /** Security lines, at most one per socket and event per window. */
  securityLog: LogThrottle;
  metrics: Metrics;
  /** Keeps a promise until it settles, so shutdown can wait for in-flight work. */
  track: <T>(work: Promise<T>) => Promise<T>;
}

/** What a socket carries after the handshake (`socket.data`). No credential is kept. */
export interface SocketData {
  person: Person;
  /** Which kind of token named the person. */
  tokenKind: TokenKind;
  /** Token expiry, ms since the epoch, or null. */
  expiresAt: number | null;
  /** The conversation last joined with `chat:join` (the apps switch rooms), or null. */
  currentChat: number | null;
}

/** A socket of this service. */
export type AppSocket = Socket<DefaultEventsMap, DefaultEventsMap, DefaultEventsMap, SocketData>;

/** What one operation gets besides its input. */
export interface EventContext {
  socket: AppSocket;
  services: Services;
}

/** The person a context's socket belongs to (it changes when `refreshToken` re-reads it). */
export function personOf(ctx: EventContext): Person {
  return ctx.socket.data.person;
}

/** An ack reply: `{ ok: true, ... }` or `{ ok: false, code, message, details? }`. */
export type AckReply = { ok: true; [key: string]: unknown } | ({ ok: false } & ErrorPayload);

/** Positive safe integer id (person, chat group, department); JSON numbers only. */
export const idSchema = z.number({ message: "expected a number" }).int("expected an integer")
  .positive("expected a positive id").max(Number.MAX_SAFE_INTEGER, "id too large");

/** The seed's `userType`. */
export const userTypeSchema = z.enum(["agent", "client", "admin"], {
  message: "expected 'agent' or 'client'",
});

/** A payload-less event: nothing, null or an empty object. */
export const noPayloadSchema = z.union([z.undefined(), z.null(), z.object({}).strict()], {
  message: "expected no payload",
});

/** Longest `field` / `message` of one issue sent back (zod may quote client-chosen keys). */
const MAX_ISSUE_TEXT = 200;

function clip(text: string): string {
  return text.length > MAX_ISSUE_TEXT ? `${text.slice(0, MAX_ISSUE_TEXT)}…` : text;
}

/** Turns a zod error into INVALID_DATA naming the fields. */
export function invalidData(error: z.ZodError): ServanaError {
  const issues = error.issues.slice(0, 10).map((issue) => ({
    field: issue.path.length ? clip(issue.path.join(".")) : "(payload)",
    message: clip(issue.message),
  }));
  const first = issues[0];
  return new ServanaError("INVALID_DATA", `Invalid ${first.field}: ${first.message}`, {
    details: { issues },
  });
}

/**
 * INVALID_DATA for one field found wrong after parsing:
 * `Invalid ${field}: ${summary}` with `details.issues[{ field, message: issue }]`.
 */
export function invalidField(field: string, summary: string, issue: string): ServanaError {
  return new ServanaError("INVALID_DATA", `Invalid ${field}: ${summary}`, {
    details: { issues: [{ field, message: issue }] },
  });
}

/** Parses a payload or throws INVALID_DATA. */
export function parsePayload<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw invalidData(parsed.error);
  return parsed.data;
}

/** Writes a security line about this socket, at most once per event per window. */
export function securityEvent(ctx: EventContext, event: string, fields: LogFields): void {
  const person = personOf(ctx);
  ctx.services.securityLog.security(ctx.socket.id, event, {
    kind: person.kind,
    userId: person.id,
    role: person.role,
    address: ctx.socket.handshake.address,
    socketId: ctx.socket.id,
    ...fields,
  });
}

/**
 * Refuses a payload whose `userId`/`userType` claims another person than
 * the token's (ACCESS_DENIED, logged as `identity_mismatch`).
 */
export function assertSelf(
  ctx: EventContext,
  event: string,
  claimed: { userId?: number; userType?: string },
): void {
  if (claimMatches(personOf(ctx), claimed)) return;
  securityEvent(ctx, "identity_mismatch", {
    socketEvent: event,
    claimedUserId: claimed.userId,
    claimedUserType: claimed.userType,
  });
  throw new ServanaError("ACCESS_DENIED", "Payload identity does not match the authenticated user");
}

/** Refuses an operation on a conversation (ACCESS_DENIED, logged as `access_denied`). */
export function denyAccess(
  ctx: EventContext,
  event: string,
  options: { chatGroupId?: number; reason: string; message?: string },
): never {
  securityEvent(ctx, "access_denied", {
    socketEvent: event,
    reason: options.reason,
    chatGroupId: options.chatGroupId,
  });
  throw new ServanaError(
    "ACCESS_DENIED",
    options.message ?? "Access denied: you do not have access to this chat group",
    { details: { reason: options.reason } },
  );
}

/** Which budget an event counts against (each per person, in KV). */
export type LimitKind = "message" | "status" | "refresh" | "read";

const LIMIT_MESSAGES: Readonly<Record<LimitKind, string>> = {
  message: "Too many messages, please slow down",
  status: "Too many status updates",
  refresh: "Too many token refreshes",
  read: "Too many requests",
};

/** The window's limit of a budget. */
function limitOf(config: Config, kind: LimitKind): number {
  const limits = config.rateLimits;
  switch (kind) {
    case "message":
      return limits.messagesPerWindow;
    case "status":
      return limits.statusPerWindow;
    case "refresh":
      return limits.refreshPerWindow;
    case "read":
      return limits.readsPerMinute;
  }
}

/**
 * Consumes one unit of the person's budget or throws RATE_LIMIT_EXCEEDED
 * with `details.retryAfterMs` (logged once per window). Reads count per
 * minute, the others per `RATE_LIMIT_WINDOW`.
 */
export async function enforceRateLimit(
  ctx: EventContext,
  kind: LimitKind,
  event: string,
): Promise<void> {
  const { config, limiter, metrics } = ctx.services;
  const rule = {
    limit: limitOf(config, kind),
    windowMs: kind === "read" ? 60_000 : config.rateLimits.windowMs,
  };
  const result = await limiter.consume([kind, personKey(personOf(ctx))], rule);
  if (result.allowed) return;
  metrics.rateLimitHits.inc({ event });
  if (result.firstDenial) {
    securityEvent(ctx, "rate_limit", {
      socketEvent: event,
      limitKind: kind,
      limit: rule.limit,
      windowMs: rule.windowMs,
    });
  }
  throw new ServanaError("RATE_LIMIT_EXCEEDED", LIMIT_MESSAGES[kind], {
    details: { retryAfterMs: result.retryAfterMs },
  });
}

/** Sends a failure event (default `error`) and, when given, a failed ack. */
export function replyError(
  socket: AppSocket,
  error: unknown,
  options: { ack?: (reply: AckReply) => void; event?: string } = {},
): void {
  const payload = toErrorPayload(error);
  if (options.event === "messageError") {
    // the apps read `message`, the web app also `error` or `details`
    socket.emit("messageError", { ...payload, error: payload.message });
  } else {
    socket.emit("error", payload);
  }
  options.ack?.({ ok: false, ...payload });
}
