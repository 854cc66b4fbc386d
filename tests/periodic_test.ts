import assert from "node:assert/strict";
import { runEvery } from "../src/periodic.ts";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("runEvery: one run at a time, failures reported and the next tick runs again, stop stops", async () => {
  let active = 0;
  let most = 0;
  let runs = 0;
  const errors: unknown[] = [];
  const stop = runEvery(async () => {
    runs++;
    active++;
    most = Math.max(most, active);
    try {
      if (runs === 1) throw new Error("first run fails");
      await sleep(35); // longer than the period: the ticks meanwhile do nothing
    } finally {
      active--;
    }
  }, { everyMs: 10, onError: (error) => errors.push(error) });
  try {
    await sleep(150);
  } finally {
    stop();
  }
  assert.equal(most, 1, "never two runs at once");
  assert.ok(runs >= 2 && runs < 10, `${runs} runs in 150 ms of 35 ms runs`);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /first run fails/);
  await sleep(60); // a run still going ends
  const after = runs;
  await sleep(50);
  assert.equal(runs, after, "no run after stop");
});
