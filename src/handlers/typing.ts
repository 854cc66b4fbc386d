/**
 * Typing indicators: `typing` and `stopTyping` in both vocabularies, relayed
 * to the others in the conversation as
 * `{ chatGroupId, userId, userType, userName, userImage, isTyping }`.
 * Not rate-limited; a repeat within the throttle interval by the same person
 * in the same conversation is dropped silently (the web app sends one per
 * keystroke). Access is checked again before relaying: a person who lost
 * access to the conversation is taken out of its room.
 *
 * @module
 */

import { canAccessChatGroup, chatRoom, personRoom } from "../access.ts";
import { displayName, personKey } from "../store/mod.ts";
import { type Claim, exitRoom } from "./chat.ts";
import { assertSelf, denyAccess, type EventContext, personOf } from "./context.ts";

/** Input of {@linkcode relayTyping}. */
export interface TypingInput {
  chatGroupId: number;
  isTyping: boolean;
  claim: Claim;
}

/**
 * Relays a typing event: identity claim → membership (in memory) → throttle
 * (in memory) → access, read again → relay to the others in the room.
 */
export async function relayTyping(input: TypingInput, ctx: EventContext, event: string) {
  const { socket, services } = ctx;
  assertSelf(ctx, event, input.claim);
  const room = chatRoom(input.chatGroupId);
  if (!socket.rooms.has(room)) {
    denyAccess(ctx, event, {
      chatGroupId: input.chatGroupId,
      reason: "not_a_member",
      message: "Join the chat group before sending typing events",
    });
  }
  const person = personOf(ctx);
  if (!services.typing.shouldRelay(personKey(person), input.chatGroupId, input.isTyping)) {
    return { relayed: false };
  }
  const group = await services.store.getChatGroup(input.chatGroupId);
  if (group === null || !canAccessChatGroup(personOf(ctx), group)) {
    await exitRoom(ctx, input.chatGroupId, { announce: true });
    denyAccess(ctx, event, { chatGroupId: input.chatGroupId, reason: "access_revoked" });
  }
  // not to the typist's own other tabs
  socket.to(room).except(personRoom(person)).emit(input.isTyping ? "typing" : "stopTyping", {
    chatGroupId: input.chatGroupId,
    userId: person.id,
    userType: person.kind,
    userName: displayName(person) || person.kind,
    userImage: person.image,
    isTyping: input.isTyping,
  });
  return { relayed: true };
}
