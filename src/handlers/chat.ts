/**
 * Chat operations: joining and leaving a conversation, sending a message,
 * reading history. The seed's events (`joinChatGroup`, `leaveRoom`,
 * `sendMessage`, `getMessages`) and the apps' (`chat:join`, `chat:leave`,
 * `sendMessage` with `chat_body`) map onto them (`vocabulary.ts`).
 *
 * @module
 */

import {
  canAccessChatGroup,
  chatRoom,
  chatRooms,
  customerRoom,
  departmentRoom,
  departmentRooms,
  otherSidePresent,
} from "../access.ts";
import { cleanChatText, MAX_STORED_BYTES, storedBytes } from "../chat_text.ts";
import { ServanaError } from "../errors.ts";
import { log } from "../log.ts";
import {
  type ChatGroup,
  type ChatMessage,
  type Conversation,
  isResolved,
  type Person,
  personKey,
} from "../store/mod.ts";
import {
  assertSelf,
  denyAccess,
  enforceRateLimit,
  type EventContext,
  invalidField,
  personOf,
  type Services,
} from "./context.ts";
import {
  customerListPayload,
  customerSortPayload,
  messageStatusPayload,
  receiveMessagePayload,
  roomNoticePayload,
} from "./payloads.ts";

/** A payload's claim of who is acting (`userId`, `userType`), checked against the token. */
export interface Claim {
  userId?: number;
  userType?: "agent" | "client" | "admin";
}

/** Input of {@linkcode joinChat}. */
export interface JoinInput {
  chatGroupId: number;
  claim: Claim;
  /** The apps' `chat:join`: leave the conversation joined before (one open conversation). */
  switchRooms: boolean;
}

/** Input of {@linkcode leaveChat}. */
export interface LeaveInput {
  chatGroupId: number;
}

/** Input of {@linkcode sendChatMessage}. */
export interface SendInput {
  chatGroupId: number;
  /** The text as sent (cleaned before it is stored). */
  text: string;
  /** The payload field that held the text (`message`, or the apps' `chat_body`), for errors. */
  textField: "message" | "chat_body";
  /** The seed's `clientId`: when given it must be the conversation's customer. */
  clientId?: number;
  /** Makes a retried send idempotent. */
  clientMessageId?: string;
  /**
   * The apps' `sendMessage`: a sender who may access the conversation but has
   * not joined it (the mobile app sends the first message before `chat:join`)
   * joins it; the seed's clients must have joined.
   */
  joinIfNeeded: boolean;
}

/** Input of {@linkcode getMessages}. */
export interface HistoryInput {
  chatGroupId: number;
  before?: number;
  limit?: number;
}

/** Delay before read-on-join marks older messages (as the original backend). */
const READ_BATCH_DELAY_MS = 2000;
/** How far back read-on-join's second pass looks, and how many it marks. */
const READ_BATCH_WINDOW_MS = 86_400_000;
const READ_BATCH_LIMIT = 20;

async function loadGroup(ctx: EventContext, chatGroupId: number): Promise<ChatGroup> {
  const group = await ctx.services.store.getChatGroup(chatGroupId);
  if (!group) throw new ServanaError("ROOM_NOT_FOUND", `Chat group ${chatGroupId} does not exist`);
  return group;
}

function roomInactive(group: ChatGroup): ServanaError {
  return new ServanaError("ROOM_INACTIVE", `Chat group ${group.id} is closed`);
}

/** Puts the socket into a conversation's rooms and the members registry; true for the person's first socket there. */
async function enterRoom(ctx: EventContext, group: ChatGroup): Promise<boolean> {
  const { socket, services } = ctx;
  const already = socket.rooms.has(chatRoom(group.id));
  const { first } = await services.members.join(group.id, personOf(ctx), socket.id);
  if (!socket.connected) {
    // closed while the entry was written: its disconnect clean-up could not see it
    await services.members.leave(group.id, personOf(ctx), socket.id);
    return false;
  }
  socket.join(chatRooms(group.id));
  if (first && !already) {
    socket.to(chatRoom(group.id)).emit("userJoined", roomNoticePayload(personOf(ctx), group.id));
  }
  return first;
}

/** Takes the socket out of a conversation; `userLeft` when the person's last socket left. */
export async function exitRoom(
  ctx: EventContext,
  chatGroupId: number,
  options: { announce: boolean },
): Promise<boolean> {
  const { socket, services } = ctx;
  const person = personOf(ctx);
  for (const room of chatRooms(chatGroupId)) socket.leave(room);
  if (socket.data.currentChat === chatGroupId) socket.data.currentChat = null;
  const { last } = await services.members.leave(chatGroupId, person, socket.id);
  if (last) {
    services.typing.forget(personKey(person), chatGroupId);
    if (options.announce) {
      services.io.to(chatRoom(chatGroupId)).emit(
        "userLeft",
        roomNoticePayload(person, chatGroupId),
      );
    }
  }
  return last;
}

/**
 * Joins a conversation: identity claim → read budget → the conversation
 * (`ROOM_NOT_FOUND`) → access (`ACCESS_DENIED`) → open (`ROOM_INACTIVE`) →
 * rooms → `joinedRoom` to the sender, `userJoined` to the others (once per
 * person), then the other side's delivered, unread messages are marked read.
 */
export async function joinChat(input: JoinInput, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  assertSelf(ctx, event, input.claim);
  await enforceRateLimit(ctx, "read", event);
  const group = await loadGroup(ctx, input.chatGroupId);
  const person = personOf(ctx);
  if (!canAccessChatGroup(person, group)) {
    denyAccess(ctx, event, { chatGroupId: group.id, reason: "not_allowed" });
  }
  if (isResolved(group)) throw roomInactive(group);
  const previous = socket.data.currentChat;
  if (input.switchRooms && previous !== null && previous !== group.id) {
    await exitRoom(ctx, previous, { announce: true });
  }
  await enterRoom(ctx, group);
  if (input.switchRooms) socket.data.currentChat = group.id;
  const members = await services.members.members(group.id);
  socket.emit("joinedRoom", {
    chatGroupId: group.id,
    roomInfo: { status: group.status, memberCount: members.length },
  });
  services.track(readOnJoin(ctx, group.id));
  return { chatGroupId: group.id, memberCount: members.length };
}

/**
 * Read on join: the other side's newest delivered, unread message is marked
 * read now, up to 20 more of the last day two seconds later, each announced
 * with `messageStatusUpdate { status: "read" }` to the room.
 */
async function readOnJoin(ctx: EventContext, chatGroupId: number): Promise<void> {
  const { store, io } = ctx.services;
  const reader = personOf(ctx).kind;
  try {
    const at = new Date();
    const newest = await store.markRead({ chatGroupId, reader, at, limit: 1 });
    if (newest.length === 0) return;
    await ctx.services.backendCache.messagesChanged(chatGroupId);
    io.to(chatRoom(chatGroupId)).emit(
      "messageStatusUpdate",
      messageStatusPayload(newest[0], { status: "read", at, by: "auto_join" }),
    );
    await new Promise((resolve) => setTimeout(resolve, READ_BATCH_DELAY_MS));
    const later = new Date();
    const more = await store.markRead({
      chatGroupId,
      reader,
      at: later,
      limit: READ_BATCH_LIMIT,
      since: new Date(later.getTime() - READ_BATCH_WINDOW_MS),
    });
    if (more.length > 0) await ctx.services.backendCache.messagesChanged(chatGroupId);
    for (const chatId of more) {
      io.to(chatRoom(chatGroupId)).emit(
        "messageStatusUpdate",
        messageStatusPayload(chatId, { status: "read", at: later, by: "auto_join_batch" }),
      );
    }
  } catch (error) {
    log("warn", "read on join failed", { chatGroupId, error: String(error) });
  }
}

/** Leaves a conversation; `userLeft` to the others when the person's last socket left. */
export async function leaveChat(input: LeaveInput, ctx: EventContext) {
  if (!ctx.socket.rooms.has(chatRoom(input.chatGroupId))) return { left: false };
  await exitRoom(ctx, input.chatGroupId, { announce: true });
  return { left: true };
}

/**
 * Sends a message, cheapest gate first: length → membership (in memory) →
 * the conversation (`ROOM_NOT_FOUND`) → access (`ACCESS_DENIED`) → open
 * (`ROOM_INACTIVE`) → `clientId` → rate limit → cleaning the text → store
 * (`SERVER_ERROR`: nothing stored or broadcast) → `receiveMessage` to the
 * room, sender included → ack. A retried `clientMessageId` is acked with the
 * stored message and broadcast again (clients merge by `chat_id`). Then,
 * off the ack's path: delivery and read state, `messageStatusUpdate`,
 * `messageDelivered` to the sender, and the agents' list updates.
 */
export async function sendChatMessage(input: SendInput, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  const max = services.config.maxMessageLength;
  if (input.text.length > max) {
    throw invalidField(
      input.textField,
      `longer than ${max} characters`,
      `at most ${max} characters`,
    );
  }
  const member = socket.rooms.has(chatRoom(input.chatGroupId));
  if (!member && !input.joinIfNeeded) {
    denyAccess(ctx, event, { chatGroupId: input.chatGroupId, reason: "not_a_member" });
  }
  const conversation = await services.store.getConversation(input.chatGroupId);
  if (!conversation) {
    throw new ServanaError("ROOM_NOT_FOUND", `Chat group ${input.chatGroupId} does not exist`);
  }
  const group = conversation.group;
  const person = personOf(ctx);
  if (!canAccessChatGroup(person, group)) {
    if (member) await exitRoom(ctx, group.id, { announce: true });
    denyAccess(ctx, event, { chatGroupId: group.id, reason: "not_allowed" });
  }
  if (isResolved(group)) throw roomInactive(group);
  if (input.clientId !== undefined && input.clientId !== group.clientId) {
    throw invalidField(
      "clientId",
      "not the customer of this chat group",
      "does not match the chat group",
    );
  }
  await enforceRateLimit(ctx, "message", event);
  const body = cleanChatText(input.text);
  if (body.length === 0) {
    throw invalidField(input.textField, "empty after sanitizing", "must contain text");
  }
  if (storedBytes(body) > MAX_STORED_BYTES) {
    throw invalidField(
      input.textField,
      "too large to store",
      `at most ${MAX_STORED_BYTES} bytes stored`,
    );
  }
  if (!member) await enterRoom(ctx, group);

  let stored;
  try {
    stored = await services.store.addMessage({
      chatGroupId: group.id,
      sender: { kind: person.kind, id: person.id },
      body,
      clientMessageId: input.clientMessageId ?? null,
    });
  } catch (error) {
    if (error instanceof ServanaError) throw error;
    throw new ServanaError("SERVER_ERROR", "The message could not be stored; please retry", {
      cause: error,
    });
  }
  const message = stored.message;
  services.io.to(chatRoom(group.id)).emit("receiveMessage", receiveMessagePayload(message, person));
  services.metrics.messagesOut.inc();
  services.track(afterSend(ctx, conversation, message));
  return { chat_id: message.id, duplicate: !stored.created };
}

/** What follows a stored and broadcast message (see {@linkcode sendChatMessage}). */
async function afterSend(
  ctx: EventContext,
  conversation: Conversation,
  message: ChatMessage,
): Promise<void> {
  const { socket, services } = ctx;
  const { io, store } = services;
  const group = conversation.group;
  const person = personOf(ctx);
  try {
    const members = await services.members.members(group.id);
    const read = otherSidePresent(person, members);
    const at = new Date();
    await store.markDelivered(message, { at, read });
    io.to(chatRoom(group.id)).emit(
      "messageStatusUpdate",
      messageStatusPayload(message.id, { status: read ? "read" : "delivered", at, by: "auto" }),
    );
    socket.emit("messageDelivered", {
      chat_id: message.id,
      chat_group_id: group.id,
      timestamp: message.createdAt,
    });
    const departmentTargets = group.departmentId === null
      ? []
      : departmentRooms(group.departmentId);
    io.to([customerRoom(group.clientId), ...departmentTargets]).emit("updateChatGroups", {
      action: "new_message",
      chatGroupId: group.id,
      timestamp: message.createdAt,
    });
    const sort = customerSortPayload(group.id, at);
    if (group.agentId !== null) {
      // the apps' list entry goes to the assigned agent only (the web app adds it to the list)
      const hasUnread = person.kind === "client" && !read;
      const agent = `agent_${group.agentId}`;
      io.to(agent).emit("customerListUpdate", {
        ...sort,
        ...customerListPayload("move_to_top", conversation, { hasUnread, at }),
      });
      if (group.departmentId !== null) {
        io.to(departmentRoom(group.departmentId)).except(agent).emit("customerListUpdate", sort);
      }
    } else if (group.departmentId !== null) {
      io.to(departmentRoom(group.departmentId)).emit("customerListUpdate", sort);
    }
  } catch (error) {
    log("warn", "delivery update failed", { chatId: message.id, error: String(error) });
  } finally {
    // the REST side's cached history of this conversation lacks the message (or its state)
    await services.backendCache.messagesChanged(group.id);
  }
}

/** History of a conversation: read budget → conversation → access → a page of messages, ascending. */
export async function getMessages(input: HistoryInput, ctx: EventContext, event: string) {
  const { services } = ctx;
  await enforceRateLimit(ctx, "read", event);
  const group = await loadGroup(ctx, input.chatGroupId);
  if (!canAccessChatGroup(personOf(ctx), group)) {
    denyAccess(ctx, event, { chatGroupId: group.id, reason: "not_allowed" });
  }
  const messages = await services.store.listMessages(group.id, {
    before: input.before,
    limit: input.limit ?? 50,
  });
  const refs = new Map<string, { kind: "agent" | "client"; id: number }>();
  for (const m of messages) if (m.sender !== null) refs.set(personKey(m.sender), m.sender);
  const people = new Map<string, Person>();
  for (const p of await services.store.getPeople([...refs.values()])) people.set(personKey(p), p);
  const history = messages.map((m) =>
    receiveMessagePayload(m, m.sender === null ? null : people.get(personKey(m.sender)) ?? null)
  );
  return { chatGroupId: group.id, messages: history };
}

/**
 * Tells the agent a queued conversation was assigned to them (after
 * deleting the REST side's cached list of their conversations):
 * `customerListUpdate { type: "assigned", data: { customer, … } }` (with the
 * seed's sort fields) to `agent_<id>`.
 */
export async function announceAssignment(
  services: Pick<Services, "io" | "store" | "backendCache">,
  group: ChatGroup,
): Promise<void> {
  if (group.agentId === null) return;
  await services.backendCache.agentListChanged(group.agentId);
  const conversation = await services.store.getConversation(group.id);
  if (conversation === null) return;
  const at = new Date();
  services.io.to(`agent_${group.agentId}`).emit("customerListUpdate", {
    ...customerSortPayload(group.id, at),
    ...customerListPayload("assigned", conversation, { at }),
  });
}
