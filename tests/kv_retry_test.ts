import assert from "node:assert/strict";
import { isKvBusy, RecentWrites, retryCommit, tryCommit } from "../src/kv_retry.ts";

Deno.test("isKvBusy recognises SQLite lock errors only", () => {
  assert.equal(isKvBusy(new TypeError("database is locked")), true);
  assert.equal(isKvBusy(new Error("Database is busy")), true);
  assert.equal(isKvBusy(new Error("value too large")), false);
  assert.equal(isKvBusy("database is locked"), false);
});

Deno.test("retryCommit retries conflicts and busy errors, rethrows others, gives up", async () => {
  let calls = 0;
  const value = await retryCommit(() => {
    calls++;
    if (calls === 1) return Promise.resolve(null);
    if (calls === 2) return Promise.reject(new TypeError("database is locked"));
    return Promise.resolve("done");
  }, { what: "test" });
  assert.equal(value, "done");
  assert.equal(calls, 3);

  await assert.rejects(
    retryCommit(() => Promise.reject(new RangeError("bad")), { what: "test" }),
    RangeError,
  );

  let attempts = 0;
  await assert.rejects(
    retryCommit(() => {
      attempts++;
      return Promise.resolve(null);
    }, { what: "the counter", maxAttempts: 5 }),
    /too many conflicting commits on the counter/,
  );
  assert.equal(attempts, 5);
});

Deno.test("tryCommit: true when written, false on a failed check", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const entry = await kv.get(["k"]);
    assert.equal(await tryCommit(kv.atomic().check(entry).set(["k"], 1)), true);
    assert.equal(await tryCommit(kv.atomic().check(entry).set(["k"], 2)), false);
    assert.equal((await kv.get(["k"])).value, 1);
  } finally {
    kv.close();
  }
});

Deno.test("RecentWrites: hands an entry out once, keeps at most max, the oldest dropped first", () => {
  const recent = new RecentWrites<number>({ max: 2 });
  recent.remember(["a"], 1, "v1");
  recent.remember(["b"], 2, "v2");
  recent.remember(["a"], 3, "v3"); // rewritten: now the newest
  recent.remember(["c"], 4, "v4"); // over the bound: "b" goes
  assert.equal(recent.take(["b"]), undefined);
  assert.deepEqual(recent.take(["a"]), { key: ["a"], value: 3, versionstamp: "v3" });
  assert.equal(recent.take(["a"]), undefined, "taken once");
  assert.deepEqual(recent.take(["c"]), { key: ["c"], value: 4, versionstamp: "v4" });
});
