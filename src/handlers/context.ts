/**
 * What every event handler works with: the shared services, the socket's
 * verified user, and the pipeline helpers (payload parsing, identity check,
 * rate limit, error reply) so that each handler reads as
 * parse → access check → rate limit → store → broadcast → ack.
 *
 * @module
 */

import type { DefaultEventsMap, Server, Socket } from "socket.io";
import { z } from "zod";
import { userTypeMatches } from "../access.ts";
import type { Authenticator } from "../auth/mod.ts";
import type { Config } from "../config.ts";
import { type ErrorPayload, ServanaError, toErrorPayload } from "../errors.ts";
import { log, security } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Presence } from "../presence.ts";
import type { PresenceFeed } from "../presence_feed.ts";
import type { RateLimiter, TokenBucket, TypingThrottle } from "../rate_limit.ts";
import type { ChatStore, User } from "../store/mod.ts";

/** Per-process services the handlers share. */
export interface Services {
  config: Config;
  io: Server;
  store: ChatStore;
  presence: Presence;
  presenceFeed: PresenceFeed;
  limiter: RateLimiter;
  typing: TypingThrottle;
  authenticator: Authenticator;
  metrics: Metrics;
  /** Keeps a promise until it settles, so shutdown can wait for in-flight work. */
  track: <T>(work: Promise<T>) => Promise<T>;
}

/** What a socket carries after the handshake (`socket.data`). */
export interface SocketData {
  user: User;
  /** Token expiry, ms since the epoch, or null. */
  expiresAt: number | null;
}

/** A socket of this service. */
export type AppSocket = Socket<DefaultEventsMap, DefaultEventsMap, DefaultEventsMap, SocketData>;

/** What one event handler gets besides its parsed payload. */
export interface EventContext {
  socket: AppSocket;
  user: User;
  services: Services;
  /** This socket's budget for read requests. */
  reads: TokenBucket;
}

/** An ack reply: `{ ok: true, ... }` or `{ ok: false, code, message, details? }`. */
export type AckReply = { ok: true; [key: string]: unknown } | ({ ok: false } & ErrorPayload);

/** A handler: returns extra ack fields on success, throws a ServanaError otherwise. */
export type EventHandler<T> = (
  payload: T,
  ctx: EventContext,
) => Promise<Record<string, unknown> | void> | Record<string, unknown> | void;

/** Positive safe integer id (user, chat group, department). */
export const idSchema = z.number({ message: "expected a number" }).int("expected an integer")
  .positive("expected a positive id").max(Number.MAX_SAFE_INTEGER, "id too large");

/** The seed's `userType`. */
export const userTypeSchema = z.enum(["agent", "client", "admin"], {
  message: "expected 'agent' or 'client'",
});

/** A payload-less event (`getOnlineUsers`, `getRoomStats`): nothing, null or an empty object. */
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

/**
 * Refuses a payload whose `userId`/`userType` claims another identity than
 * the token's (ACCESS_DENIED, logged as suspicious).
 */
export function assertSelf(
  ctx: EventContext,
  event: string,
  claimed: { userId?: number; userType?: string },
): void {
  const { user, socket } = ctx;
  const idMismatch = claimed.userId !== undefined && claimed.userId !== user.id;
  const typeMismatch = claimed.userType !== undefined &&
    !userTypeMatches(user.role, claimed.userType);
  if (!idMismatch && !typeMismatch) return;
  security("identity_mismatch", {
    socketEvent: event,
    userId: user.id,
    role: user.role,
    claimedUserId: claimed.userId,
    claimedUserType: claimed.userType,
    address: socket.handshake.address,
    socketId: socket.id,
  });
  throw new ServanaError("ACCESS_DENIED", "Payload identity does not match the authenticated user");
}

/** Which limit an event counts against. */
export type LimitKind = "message" | "status";

/** Consumes one unit of the user's limit or throws RATE_LIMIT_EXCEEDED (logged once per window). */
export async function enforceRateLimit(
  ctx: EventContext,
  kind: LimitKind,
  event: string,
): Promise<void> {
  const { config, limiter, metrics } = ctx.services;
  const limits = config.rateLimits;
  const rule = {
    limit: kind === "message" ? limits.messagesPerWindow : limits.statusPerWindow,
    windowMs: limits.windowMs,
  };
  const result = await limiter.consume([kind, ctx.user.id], rule);
  if (result.allowed) return;
  metrics.rateLimitHits.inc({ event });
  if (result.firstDenial) {
    security("rate_limit", {
      socketEvent: event,
      kind,
      userId: ctx.user.id,
      limit: rule.limit,
      windowMs: rule.windowMs,
      address: ctx.socket.handshake.address,
    });
  }
  throw new ServanaError(
    "RATE_LIMIT_EXCEEDED",
    kind === "message" ? "Too many messages, please slow down" : "Too many status updates",
    { details: { retryAfterMs: result.retryAfterMs } },
  );
}

/** Takes one read request from the socket's budget or throws RATE_LIMIT_EXCEEDED. */
export function enforceReadBudget(ctx: EventContext, event: string): void {
  const retryAfterMs = ctx.reads.take();
  if (retryAfterMs === 0) return;
  ctx.services.metrics.rateLimitHits.inc({ event });
  throw new ServanaError("RATE_LIMIT_EXCEEDED", "Too many requests", {
    details: { retryAfterMs },
  });
}

/** Sends an `error` event and, when given, a failed ack. */
export function replyError(
  socket: AppSocket,
  error: unknown,
  ack?: (reply: AckReply) => void,
): void {
  const payload = toErrorPayload(error);
  socket.emit("error", payload);
  ack?.({ ok: false, ...payload });
}

/**
 * Registers one event: the payload is parsed with `schema` before anything
 * else; success acks `{ ok: true, ...result }`; any failure emits `error`
 * and acks `{ ok: false, code, message }`. Nothing thrown escapes.
 */
export function onEvent<S extends z.ZodType>(
  ctx: EventContext,
  event: string,
  options: { schema: S; handler: EventHandler<z.infer<S>> },
): void {
  const { socket, services } = ctx;
  socket.on(event, (...args: unknown[]) => void services.track(handle(args)));
  async function handle(args: unknown[]): Promise<void> {
    const ack = typeof args.at(-1) === "function"
      ? args.pop() as (reply: AckReply) => void
      : undefined;
    const started = performance.now();
    services.metrics.messagesIn.inc({ event });
    try {
      const payload = parsePayload(options.schema, args[0]);
      const result = await options.handler(payload, ctx);
      ack?.({ ok: true, ...(result ?? {}) });
    } catch (error) {
      if (error instanceof ServanaError) {
        services.metrics.errors.inc({ code: error.code });
      } else {
        services.metrics.errors.inc({ code: "SERVER_ERROR" });
        log("error", "handler failed", { event, userId: ctx.user.id, error: String(error) });
      }
      replyError(socket, error, ack);
    } finally {
      services.metrics.eventLatency.observe({ event }, (performance.now() - started) / 1000);
    }
  }
}
