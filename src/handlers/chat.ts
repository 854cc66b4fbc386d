/**
 * Chat events: `joinChatGroup`, `leaveRoom`, `sendMessage`, `getMessages`.
 *
 * @module
 */

import sanitizeHtml from "sanitize-html";
import { z } from "zod";
import { canAccessChatGroup, chatRoom, deptRoom, userRoom } from "../access.ts";
import { ServanaError } from "../errors.ts";
import { security } from "../log.ts";
import type { ChatGroup, ChatMessage, User } from "../store/mod.ts";
import {
  assertSelf,
  enforceRateLimit,
  enforceReadBudget,
  type EventContext,
  idSchema,
  invalidField,
  onEvent,
  userTypeSchema,
} from "./context.ts";

/** `joinChatGroup { groupId, userType, userId }` (the seed spells it `groupId` here). */
export const joinChatGroupSchema = z.object({
  groupId: idSchema,
  userType: userTypeSchema.optional(),
  userId: idSchema.optional(),
});
/** `leaveRoom { chatGroupId }` */
export const leaveRoomSchema = z.object({ chatGroupId: idSchema });
/** `sendMessage { message, chatGroupId, clientId, clientMessageId? }` */
export const sendMessageSchema = z.object({
  message: z.string({ message: "expected a string" }),
  chatGroupId: idSchema,
  clientId: idSchema,
  clientMessageId: z.string().min(1).max(128).optional(),
});
/** `getMessages { chatGroupId, before?, limit? }` */
export const getMessagesSchema = z.object({
  chatGroupId: idSchema,
  before: idSchema.optional(),
  limit: z.number().int().min(1).max(200).optional(),
});

const SANITIZE_OPTIONS: sanitizeHtml.IOptions = {
  allowedTags: [],
  allowedAttributes: {},
  disallowedTagsMode: "discard",
};

/**
 * Sanitizes chat text against XSS: every tag is removed (scripts and styles
 * with their content) and the remaining text is HTML-escaped.
 */
export function sanitizeMessage(text: string): string {
  return sanitizeHtml(text, SANITIZE_OPTIONS).trim();
}

/** The seed's `receiveMessage` payload for a stored message. */
export function receiveMessagePayload(message: ChatMessage, sender: User) {
  return {
    chat_id: message.id,
    chat_message: message.message,
    chat_created_at: message.createdAt,
    sender_type: message.senderType,
    chatGroupId: message.chatGroupId,
    sender: {
      userId: sender.id,
      profile: { prof_firstname: sender.firstName, prof_lastname: sender.lastName },
    },
  };
}

async function loadGroup(ctx: EventContext, chatGroupId: number): Promise<ChatGroup> {
  const group = await ctx.services.store.getChatGroup(chatGroupId);
  if (!group) throw new ServanaError("ROOM_NOT_FOUND", `Chat group ${chatGroupId} does not exist`);
  return group;
}

function denyAccess(ctx: EventContext, event: string, chatGroupId: number, reason: string): never {
  security("access_denied", {
    socketEvent: event,
    reason,
    chatGroupId,
    userId: ctx.user.id,
    role: ctx.user.role,
    address: ctx.socket.handshake.address,
  });
  throw new ServanaError("ACCESS_DENIED", "You do not have access to this chat group");
}

/** User ids of the other sockets in a chat room, across every server process. */
async function otherMembers(ctx: EventContext, room: string): Promise<(number | undefined)[]> {
  const sockets = await ctx.services.io.in(room).fetchSockets();
  return sockets.filter((s) => s.id !== ctx.socket.id)
    .map((s) => (s.data as { user?: User }).user?.id);
}

/** Registers the chat events on a socket. */
export function registerChatHandlers(ctx: EventContext): void {
  const { socket, user, services } = ctx;

  onEvent(ctx, "joinChatGroup", {
    schema: joinChatGroupSchema,
    handler: async (payload) => {
      assertSelf(ctx, "joinChatGroup", payload);
      enforceReadBudget(ctx, "joinChatGroup");
      const group = await loadGroup(ctx, payload.groupId);
      if (!canAccessChatGroup(user, group)) {
        denyAccess(ctx, "joinChatGroup", group.id, "not_allowed");
      }
      if (group.status !== "active") {
        throw new ServanaError("ROOM_INACTIVE", `Chat group ${group.id} is closed`);
      }
      const room = chatRoom(group.id);
      const already = socket.rooms.has(room);
      const others = await otherMembers(ctx, room);
      socket.join(room);
      const members = new Set([...others, user.id]).size;
      socket.emit("joinedRoom", {
        chatGroupId: group.id,
        roomInfo: { status: group.status, memberCount: members },
      });
      // one notice per user: not for another tab of someone already in the room
      if (!already && !others.includes(user.id)) {
        socket.to(room).emit("userJoined", {
          userType: user.role,
          userId: user.id,
          chatGroupId: group.id,
        });
      }
      return { chatGroupId: group.id, memberCount: members };
    },
  });

  onEvent(ctx, "leaveRoom", {
    schema: leaveRoomSchema,
    handler: async (payload) => {
      const room = chatRoom(payload.chatGroupId);
      if (!socket.rooms.has(room)) return { left: false };
      socket.leave(room);
      // the user is still there in another tab: nobody left
      if ((await otherMembers(ctx, room)).includes(user.id)) return { left: true };
      services.typing.forget(user.id, payload.chatGroupId);
      socket.to(room).emit("userLeft", {
        userType: user.role,
        userId: user.id,
        chatGroupId: payload.chatGroupId,
      });
      return { left: true };
    },
  });

  onEvent(ctx, "sendMessage", {
    schema: sendMessageSchema,
    handler: async (payload) => {
      const max = services.config.maxMessageLength;
      if (payload.message.length > max) {
        throw invalidField("message", `longer than ${max} characters`, `at most ${max} characters`);
      }
      const text = sanitizeMessage(payload.message);
      if (text.length === 0) {
        throw invalidField("message", "empty after sanitizing", "must contain text");
      }
      const room = chatRoom(payload.chatGroupId);
      if (!socket.rooms.has(room)) {
        denyAccess(ctx, "sendMessage", payload.chatGroupId, "not_a_member");
      }
      const group = await loadGroup(ctx, payload.chatGroupId);
      if (!canAccessChatGroup(user, group)) {
        denyAccess(ctx, "sendMessage", group.id, "not_allowed");
      }
      if (group.status !== "active") {
        throw new ServanaError("ROOM_INACTIVE", `Chat group ${group.id} is closed`);
      }
      if (payload.clientId !== group.clientId) {
        throw invalidField(
          "clientId",
          "not the customer of this chat group",
          "does not match the chat group",
        );
      }
      await enforceRateLimit(ctx, "message", "sendMessage");

      let stored;
      try {
        stored = await services.store.addMessage({
          chatGroupId: group.id,
          senderId: user.id,
          senderType: user.role,
          message: text,
          clientMessageId: payload.clientMessageId ?? null,
        });
      } catch (error) {
        if (error instanceof ServanaError) throw error;
        throw new ServanaError("SERVER_ERROR", "The message could not be stored; please retry", {
          cause: error,
        });
      }
      const message = stored.message;
      if (stored.created) {
        services.io.to(room).emit("receiveMessage", receiveMessagePayload(message, user));
        services.metrics.messagesOut.inc();
        const timestamp = message.createdAt;
        const update = { action: "new_message", chatGroupId: group.id, timestamp };
        const targets = [userRoom(group.clientId)];
        if (group.departmentId !== null) targets.push(deptRoom(group.departmentId));
        services.io.to(targets).emit("updateChatGroups", update);
        if (group.departmentId !== null) {
          services.io.to(deptRoom(group.departmentId)).emit("customerListUpdate", {
            action: "sort",
            chatGroupId: group.id,
            newPosition: 1,
            timestamp,
          });
        }
      }
      return { chat_id: message.id, duplicate: !stored.created };
    },
  });

  onEvent(ctx, "getMessages", {
    schema: getMessagesSchema,
    handler: async (payload) => {
      enforceReadBudget(ctx, "getMessages");
      const group = await loadGroup(ctx, payload.chatGroupId);
      if (!canAccessChatGroup(user, group)) {
        denyAccess(ctx, "getMessages", group.id, "not_allowed");
      }
      const messages = await services.store.listMessages(group.id, {
        before: payload.before,
        limit: payload.limit ?? 50,
      });
      const senders = new Map<number, User | null>();
      for (const m of messages) {
        if (!senders.has(m.senderId)) {
          senders.set(m.senderId, await services.store.getUser(m.senderId));
        }
      }
      const history = messages.map((m) => {
        const sender = senders.get(m.senderId) ??
          { id: m.senderId, firstName: "", lastName: "" } as User;
        return receiveMessagePayload(m, sender);
      });
      return { chatGroupId: group.id, messages: history };
    },
  });
}
