/**
 * Runs the official protocol test suites, unchanged, against our engine and
 * against the Node reference in the same run, and prints each case's result
 * side by side.
 *
 * The suites are not part of this project (nothing of them is copied here):
 * clone socketio/engine.io-protocol and socketio/socket.io-protocol, run
 * `npm ci` in each `test-suite/`, and pass the two folders:
 *
 * ```sh
 * deno run -A bench/protocol_suites.ts \
 *   --engine-io=/path/to/engine.io-protocol/test-suite \
 *   --socket-io=/path/to/socket.io-protocol/test-suite [--rounds=3]
 * ```
 *
 * Both suites talk to `http://localhost:3000`, so the servers take turns on
 * port 3000: for each suite and round, the Node reference
 * (bench/protocol_suite_node.mjs, npm engine.io/socket.io as the suites'
 * READMEs configure them) and then ours (bench/protocol_suite_server.ts).
 * Each suite runs with its own mocha (`npx mocha --reporter json
 * test-suite.js`, what its `npm test` runs). The last line is a JSON summary.
 *
 * @module
 */

import { parseArgs } from "node:util";

type Impl = "reference" | "ours";
type Suite = "engine.io" | "socket.io";

interface CaseResult {
  title: string;
  pass: boolean;
  error?: string;
}

const root = new URL("../", import.meta.url).pathname;
const PORT = 3000;

async function waitForPort(child: Deno.ChildProcess, name: string): Promise<void> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const deadline = Date.now() + 30_000;
  while (!/PORT \d+/.test(buffered)) {
    if (Date.now() > deadline) throw new Error(`${name} did not start`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`${name} exited before listening`);
    buffered += value;
  }
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* closed */ }
  })();
}

function serverCommand(impl: Impl, suite: Suite): Deno.Command {
  if (impl === "reference") {
    return new Deno.Command("node", {
      args: ["bench/protocol_suite_node.mjs", suite, String(PORT)],
      cwd: root,
      stdout: "piped",
      stderr: "inherit",
    });
  }
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      "bench/protocol_suite_server.ts",
      suite,
      String(PORT),
    ],
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
  });
}

async function runSuite(impl: Impl, suite: Suite, dir: string): Promise<CaseResult[]> {
  const server = serverCommand(impl, suite).spawn();
  try {
    await waitForPort(server, `${impl} ${suite} server`);
    const mocha = await new Deno.Command("npx", {
      args: ["mocha", "--reporter", "json", "test-suite.js"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(mocha.stdout);
    const start = text.indexOf("{");
    if (start < 0) {
      throw new Error(`mocha printed no report: ${new TextDecoder().decode(mocha.stderr)}`);
    }
    const report = JSON.parse(text.slice(start)) as {
      passes: { fullTitle: string }[];
      failures: { fullTitle: string; err: { message?: string } }[];
    };
    return [
      ...report.passes.map((t) => ({ title: t.fullTitle, pass: true })),
      ...report.failures.map((t) => ({
        title: t.fullTitle,
        pass: false,
        error: t.err.message ?? "",
      })),
    ];
  } finally {
    try {
      server.kill("SIGTERM");
    } catch { /* gone */ }
    await server.status;
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "engine-io": { type: "string" },
      "socket-io": { type: "string" },
      rounds: { type: "string", default: "1" },
    },
  });
  const dirs: [Suite, string | undefined][] = [
    ["engine.io", values["engine-io"]],
    ["socket.io", values["socket-io"]],
  ];
  const rounds = Number(values.rounds);
  const summary: Record<string, unknown> = {};
  for (const [suite, dir] of dirs) {
    if (!dir) {
      console.log(`${suite}: skipped (no --${suite.replace(".", "-")}=DIR given)`);
      continue;
    }
    const perRound: Record<Impl, { passed: number; failed: number; failures: string[] }[]> = {
      reference: [],
      ours: [],
    };
    for (let round = 1; round <= rounds; round++) {
      for (const impl of ["reference", "ours"] as Impl[]) {
        const results = await runSuite(impl, suite, dir);
        const failures = results.filter((r) => !r.pass);
        perRound[impl].push({
          passed: results.length - failures.length,
          failed: failures.length,
          failures: failures.map((f) => f.title),
        });
        console.log(
          `${suite} round ${round} ${impl}: ${results.length - failures.length} passed, ` +
            `${failures.length} failed`,
        );
        for (const f of failures) console.log(`  FAIL ${f.title}: ${f.error}`);
      }
    }
    summary[suite] = perRound;
  }
  console.log(JSON.stringify(summary));
}
