/**
 * The payloads the service broadcasts, each one readable by both kinds of
 * clients in a conversation: the seed document's fields and the fields
 * Servana's shipping apps read, side by side. Ids are JSON numbers.
 *
 * @module
 */

import {
  type ChatMessage,
  type Conversation,
  displayName,
  type Person,
  type PersonRef,
} from "../store/mod.ts";

/** `sender_type` of a message: `agent` (admins too, as the apps compare it), `client`, or `system`. */
export function senderType(sender: PersonRef | null): "agent" | "client" | "system" {
  return sender === null ? "system" : sender.kind;
}

/**
 * `receiveMessage`: the seed's `{ chat_id, chat_message, chat_created_at,
 * sender_type, chatGroupId, sender: { userId, profile, image } }` and the
 * stored `chat` row the apps read (`chat_body`, `chat_group_id`,
 * `sys_user_id`, `client_id`, `chat_delivered_at`, `chat_read_at`) with
 * `sender_id`, `sender_name`, `sender_image`, `agent_name`,
 * `agent_profile_picture`. `sender` is null for a system message or a
 * sender who no longer exists.
 */
export function receiveMessagePayload(message: ChatMessage, sender: Person | null) {
  const type = senderType(message.sender);
  const name = sender === null ? "" : displayName(sender);
  const image = sender?.image ?? null;
  const isAgent = message.sender?.kind === "agent";
  return {
    chat_id: message.id,
    chat_message: message.body,
    chat_created_at: message.createdAt,
    sender_type: type,
    chatGroupId: message.chatGroupId,
    sender: message.sender === null ? null : {
      userId: message.sender.id,
      profile: {
        prof_firstname: sender?.firstName ?? "",
        prof_lastname: sender?.lastName ?? "",
      },
      image,
    },
    chat_body: message.body,
    chat_group_id: message.chatGroupId,
    sys_user_id: isAgent ? message.sender!.id : null,
    client_id: message.sender?.kind === "client" ? message.sender.id : null,
    chat_delivered_at: message.deliveredAt,
    chat_read_at: message.readAt,
    sender_id: message.sender?.id ?? null,
    sender_name: name,
    sender_image: image,
    agent_name: isAgent ? name : null,
    agent_profile_picture: isAgent ? image : null,
  };
}

/** Who changed a message's status, as the apps read it. */
export type StatusUpdater = "auto" | "auto_join" | "auto_join_batch";

/** `messageStatusUpdate { chatId, chat_id, status, timestamp, updatedBy, updatedByType }`. */
export function messageStatusPayload(
  chatId: number,
  options: { status: "delivered" | "read"; at: Date; by: StatusUpdater },
) {
  return {
    chatId,
    chat_id: chatId,
    status: options.status,
    timestamp: options.at.toISOString(),
    updatedBy: "system",
    updatedByType: options.by,
  };
}

/** The apps' customer-list entry of a conversation (`data.customer` of `customerListUpdate`). */
export function customerEntry(conversation: Conversation, options: { hasUnread?: boolean } = {}) {
  const { group, customer, department } = conversation;
  const name = customer === null ? "" : displayName(customer);
  return {
    chat_group_id: group.id,
    name: name === "" ? "Unknown" : name,
    number: customer?.number ?? null,
    profile: customer?.image ?? null,
    status: group.status,
    chat_type: group.status === "queued" ? "queued" : "active",
    department: department?.name ?? "Unknown",
    sys_user_id: group.agentId,
    dept_id: group.departmentId,
    created_at: group.createdAt,
    has_unread: options.hasUnread ?? false,
  };
}

/**
 * The apps' `customerListUpdate { type, data: { customer, chat_group_id,
 * agentId, accepted_by }, timestamp }`, for the agent whose list it changes.
 */
export function customerListPayload(
  type: "move_to_top" | "assigned",
  conversation: Conversation,
  options: { hasUnread?: boolean; at: Date },
) {
  const agentId = conversation.group.agentId;
  return {
    type,
    data: {
      customer: customerEntry(conversation, { hasUnread: options.hasUnread }),
      chat_group_id: conversation.group.id,
      agentId,
      accepted_by: agentId,
    },
    timestamp: options.at.toISOString(),
  };
}

/** The seed's `customerListUpdate { action: "sort", chatGroupId, newPosition: 1, timestamp }`. */
export function customerSortPayload(chatGroupId: number, at: Date) {
  return { action: "sort", chatGroupId, newPosition: 1, timestamp: at.toISOString() };
}

/** `userJoined` / `userLeft { userType, userId, chatGroupId, timestamp }`. */
export function roomNoticePayload(person: PersonRef, chatGroupId: number) {
  return {
    userType: person.kind,
    userId: person.id,
    chatGroupId,
    timestamp: new Date().toISOString(),
  };
}
