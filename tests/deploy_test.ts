/**
 * deploy/: the systemd unit of the compiled binary and its example
 * environment file. The unit is checked by `systemd-analyze verify` where
 * systemd is installed (with a stand-in ExecStart, since the binary is not
 * installed here), and parsed everywhere: least-privilege settings,
 * restart and stop behaviour, and a KV_PATH inside the binary's only
 * writable scope (`--allow-write=./data` of the compile task) under the
 * state directory.
 */

import assert from "node:assert/strict";
import { CONFIG_VARIABLES, loadConfig } from "../src/config.ts";

const root = new URL("../", import.meta.url);
const UNIT = new URL("deploy/servana-realtime.service", root);
const ENV_EXAMPLE = new URL("deploy/servana-realtime.env.example", root);

/** Section → key → values (a key may repeat; empty assignments are kept as ""). */
type Unit = Map<string, Map<string, string[]>>;

function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = line.match(/^\[(.+)\]$/);
    if (header) {
      section = unit.get(header[1]) ?? new Map();
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(section && eq > 0, `not a key=value line in a section: ${line}`);
    const key = line.slice(0, eq).trim();
    const values = section.get(key) ?? [];
    values.push(line.slice(eq + 1).trim());
    section.set(key, values);
  }
  return unit;
}

function value(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

/** `Environment=` lines as variables (one assignment per line in this unit). */
function unitEnvironment(unit: Unit): Record<string, string> {
  const env: Record<string, string> = {};
  for (const assignment of unit.get("Service")?.get("Environment") ?? []) {
    const eq = assignment.indexOf("=");
    env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
  }
  return env;
}

/** The uncommented `NAME=value` lines of an env file, and every name it mentions. */
function parseEnvFile(text: string): { set: Record<string, string>; mentioned: Set<string> } {
  const set: Record<string, string> = {};
  const mentioned = new Set<string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const assignment = line.replace(/^#\s*/, "").match(/^([A-Z][A-Z0-9_]*)=(.*)$/);
    if (!assignment) continue;
    mentioned.add(assignment[1]);
    if (!line.startsWith("#")) set[assignment[1]] = assignment[2];
  }
  return { set, mentioned };
}

/** systemd time span → seconds ("20s", "1min 30s", "90"). */
function seconds(span: string): number {
  const units: Record<string, number> = { "": 1, s: 1, sec: 1, min: 60, m: 60, h: 3600, ms: 0.001 };
  let total = 0;
  for (const [, n, unit] of span.matchAll(/(\d+(?:\.\d+)?)\s*([a-z]*)/g)) {
    assert.ok(unit in units, `time unit ${unit}`);
    total += Number(n) * units[unit];
  }
  return total;
}

function compileWriteScope(): string {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", root)));
  const flag = (config.tasks.compile as string).split(/\s+/).find((f) =>
    f.startsWith("--allow-write=")
  );
  assert.ok(flag, "the compile task scopes --allow-write");
  return flag.slice("--allow-write=".length);
}

function systemdAnalyzeAvailable(): boolean {
  try {
    new Deno.Command("systemd-analyze", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

Deno.test("deploy: systemd unit of the compiled binary", async (t) => {
  const text = await Deno.readTextFile(UNIT);
  const unit = parseUnit(text);
  const service = (key: string) => value(unit, "Service", key);

  await t.step("nothing in the unit kills V8 or escapes the binary's write scope", () => {
    // V8 JITs into writable+executable pages: this setting would kill the process at start
    assert.notEqual(service("MemoryDenyWriteExecute"), "yes");
    assert.equal(service("ExecStart"), "/usr/local/bin/servana-realtime");
  });

  await t.step("KV_PATH lies under ./data of the state directory", () => {
    assert.equal(service("StateDirectory"), "servana-realtime");
    assert.equal(service("WorkingDirectory"), "/var/lib/servana-realtime");
    const scope = compileWriteScope().replace(/\/+$/, "");
    assert.equal(scope, "./data");
    const kvPath = unitEnvironment(unit).KV_PATH;
    assert.ok(kvPath?.startsWith(`${scope}/`), `KV_PATH=${kvPath} is inside ${scope}`);
    assert.ok(!kvPath.includes(".."), kvPath);
  });

  await t.step("restarts on failure; stop waits longer than the graceful shutdown", () => {
    assert.equal(service("Restart"), "on-failure");
    assert.equal(service("KillSignal"), "SIGTERM");
    const shutdownMs = Number(
      unitEnvironment(unit).SHUTDOWN_TIMEOUT ??
        loadConfig({ APP_ENV: "development" }).shutdownTimeoutMs,
    );
    const stopSec = seconds(service("TimeoutStopSec") ?? "90s");
    assert.ok(stopSec > shutdownMs / 1000 + 2, `TimeoutStopSec ${stopSec}s vs ${shutdownMs} ms`);
    assert.ok(Number(service("LimitNOFILE")) >= 65536, "room for many sockets");
  });

  await t.step({
    name: "systemd-analyze verify reports nothing",
    ignore: !systemdAnalyzeAvailable(),
    fn: async () => {
      // verify also checks that ExecStart exists: point it at a stand-in executable
      const dir = await Deno.makeTempDir({ prefix: "servana-unit-" });
      try {
        const path = `${dir}/servana-realtime.service`;
        await Deno.writeTextFile(
          path,
          text.replace(/^ExecStart=\S+/m, `ExecStart=${Deno.execPath()} --version`),
        );
        const out = await new Deno.Command("systemd-analyze", {
          args: ["verify", "--man=no", path],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const messages = new TextDecoder().decode(out.stdout) +
          new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, messages);
        // unknown keys and bad values are only warnings: there must be none
        assert.equal(messages.trim(), "", messages);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
  if (!systemdAnalyzeAvailable()) {
    console.log("skipped systemd-analyze verify: systemd-analyze is not installed");
  }
});

Deno.test("deploy: example env file", async (t) => {
  const unit = parseUnit(await Deno.readTextFile(UNIT));
  const { set, mentioned } = parseEnvFile(await Deno.readTextFile(ENV_EXAMPLE));

  await t.step("names only variables the service (or Deno) reads", () => {
    for (const name of mentioned) {
      assert.ok(
        CONFIG_VARIABLES.includes(name) || name.startsWith("OTEL_") || name.startsWith("DENO_"),
        `unknown variable ${name}`,
      );
    }
  });

  await t.step("with the unit's environment it is a valid production configuration", () => {
    const config = loadConfig({ ...unitEnvironment(unit), ...set });
    assert.equal(config.appEnv, "production");
    assert.ok(config.auth.jwksUrl || config.auth.jwtSecret, "a token key source");
    assert.ok(config.kvPath?.startsWith("./data/"), String(config.kvPath));
  });

  await t.step("does not move KV_PATH out of ./data nor outlast TimeoutStopSec", () => {
    if (set.KV_PATH !== undefined) assert.ok(set.KV_PATH.startsWith("./data/"), set.KV_PATH);
    if (set.SHUTDOWN_TIMEOUT !== undefined) {
      const stopSec = seconds(value(unit, "Service", "TimeoutStopSec") ?? "90s");
      assert.ok(Number(set.SHUTDOWN_TIMEOUT) / 1000 < stopSec);
    }
  });
});
