/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`): top functions
 * by self time, and self time per source file.
 *
 * `deno run --allow-read bench/profile_top.ts bench/out/CPU.….cpuprofile [N]`
 *
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (ms) by function and by file. */
export function summarise(
  profile: Profile,
): { total: number; byFunction: Map<string, number>; byFile: Map<string, number> } {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = nodes.get(profile.samples[i]);
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    if (!node) continue;
    total += ms;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = shorten(url) || "(native)";
    const key = `${functionName || "(anonymous)"}  ${file}:${lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + ms);
    byFile.set(file, (byFile.get(file) ?? 0) + ms);
  }
  return { total, byFunction, byFile };
}

function shorten(url: string): string {
  const npm = url.match(/node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?(.*)$/);
  if (npm) return npm[1];
  const src = url.match(/\/(src\/.*|bench\/.*)$/);
  if (src) return src[1];
  return url.replace(/^ext:/, "ext:");
}

function print(title: string, entries: Map<string, number>, total: number, n: number): void {
  console.log(`\n${title}`);
  const sorted = [...entries].sort((a, b) => b[1] - a[1]).slice(0, n);
  for (const [key, ms] of sorted) {
    console.log(
      `${ms.toFixed(1).padStart(9)} ms ${(100 * ms / total).toFixed(1).padStart(5)}%  ${key}`,
    );
  }
}

if (import.meta.main) {
  const [path, n = "30"] = Deno.args;
  if (!path) {
    console.error("usage: profile_top.ts <file.cpuprofile> [N]");
    Deno.exit(2);
  }
  const profile = JSON.parse(Deno.readTextFileSync(path)) as Profile;
  const { total, byFunction, byFile } = summarise(profile);
  console.log(`total sampled ${total.toFixed(0)} ms`);
  print("self time by function", byFunction, total, Number(n));
  print("self time by file", byFile, total, Number(n));
}
