/**
 * Processes that meet on Redis must also share one Deno KV: who is
 * connected, who is in which conversation ("the other side is in the room",
 * `memberCount`), agents' availability, rate limits and the socket cap per
 * person all live in KV. Processes with a KV each still deliver each other's
 * broadcasts through Redis, so nothing fails loudly; read receipts, counts
 * and limits are quietly per process instead.
 *
 * {@linkcode startSharedKvCheck} compares, every `everyMs`, the servers the
 * Socket.IO adapter sees on Redis with the live processes registered in this
 * process's KV, and logs one warning when Redis has more (and one info line
 * when that is over).
 *
 * @module
 */

import { log } from "./log.ts";
import { runEvery } from "./periodic.ts";

/** What {@linkcode startSharedKvCheck} compares. */
export interface SharedKvSources {
  /** Servers on the Socket.IO adapter (this one included), e.g. `adapter.serverCount()`. */
  redisServers(): Promise<number>;
  /** Live processes registered in this process's KV (this one included). */
  kvProcesses(): Promise<number>;
}

/** Options of {@linkcode startSharedKvCheck}. */
export interface SharedKvCheckOptions {
  /** Check period, ms. */
  everyMs: number;
  /** Where this process's KV is (`KV_PATH`), for the warning; null for the platform's KV. */
  kvPath: string | null;
}

/** Info line when the processes on Redis all share this KV. */
export const SHARED_MESSAGE = "the processes on Redis share this KV";
/** Warning when Redis has processes this KV does not know. */
export const SPLIT_MESSAGE =
  "processes share Redis but not KV: room members, read receipts, availability and rate limits are per process; give every process the same KV (one KV_PATH on one machine, a KV Connect URL across machines)";

/**
 * Starts the periodic comparison; returns a stop function. Logs when the
 * picture changes: a warning when Redis has more processes than this KV
 * knows, an info line when several processes on Redis all share it.
 */
export function startSharedKvCheck(
  sources: SharedKvSources,
  options: SharedKvCheckOptions,
): () => void {
  let lastServers = 1;
  let lastSplit = false;
  return runEvery(async () => {
    const [redisServers, kvProcesses] = await Promise.all([
      sources.redisServers(),
      sources.kvProcesses(),
    ]);
    const split = redisServers > kvProcesses;
    if (redisServers !== lastServers || split !== lastSplit) {
      if (split) {
        log("warn", SPLIT_MESSAGE, { redisServers, kvProcesses, kvPath: options.kvPath });
      } else if (redisServers > 1 || lastSplit) {
        log("info", SHARED_MESSAGE, { redisServers, kvProcesses });
      }
    }
    lastServers = redisServers;
    lastSplit = split;
  }, {
    everyMs: options.everyMs,
    onError: (error) => log("debug", "shared KV check failed", { error: String(error) }),
  });
}
