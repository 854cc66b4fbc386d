import assert from "node:assert/strict";
import { FailLimiter } from "../src/auth/fail_limiter.ts";

const A = "203.0.113.7";
const B = "2001:db8::1";

Deno.test("FailLimiter: blocks after the limit within a window", async (t) => {
  await t.step("default limit is 20 per minute", () => {
    const limiter = new FailLimiter();
    assert.equal(limiter.limit, 20);
    for (let i = 1; i < 20; i++) {
      assert.equal(limiter.recordFailure(A, 1_000 + i), false);
      assert.equal(limiter.isBlocked(A, 1_000 + i), false);
    }
    assert.equal(limiter.recordFailure(A, 1_100), true, "the 20th failure blocks");
    assert.equal(limiter.isBlocked(A, 1_100), true);
    assert.equal(limiter.isBlocked(B, 1_100), false, "other addresses are not affected");
  });

  await t.step("the block lasts blockMs, then the address starts afresh", () => {
    const limiter = new FailLimiter({ limit: 3, blockMs: 10_000 });
    for (let i = 0; i < 3; i++) limiter.recordFailure(A, 0);
    assert.equal(limiter.isBlocked(A, 9_999), true);
    assert.equal(limiter.recordFailure(A, 5_000), false, "failures while blocked do not extend it");
    assert.equal(limiter.isBlocked(A, 10_000), false);
    assert.equal(limiter.recordFailure(A, 10_000), false);
    assert.equal(limiter.isBlocked(A, 10_001), false, "a single new failure does not re-block");
  });

  await t.step("failures spread over several windows do not block", () => {
    const limiter = new FailLimiter({ limit: 3, windowMs: 60_000 });
    limiter.recordFailure(A, 0);
    limiter.recordFailure(A, 30_000);
    assert.equal(limiter.recordFailure(A, 60_000), false, "a new window started");
    assert.equal(limiter.isBlocked(A, 60_000), false);
  });

  await t.step("success clears the count but not an active block", () => {
    const limiter = new FailLimiter({ limit: 3 });
    limiter.recordFailure(A, 0);
    limiter.recordFailure(A, 1);
    limiter.recordSuccess(A, 2);
    assert.equal(limiter.recordFailure(A, 3), false);
    assert.equal(limiter.recordFailure(A, 4), false);
    assert.equal(limiter.recordFailure(A, 5), true);
    limiter.recordSuccess(A, 6);
    assert.equal(limiter.isBlocked(A, 7), true);
  });
});

Deno.test("FailLimiter: memory stays bounded", async (t) => {
  await t.step("old addresses are pruned", () => {
    const limiter = new FailLimiter({ limit: 5, windowMs: 1_000, blockMs: 1_000 });
    for (let i = 0; i < 500; i++) limiter.recordFailure(`10.0.${i >> 8}.${i & 255}`, 0);
    assert.equal(limiter.size, 500);
    limiter.recordFailure(A, 1_000);
    assert.equal(limiter.size, 1, "entries whose window passed are gone");
    limiter.prune(5_000);
    assert.equal(limiter.size, 0);
  });

  await t.step("blocked addresses survive pruning until their block ends", () => {
    const limiter = new FailLimiter({ limit: 2, windowMs: 1_000, blockMs: 10_000 });
    limiter.recordFailure(A, 0);
    limiter.recordFailure(A, 0);
    limiter.recordFailure(B, 0);
    limiter.prune(2_000);
    assert.equal(limiter.size, 1);
    assert.equal(limiter.isBlocked(A, 2_000), true);
  });

  await t.step("never more than maxEntries; least recently touched dropped first", () => {
    const limiter = new FailLimiter({ maxEntries: 100 });
    for (let i = 0; i < 10_000; i++) limiter.recordFailure(`addr-${i}`, 0);
    assert.equal(limiter.size, 100);
    limiter.recordFailure("addr-9900", 1); // touch the oldest remaining
    limiter.recordFailure("fresh", 2);
    assert.equal(limiter.size, 100);
    // addr-9901 was the least recently touched and went: its failure is forgotten,
    // so 19 more do not reach the limit of 20 (they would if it had been kept).
    for (let i = 0; i < 19; i++) limiter.recordFailure("addr-9901", 4);
    assert.equal(limiter.isBlocked("addr-9901", 4), false);
    assert.equal(limiter.recordFailure("addr-9901", 4), true);
    assert.equal(limiter.isBlocked("addr-9901", 4), true);
    // addr-9900 was touched, so it kept its 2 failures: 18 more block it
    for (let i = 0; i < 17; i++) assert.equal(limiter.recordFailure("addr-9900", 5), false);
    assert.equal(limiter.recordFailure("addr-9900", 5), true);
    assert.equal(limiter.size, 100);
  });
});

Deno.test("FailLimiter: options are validated", () => {
  assert.throws(() => new FailLimiter({ limit: 0 }), RangeError);
  assert.throws(() => new FailLimiter({ windowMs: -1 }), RangeError);
  assert.throws(() => new FailLimiter({ maxEntries: 1.5 }), RangeError);
});
