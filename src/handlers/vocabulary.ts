/**
 * The events clients may send, in two vocabularies mapped onto the same
 * operations: the seed document's (`joinChatGroup`, `sendMessage { message,
 * chatGroupId, clientId }`, …) and the one Servana's shipping apps speak
 * (`chat:join`, `sendMessage { chat_body, chat_group_id }`, `presence:*`, …).
 * Each entry is a payload schema (parsing the payload into the operation's
 * input) and the operation; the apps' entries add the replies the apps
 * listen for (`chat:left`, `presence:heartbeat:ack`, …). Events sharing a name
 * (`sendMessage`, `typing`, `stopTyping`) take either shape.
 *
 * @module
 */

import { z } from "zod";
import { AVAILABILITY_STATUSES, type AvailabilityStatus } from "../availability.ts";
import { disconnectUser, getRoomStats } from "./admin.ts";
import {
  allAvailability,
  availabilityHeartbeat,
  availableByDepartment,
  updateAvailability,
} from "./availability.ts";
import { getMessages, joinChat, leaveChat, sendChatMessage, type SendInput } from "./chat.ts";
import { idSchema, noPayloadSchema, userTypeSchema } from "./context.ts";
import { bind, type Binding } from "./dispatch.ts";
import { refreshSession } from "./session.ts";
import { getOnlineUsers, userHeartbeat, userOffline, userOnline } from "./status.ts";
import { relayTyping } from "./typing.ts";

const optionalId = idSchema.optional();
const senderIds = idSchema.nullable().optional();

/**
 * A schema choosing between payload shapes by `pick`, reporting only the
 * chosen shape's issues.
 */
function byShape<T>(pick: (payload: unknown) => z.ZodType<T>): z.ZodType<T> {
  return z.unknown().transform((payload, ctx) => {
    const result = pick(payload).safeParse(payload);
    if (result.success) return result.data;
    for (const issue of result.error.issues) {
      ctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
    }
    return z.NEVER;
  }) as unknown as z.ZodType<T>;
}

/** Whether a payload is the apps' `sendMessage` (`chat_body`, `chat_group_id`). */
function isAppMessage(payload: unknown): boolean {
  return typeof payload === "object" && payload !== null &&
    ("chat_body" in payload || "chat_group_id" in payload);
}

const clientMessageId = z.string().min(1).max(128).optional();

/** The seed's `sendMessage { message, chatGroupId, clientId, clientMessageId? }`. */
export const contractMessageSchema = z.object({
  message: z.string({ message: "expected a string" }),
  chatGroupId: idSchema,
  clientId: idSchema,
  clientMessageId,
}).transform((p) => ({
  chatGroupId: p.chatGroupId,
  text: p.message,
  textField: "message" as const,
  clientId: p.clientId,
  clientMessageId: p.clientMessageId,
  joinIfNeeded: false,
}));

/**
 * The apps' `sendMessage { chat_body, chat_group_id, sys_user_id?, client_id? }`:
 * the sender comes from the token, the id fields are not used.
 */
export const appMessageSchema = z.object({
  chat_body: z.string({ message: "expected a string" }),
  chat_group_id: idSchema,
  sys_user_id: senderIds,
  client_id: senderIds,
  clientMessageId,
}).transform((p) => ({
  chatGroupId: p.chat_group_id,
  text: p.chat_body,
  textField: "chat_body" as const,
  clientMessageId: p.clientMessageId,
  joinIfNeeded: true,
}));

/** `typing` / `stopTyping` in either vocabulary: `{ chatGroupId, userType?, userId?, userName? }`. */
const typingSchema = z.object({
  chatGroupId: idSchema,
  userType: userTypeSchema.optional(),
  userId: optionalId,
  userName: z.string().max(200).optional(),
});

const claimOf = (p: { userId?: number; userType?: "agent" | "client" | "admin" }) => ({
  claim: { userId: p.userId, userType: p.userType },
});

const statusSchema = z.object({
  status: z.enum(AVAILABILITY_STATUSES as [AvailabilityStatus, ...AvailabilityStatus[]], {
    message: `expected ${AVAILABILITY_STATUSES.join(", ")}`,
  }),
});

/** Every event a client may send, both vocabularies. */
export const EVENTS: ReadonlyMap<string, Binding> = new Map<string, Binding>([
  // the seed's user status events
  [
    "userOnline",
    bind({
      schema: z.object({ userId: idSchema, userType: userTypeSchema }).transform(claimOf),
      run: userOnline,
    }),
  ],
  [
    "userHeartbeat",
    bind({
      schema: z.object({ userId: idSchema, timestamp: z.number().finite().optional() })
        .transform(claimOf),
      run: userHeartbeat,
    }),
  ],
  [
    "userOffline",
    bind({
      schema: z.object({ userId: idSchema }).transform(claimOf),
      run: userOffline,
    }),
  ],
  ["getOnlineUsers", bind({ schema: noPayloadSchema, run: getOnlineUsers })],

  // chat: the seed's and the apps' names for the same operations
  [
    "joinChatGroup",
    bind({
      schema: z.object({
        groupId: idSchema,
        userType: userTypeSchema.optional(),
        userId: optionalId,
      })
        .transform((p) => ({ chatGroupId: p.groupId, ...claimOf(p), switchRooms: false })),
      run: joinChat,
    }),
  ],
  [
    "chat:join",
    bind({
      schema: z.object({
        chatGroupId: idSchema,
        userType: userTypeSchema.optional(),
        userId: optionalId,
      }).transform((p) => ({ chatGroupId: p.chatGroupId, ...claimOf(p), switchRooms: true })),
      run: joinChat,
    }),
  ],
  ["leaveRoom", bind({ schema: z.object({ chatGroupId: idSchema }), run: leaveChat })],
  [
    "chat:leave",
    bind({
      schema: z.object({ chatGroupId: idSchema }),
      run: leaveChat,
      reply: (ctx, input) => ctx.socket.emit("chat:left", { chatGroupId: input.chatGroupId }),
    }),
  ],
  [
    "sendMessage",
    bind({
      schema: byShape<SendInput>((p) => isAppMessage(p) ? appMessageSchema : contractMessageSchema),
      run: sendChatMessage,
      failureEvent: (p) => isAppMessage(p) ? "messageError" : "error",
    }),
  ],
  [
    "getMessages",
    bind({
      schema: z.object({
        chatGroupId: idSchema,
        before: optionalId,
        limit: z.number().int().min(1).max(200).optional(),
      }),
      run: getMessages,
    }),
  ],
  [
    "typing",
    bind({
      schema: typingSchema.transform((p) => ({
        chatGroupId: p.chatGroupId,
        isTyping: true,
        ...claimOf(p),
      })),
      run: relayTyping,
    }),
  ],
  [
    "stopTyping",
    bind({
      schema: typingSchema.transform((p) => ({
        chatGroupId: p.chatGroupId,
        isTyping: false,
        ...claimOf(p),
      })),
      run: relayTyping,
    }),
  ],
  // the web app's dead `resolveChat`: resolving happens over REST
  [
    "resolveChat",
    bind({
      schema: z.unknown(),
      run: () => ({ ignored: true }),
    }),
  ],

  // the apps' agent availability
  ["presence:update", bind({ schema: statusSchema, run: updateAvailability })],
  [
    "presence:heartbeat",
    bind({
      schema: noPayloadSchema,
      run: availabilityHeartbeat,
      reply: (ctx, _input, result) =>
        ctx.socket.emit("presence:heartbeat:ack", { timestamp: result?.timestamp }),
    }),
  ],
  [
    "presence:getAll",
    bind({
      schema: noPayloadSchema,
      run: allAvailability,
      reply: (ctx, _input, result) => ctx.socket.emit("presence:all", result?.presences ?? {}),
    }),
  ],
  [
    "presence:getAvailableByDepartment",
    bind({
      schema: noPayloadSchema,
      run: availableByDepartment,
      reply: (ctx, _input, result) => ctx.socket.emit("presence:availableByDepartment", result),
    }),
  ],

  // admins and the session
  ["getRoomStats", bind({ schema: noPayloadSchema, run: getRoomStats })],
  [
    "disconnectUser",
    bind({
      schema: z.object({
        userId: idSchema,
        userType: userTypeSchema,
        reason: z.string().max(200).optional(),
      }),
      run: disconnectUser,
    }),
  ],
  [
    "refreshToken",
    bind({
      schema: z.object({ token: z.string().min(1).max(16_384) }),
      run: refreshSession,
    }),
  ],
]);
