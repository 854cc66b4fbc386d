/**
 * CPU pinning for the benchmark: every server on core 0, the load generator
 * (this process and its Worker threads) on core 1, with `taskset` from
 * util-linux. Where that is not possible (no taskset, fewer than two cores,
 * taskset refused) nothing is pinned and {@linkcode pinning} says why.
 *
 * @module
 */

/** What was pinned, or why nothing was. */
export interface Pinning {
  /** Whether servers run on `serverCore` and the load on `loadCore`. */
  pinned: boolean;
  serverCore: number;
  loadCore: number;
  /** Why nothing is pinned (when `pinned` is false). */
  reason?: string;
}

let state: Pinning | null = null;

function tasksetWorks(args: string[]): boolean {
  try {
    return new Deno.Command("taskset", { args, stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

/**
 * Pins this process (all its threads; threads started later inherit it) to
 * the load core, once, and returns the result.
 */
export function pinLoadGenerator(): Pinning {
  if (state) return state;
  const cores = navigator.hardwareConcurrency;
  if (cores < 2) {
    state = { pinned: false, serverCore: 0, loadCore: 0, reason: `only ${cores} core` };
  } else if (!tasksetWorks(["-V"])) {
    state = { pinned: false, serverCore: 0, loadCore: 1, reason: "taskset (util-linux) not found" };
  } else if (!tasksetWorks(["-a", "-p", "-c", "1", String(Deno.pid)])) {
    state = { pinned: false, serverCore: 0, loadCore: 1, reason: "taskset refused to pin" };
  } else {
    state = { pinned: true, serverCore: 0, loadCore: 1 };
  }
  return state;
}

/** The pinning in force (after {@linkcode pinLoadGenerator}). */
export function pinning(): Pinning {
  return state ?? pinLoadGenerator();
}

/** `[command, args]` that run `command args` on the server core when pinned. */
export function onServerCore(command: string, args: string[]): [string, string[]] {
  const p = pinning();
  if (!p.pinned) return [command, args];
  return ["taskset", ["-c", String(p.serverCore), command, ...args]];
}
