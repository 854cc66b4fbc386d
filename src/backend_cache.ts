/**
 * Servana's REST side caches in Redis what it read from the database: a
 * conversation's last messages (`chat_messages:<chat_group_id>`, two hours)
 * and an agent's list of conversations
 * (`chat_group:user_chat_groups_<sys_user_id>`, five minutes). The original
 * backend deletes those keys when its socket side writes a message or
 * assigns a conversation; with the sockets served here, this does it, so
 * the apps' history and lists read after a reload are not stale.
 *
 * Best effort, never on a request's path: a failed delete is logged once
 * (and once when deletes work again); the cache expires by itself anyway.
 *
 * @module
 */

import { log } from "./log.ts";

/** What deletes a key (the service's Redis connection). */
export interface KeyDeleter {
  del(key: string): Promise<unknown>;
}

/** The keys of Servana's REST cache that the service's writes make stale. */
export interface BackendCache {
  /** Messages of a conversation were written (stored, delivered, read). */
  messagesChanged(chatGroupId: number): Promise<void>;
  /** An agent's list of conversations changed (a conversation was assigned to them). */
  agentListChanged(agentId: number): Promise<void>;
}

/** `chat_messages:<chat_group_id>`, as the backend's cache service names it. */
export function chatMessagesKey(chatGroupId: number): string {
  return `chat_messages:${chatGroupId}`;
}

/** `chat_group:user_chat_groups_<sys_user_id>`, as the backend's cache service names it. */
export function agentChatGroupsKey(agentId: number): string {
  return `chat_group:user_chat_groups_${agentId}`;
}

/**
 * The REST cache's invalidation over `keys` (the Redis of `REDIS_URL`), or
 * one that does nothing without Redis.
 */
export function backendCache(keys: KeyDeleter | null): BackendCache {
  if (keys === null) {
    return { messagesChanged: () => Promise.resolve(), agentListChanged: () => Promise.resolve() };
  }
  let failing = false;
  async function del(key: string): Promise<void> {
    try {
      await keys!.del(key);
      if (failing) log("info", "redis cache keys deleted again");
      failing = false;
    } catch (error) {
      if (!failing) log("warn", "redis cache key delete failed", { key, error: String(error) });
      failing = true;
    }
  }
  return {
    messagesChanged: (chatGroupId) => del(chatMessagesKey(chatGroupId)),
    agentListChanged: (agentId) => del(agentChatGroupsKey(agentId)),
  };
}
