/**
 * Typing indicators: `typing` and `stopTyping`, relayed to the others in the
 * room with `isTyping`. Not rate-limited; a repeat within the throttle
 * interval by the same user in the same room is dropped silently.
 *
 * @module
 */

import { z } from "zod";
import { chatRoom } from "../access.ts";
import { ServanaError } from "../errors.ts";
import { assertSelf, type EventContext, idSchema, onEvent, userTypeSchema } from "./context.ts";

/** `typing` / `stopTyping { chatGroupId, userType, userId }` */
export const typingSchema = z.object({
  chatGroupId: idSchema,
  userType: userTypeSchema.optional(),
  userId: idSchema.optional(),
});

/** Registers `typing` and `stopTyping` on a socket. */
export function registerTypingHandlers(ctx: EventContext): void {
  for (const [event, isTyping] of [["typing", true], ["stopTyping", false]] as const) {
    onEvent(ctx, event, {
      schema: typingSchema,
      handler: (payload, { socket, user, services }) => {
        assertSelf(ctx, event, payload);
        const room = chatRoom(payload.chatGroupId);
        if (!socket.rooms.has(room)) {
          throw new ServanaError(
            "ACCESS_DENIED",
            "Join the chat group before sending typing events",
          );
        }
        const relayed = services.typing.shouldRelay(user.id, payload.chatGroupId, isTyping);
        if (relayed) {
          socket.to(room).emit(event, {
            chatGroupId: payload.chatGroupId,
            userType: user.role,
            userId: user.id,
            isTyping,
          });
        }
        return { relayed };
      },
    });
  }
}
