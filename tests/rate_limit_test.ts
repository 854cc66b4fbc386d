import assert from "node:assert/strict";
import {
  MAX_RATE_LIMIT,
  RateLimiter,
  type RateLimitResult,
  type RateLimitRule,
  type RateLimitState,
  TypingThrottle,
} from "../src/rate_limit.ts";

const MINUTE = 60_000;
const SEND: RateLimitRule = { limit: 30, windowMs: MINUTE };
const T0 = Date.UTC(2024, 0, 15, 10, 30, 0);

/** A settable clock. */
function clock(start: number): { now: () => number; set: (t: number) => void } {
  let t = start;
  return {
    now: () => t,
    set: (next: number) => {
      t = next;
    },
  };
}

async function consumeMany(
  limiter: RateLimiter,
  key: readonly (string | number)[],
  rule: RateLimitRule,
  count: number,
): Promise<RateLimitResult[]> {
  const results: RateLimitResult[] = [];
  for (let i = 0; i < count; i++) results.push(await limiter.consume(key, rule));
  return results;
}

async function listKeys(kv: Deno.Kv, prefix: Deno.KvKey): Promise<Deno.KvKey[]> {
  const keys: Deno.KvKey[] = [];
  for await (const entry of kv.list({ prefix })) keys.push(entry.key);
  return keys;
}

Deno.test("RateLimiter: 30 allowed, 31st denied until the oldest call leaves the window", async (t) => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const limiter = new RateLimiter(kv, { now: c.now });
    const key = ["sendMessage", 123];

    await t.step("30 calls one second apart are allowed, remaining counts down", async () => {
      for (let i = 0; i < 30; i++) {
        c.set(T0 + i * 1000);
        const r = await limiter.consume(key, SEND);
        assert.equal(r.allowed, true, `call ${i + 1}`);
        assert.equal(r.remaining, 29 - i);
        assert.equal(r.retryAfterMs, 0);
        assert.equal(r.firstDenial, false);
      }
    });

    await t.step(
      "31st is denied; retryAfterMs is the time until the first call leaves",
      async () => {
        c.set(T0 + 30_000);
        const r = await limiter.consume(key, SEND);
        assert.equal(r.allowed, false);
        assert.equal(r.remaining, 0);
        // First call was at T0; it leaves the window at T0 + 60 s, 30 s from now.
        assert.equal(r.retryAfterMs, 30_000);
      },
    );

    await t.step("just before the oldest leaves: still denied, 1 ms to go", async () => {
      c.set(T0 + MINUTE - 1);
      const r = await limiter.consume(key, SEND);
      assert.equal(r.allowed, false);
      assert.equal(r.retryAfterMs, 1);
    });

    await t.step("once the oldest left the window exactly one more call is allowed", async () => {
      c.set(T0 + MINUTE);
      const first = await limiter.consume(key, SEND);
      assert.equal(first.allowed, true);
      assert.equal(first.remaining, 0);
      const second = await limiter.consume(key, SEND);
      assert.equal(second.allowed, false);
      // Next to leave is the call made at T0 + 1 s.
      assert.equal(second.retryAfterMs, 1000);
    });

    await t.step("after a whole window without calls the full limit is available", async () => {
      c.set(T0 + 3 * MINUTE);
      const results = await consumeMany(limiter, key, SEND, 31);
      assert.equal(results.filter((r) => r.allowed).length, 30);
      assert.equal(results[30].allowed, false);
      assert.equal(results[29].remaining, 0);
    });

    await t.step("keys are independent", async () => {
      const r = await limiter.consume(["sendMessage", 124], SEND);
      assert.equal(r.allowed, true);
      assert.equal(r.remaining, 29);
    });
  } finally {
    kv.close();
  }
});

Deno.test("RateLimiter: no burst at a window boundary", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const limiter = new RateLimiter(kv, { now: c.now });
    const key = ["sendMessage", 7];
    // 1 call at 0 s, then 29 at 59.9 s: 30 in the last minute.
    assert.equal((await limiter.consume(key, SEND)).allowed, true);
    c.set(T0 + 59_900);
    const late = await consumeMany(limiter, key, SEND, 29);
    assert.ok(late.every((r) => r.allowed));
    // At 60.1 s a fixed-window counter would have reset and allowed 30 more.
    // Only the call made at 0 s has left the window: exactly one is allowed.
    c.set(T0 + 60_100);
    const burst = await consumeMany(limiter, key, SEND, 30);
    assert.equal(burst.filter((r) => r.allowed).length, 1);
    assert.equal(burst[0].allowed, true);
    // The 29 calls of 59.9 s leave at 119.9 s.
    assert.equal(burst[1].retryAfterMs, 119_900 - 60_100);
  } finally {
    kv.close();
  }
});

Deno.test("RateLimiter: firstDenial is true once per window", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const limiter = new RateLimiter(kv, { now: c.now });
    const rule: RateLimitRule = { limit: 10, windowMs: MINUTE };
    const key = ["status", 5];
    await consumeMany(limiter, key, rule, 10);

    const denied = await consumeMany(limiter, key, rule, 5);
    assert.deepEqual(denied.map((r) => r.firstDenial), [true, false, false, false, false]);
    assert.ok(denied.every((r) => !r.allowed));

    // 30 s later: still inside the window of the first violation.
    c.set(T0 + 30_000);
    assert.equal((await limiter.consume(key, rule)).firstDenial, false);

    // A minute after the first denial: a new violation is reported once more.
    c.set(T0 + MINUTE + 1);
    const afterWindow = await consumeMany(limiter, key, rule, 12);
    assert.equal(afterWindow.filter((r) => r.allowed).length, 10);
    assert.deepEqual(afterWindow.slice(10).map((r) => r.firstDenial), [true, false]);
  } finally {
    kv.close();
  }
});

Deno.test("RateLimiter: two processes on one KV file never exceed the limit together", async (t) => {
  const path = await Deno.makeTempFile({ suffix: ".sqlite" });
  const kvA = await Deno.openKv(path);
  const kvB = await Deno.openKv(path);
  try {
    const c = clock(T0);
    const a = new RateLimiter(kvA, { now: c.now });
    const b = new RateLimiter(kvB, { now: c.now });
    const key = ["sendMessage", 42];

    await t.step("80 concurrent calls from both: exactly 30 allowed", async () => {
      const calls: Promise<RateLimitResult>[] = [];
      for (let i = 0; i < 40; i++) {
        calls.push(a.consume(key, SEND), b.consume(key, SEND));
      }
      const results = await Promise.all(calls);
      assert.equal(results.filter((r) => r.allowed).length, 30);
      const denied = results.filter((r) => !r.allowed);
      assert.equal(denied.length, 50);
      assert.equal(denied.filter((r) => r.firstDenial).length, 1, "violation reported once");
      assert.ok(denied.every((r) => r.retryAfterMs > 0));
    });

    await t.step("taking turns, one call at a time: each sees the other's calls", async () => {
      // each limiter remembers its own last write; the other's write in between must count
      const turns = clock(T0 + 10 * MINUTE);
      const a2 = new RateLimiter(kvA, { now: turns.now });
      const b2 = new RateLimiter(kvB, { now: turns.now });
      const turnKey = ["sendMessage", 43];
      let allowed = 0;
      for (let i = 0; i < 40; i++) {
        turns.set(T0 + 10 * MINUTE + i);
        if ((await (i % 2 === 0 ? a2 : b2).consume(turnKey, SEND)).allowed) allowed++;
      }
      assert.equal(allowed, 30);
    });

    await t.step("both see the same window", async () => {
      assert.equal((await a.consume(key, SEND)).allowed, false);
      assert.equal((await b.consume(key, SEND)).allowed, false);
      c.set(T0 + MINUTE);
      const results = await Promise.all([
        ...Array.from({ length: 20 }, () => a.consume(key, SEND)),
        ...Array.from({ length: 20 }, () => b.consume(key, SEND)),
      ]);
      assert.equal(results.filter((r) => r.allowed).length, 30);
    });
  } finally {
    kvA.close();
    kvB.close();
    await Deno.remove(path);
  }
});

Deno.test("RateLimiter: one bounded KV entry per key, expiring with the window", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const c = clock(T0);
    const limiter = new RateLimiter(kv, { now: c.now });
    const rule: RateLimitRule = { limit: 10, windowMs: MINUTE };
    for (let round = 0; round < 5; round++) {
      c.set(T0 + round * 2 * MINUTE);
      for (let user = 0; user < 50; user++) await consumeMany(limiter, ["status", user], rule, 12);
    }
    // Many windows later the KV holds one entry per key, never more, and each
    // holds only the timestamps of its last window. Each entry was written with
    // expireIn = windowMs, so KV deletes it once the window has passed.
    const keys = await listKeys(kv, ["ratelimit"]);
    assert.equal(keys.length, 50);
    for (const key of keys) {
      const state = (await kv.get<RateLimitState>(key)).value;
      assert.ok(state);
      assert.equal(state.hits.length, 10);
      assert.ok(state.hits.every((h) => h === T0 + 8 * MINUTE));
    }
  } finally {
    kv.close();
  }
});

Deno.test("RateLimiter: invalid rules and keys are refused", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const limiter = new RateLimiter(kv);
    await assert.rejects(limiter.consume(["a"], { limit: 0, windowMs: 1000 }), RangeError);
    await assert.rejects(limiter.consume(["a"], { limit: 1.5, windowMs: 1000 }), RangeError);
    await assert.rejects(
      limiter.consume(["a"], { limit: MAX_RATE_LIMIT + 1, windowMs: 1000 }),
      RangeError,
    );
    await assert.rejects(limiter.consume(["a"], { limit: 1, windowMs: 0 }), RangeError);
    await assert.rejects(limiter.consume([], { limit: 1, windowMs: 1000 }), RangeError);
    await assert.rejects(limiter.consume([Number.NaN], { limit: 1, windowMs: 1000 }), RangeError);
    assert.deepEqual(await listKeys(kv, []), []);
  } finally {
    kv.close();
  }
});

Deno.test("TypingThrottle: drops repeats within the interval", async (t) => {
  await t.step("same user, same room, same kind within 1 s is dropped", () => {
    const throttle = new TypingThrottle();
    assert.equal(throttle.shouldRelay(1, 10, true, 0), true);
    assert.equal(throttle.shouldRelay(1, 10, true, 500), false);
    assert.equal(throttle.shouldRelay(1, 10, true, 999), false);
    // Measured from the last relayed event: continuous typing is relayed once a second.
    assert.equal(throttle.shouldRelay(1, 10, true, 1000), true);
    assert.equal(throttle.shouldRelay(1, 10, true, 1500), false);
  });

  await t.step("other room, other user and the other kind are not dropped", () => {
    const throttle = new TypingThrottle();
    assert.equal(throttle.shouldRelay(1, 10, true, 0), true);
    assert.equal(throttle.shouldRelay(1, 11, true, 1), true);
    assert.equal(throttle.shouldRelay(2, 10, true, 2), true);
    assert.equal(throttle.shouldRelay(1, 10, false, 3), true, "stopTyping right after typing");
    assert.equal(throttle.shouldRelay(1, 10, false, 4), false, "repeated stopTyping");
    assert.equal(throttle.shouldRelay(1, 10, true, 5), true, "typing again after stopTyping");
  });

  await t.step("custom interval", () => {
    const throttle = new TypingThrottle({ intervalMs: 100 });
    assert.equal(throttle.shouldRelay("u", "r", true, 0), true);
    assert.equal(throttle.shouldRelay("u", "r", true, 99), false);
    assert.equal(throttle.shouldRelay("u", "r", true, 100), true);
  });
});

Deno.test("per person: agent 5 and customer 5 have budgets and throttles of their own", async (t) => {
  await t.step("RateLimiter keyed by person key (as the handlers key it)", async () => {
    const kv = await Deno.openKv(":memory:");
    try {
      const limiter = new RateLimiter(kv, { now: () => 0 });
      const rule = { limit: 1, windowMs: 60_000 };
      assert.equal((await limiter.consume(["message", "agent:5"], rule)).allowed, true);
      assert.equal((await limiter.consume(["message", "agent:5"], rule)).allowed, false);
      assert.equal((await limiter.consume(["message", "client:5"], rule)).allowed, true);
      assert.equal((await limiter.consume(["read", "agent:5"], rule)).allowed, true);
    } finally {
      kv.close();
    }
  });

  await t.step("TypingThrottle keyed by person key; forget drops one person only", () => {
    const throttle = new TypingThrottle();
    assert.equal(throttle.shouldRelay("agent:5", 456, true, 0), true);
    assert.equal(throttle.shouldRelay("client:5", 456, true, 1), true);
    assert.equal(throttle.shouldRelay("agent:5", 456, true, 2), false);
    throttle.forget("agent:5");
    assert.equal(throttle.size, 1);
    assert.equal(throttle.shouldRelay("agent:5", 456, true, 3), true);
    assert.equal(throttle.shouldRelay("client:5", 456, true, 4), false);
  });
});

Deno.test("TypingThrottle: leaves nothing behind", async (t) => {
  await t.step("forget(userId) at disconnect empties the map", () => {
    const throttle = new TypingThrottle();
    for (let user = 0; user < 2000; user++) {
      throttle.shouldRelay(user, user % 7, true, 0);
      throttle.shouldRelay(user, 100 + (user % 3), false, 0);
    }
    assert.equal(throttle.size, 4000);
    throttle.forget(3, 3);
    assert.equal(throttle.size, 3999);
    for (let user = 0; user < 2000; user++) throttle.forget(user);
    assert.equal(throttle.size, 0);
    // A forgotten user is not throttled any more.
    assert.equal(throttle.shouldRelay(1, 1, true, 1), true);
  });

  await t.step("entries older than the interval are pruned every pruneEvery calls", () => {
    const throttle = new TypingThrottle({ pruneEvery: 100 });
    for (let user = 0; user < 1000; user++) throttle.shouldRelay(user, 1, true, 0);
    assert.equal(throttle.size, 1000);
    // One user keeps typing after the others stopped: within 100 calls the
    // stale entries are gone, and only the live one remains.
    for (let i = 0; i < 100; i++) throttle.shouldRelay("active", 1, true, 5000 + i);
    assert.equal(throttle.size, 1);
  });

  await t.step("prune() keeps entries that can still drop an event", () => {
    const throttle = new TypingThrottle();
    throttle.shouldRelay(1, 1, true, 0);
    throttle.shouldRelay(2, 1, true, 900);
    assert.equal(throttle.prune(1000), 1);
    assert.equal(throttle.size, 1);
    assert.equal(throttle.shouldRelay(2, 1, true, 1000), false);
  });
});
