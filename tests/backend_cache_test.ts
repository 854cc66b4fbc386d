import assert from "node:assert/strict";
import { backendCache } from "../src/backend_cache.ts";
import { captureLog } from "./support/log_capture.ts";

Deno.test("backendCache deletes the REST side's keys by their names", async () => {
  const deleted: string[] = [];
  const cache = backendCache({ del: (key) => Promise.resolve(deleted.push(key)) });
  await cache.messagesChanged(456);
  await cache.agentListChanged(124);
  assert.deepEqual(deleted, ["chat_messages:456", "chat_group:user_chat_groups_124"]);
});

Deno.test("backendCache never rejects; a failing Redis is logged once, and its return once", async () => {
  const log = captureLog();
  try {
    let down = true;
    const cache = backendCache({
      del: () => down ? Promise.reject(new Error("connection refused")) : Promise.resolve(1),
    });
    for (let i = 0; i < 5; i++) await cache.messagesChanged(i);
    down = false;
    await cache.agentListChanged(1);
    await cache.agentListChanged(2);
    assert.deepEqual(
      log.lines().filter((l) => String(l.msg).startsWith("redis cache")).map((l) => l.msg),
      ["redis cache key delete failed", "redis cache keys deleted again"],
    );
  } finally {
    log.restore();
  }
});
