import assert from "node:assert/strict";
import { ServanaError, toErrorPayload } from "../src/errors.ts";

Deno.test("ServanaError becomes { code, message, details? }", () => {
  assert.deepEqual(new ServanaError("ROOM_NOT_FOUND").toPayload(), {
    code: "ROOM_NOT_FOUND",
    message: "Chat room not found",
  });
  assert.deepEqual(
    toErrorPayload(
      new ServanaError("RATE_LIMIT_EXCEEDED", "slow down", { details: { retryAfterMs: 5 } }),
    ),
    { code: "RATE_LIMIT_EXCEEDED", message: "slow down", details: { retryAfterMs: 5 } },
  );
});

Deno.test("anything else becomes SERVER_ERROR without internals", () => {
  const payload = toErrorPayload(
    new Error("connection to 10.0.0.5:5432 refused, password=hunter2"),
  );
  assert.deepEqual(payload, { code: "SERVER_ERROR", message: "Internal server error" });
  assert.deepEqual(toErrorPayload("a string"), payload);
  assert.deepEqual(toErrorPayload(undefined), payload);
});
