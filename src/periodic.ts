/**
 * Background work on a timer: {@linkcode runEvery} runs a task every
 * `everyMs`, never two runs at once (a run still going when the timer fires
 * makes that tick a no-op), and hands a failed run to `onError`.
 *
 * @module
 */

/** Options of {@linkcode runEvery}. */
export interface RunEveryOptions {
  /** Period, ms. */
  everyMs: number;
  /** Called with what a failed run threw (the next tick runs again). */
  onError: (error: unknown) => void;
  /** Wraps each run, e.g. the server's `track` so that shutdown waits for it. */
  track?: (run: Promise<void>) => Promise<void>;
}

/** Starts running `task` periodically; returns a stop function. */
export function runEvery(task: () => Promise<void>, options: RunEveryOptions): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    const run = (async () => await task())(); // a task that throws at once fails this run only
    (options.track ? options.track(run) : run).catch(options.onError).finally(() => {
      running = false;
    });
  }, options.everyMs);
  return () => clearInterval(timer);
}
