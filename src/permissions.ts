/**
 * Start-up checks of what the process may read and write, against what the
 * configuration asks for: a `KV_PATH` outside the write scope, a `SEED_FILE`
 * that may not be read. Each problem is one line naming the variable and the
 * place the process may use, instead of an uncaught `NotCapable` later.
 *
 * The compiled binary and `deno task start` run with
 * `--allow-write=./data` (and `--allow-read`, `--allow-net`, `--allow-env`).
 *
 * @module
 */

import type { Config } from "./config.ts";

/** Where the shipped permission set lets the service write. */
export const WRITE_SCOPE = "./data";

/** What to check; `query` answers like `Deno.permissions.query` (tests replace it). */
export interface PermissionCheckOptions {
  query?: (descriptor: Deno.PermissionDescriptor) => Promise<Deno.PermissionStatus>;
}

/** Whether a `KV_PATH` names a file (not `:memory:`, a KV Connect URL, or Deploy's KV). */
function isKvFile(path: string | null): path is string {
  return path !== null && path !== ":memory:" && !path.includes("://");
}

function directoryOf(path: string): string {
  const dir = path.replace(/[/\\][^/\\]*$/, "");
  if (dir === path) return ".";
  return dir === "" ? path[0] : dir;
}

/**
 * The permission problems of a configuration, one line each (empty when
 * none): the KV file and its folder must be writable, the seed file readable.
 */
export async function permissionProblems(
  config: Pick<Config, "kvPath" | "seedFile">,
  options: PermissionCheckOptions = {},
): Promise<string[]> {
  const query = options.query ?? ((d) => Deno.permissions.query(d));
  const problems: string[] = [];
  const granted = async (descriptor: Deno.PermissionDescriptor) =>
    (await query(descriptor)).state === "granted";
  if (isKvFile(config.kvPath)) {
    const path = config.kvPath;
    const writable = await granted({ name: "write", path }) &&
      await granted({ name: "write", path: directoryOf(path) });
    const readable = await granted({ name: "read", path });
    if (!writable || !readable) {
      problems.push(
        `KV_PATH: ${path} is outside what this process may ${
          writable ? "read" : "write"
        }; the binary and \`deno task start\` may write only under ${WRITE_SCOPE} (e.g. KV_PATH=${WRITE_SCOPE}/servana.kv), or run with a matching --allow-write`,
      );
    }
  }
  if (config.seedFile !== null && !(await granted({ name: "read", path: config.seedFile }))) {
    problems.push(
      `SEED_FILE: ${config.seedFile} may not be read by this process; run with --allow-read for it`,
    );
  }
  return problems;
}

/** Whether an error is Deno's refusal of a permission (`NotCapable`, or `PermissionDenied`). */
export function isPermissionError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}
