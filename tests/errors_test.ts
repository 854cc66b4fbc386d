import assert from "node:assert/strict";
import { DEFAULT_MESSAGES, ERROR_CODES, ServanaError, toErrorPayload } from "../src/errors.ts";

Deno.test("every documented code has a default message, SERVER_ERROR included", () => {
  assert.deepEqual([...ERROR_CODES].sort(), Object.keys(DEFAULT_MESSAGES).sort());
  for (
    const code of [
      "AUTH_REQUIRED",
      "ACCESS_DENIED",
      "ROOM_NOT_FOUND",
      "RATE_LIMIT_EXCEEDED",
      "INVALID_DATA",
      "USER_NOT_FOUND",
      "ROOM_INACTIVE",
      "SERVER_ERROR",
    ] as const
  ) {
    assert.ok(ERROR_CODES.includes(code), code);
  }
});

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
