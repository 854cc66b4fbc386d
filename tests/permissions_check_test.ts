/**
 * src/permissions.ts: the start-up check of what the process may read and
 * write against `KV_PATH` and `SEED_FILE`, with a fake `query` that grants
 * exactly the listed paths and records what was asked.
 */

import assert from "node:assert/strict";
import { isPermissionError, permissionProblems, WRITE_SCOPE } from "../src/permissions.ts";

interface Grants {
  read?: string[];
  write?: string[];
}

/** A `Deno.permissions.query` that grants the listed (name, path) pairs only. */
function fakeQuery(grants: Grants) {
  const asked: string[] = [];
  const query = (descriptor: Deno.PermissionDescriptor): Promise<Deno.PermissionStatus> => {
    const { name } = descriptor;
    const path = String((descriptor as { path?: string | URL }).path);
    asked.push(`${name}:${path}`);
    const list = name === "read" ? grants.read : name === "write" ? grants.write : undefined;
    const state = list?.includes(path) ? "granted" : "prompt";
    return Promise.resolve({ state } as Deno.PermissionStatus);
  };
  return { query, asked };
}

const EVERYTHING = {
  read: ["./data/servana.kv", "demo/fixture.json"],
  write: ["./data/servana.kv", "./data"],
};

Deno.test("permissionProblems: nothing to say when everything is granted", async () => {
  const { query, asked } = fakeQuery(EVERYTHING);
  assert.deepEqual(
    await permissionProblems({ kvPath: "./data/servana.kv", seedFile: "demo/fixture.json" }, {
      query,
    }),
    [],
  );
  assert.deepEqual(asked.sort(), [
    "read:./data/servana.kv",
    "read:demo/fixture.json",
    "write:./data",
    "write:./data/servana.kv",
  ]);
});

Deno.test("permissionProblems: KV that is not a file is not checked", async (t) => {
  for (const kvPath of [null, ":memory:", "https://api.deno.com/databases/abc/connect"]) {
    await t.step(String(kvPath), async () => {
      const { query, asked } = fakeQuery({});
      assert.deepEqual(await permissionProblems({ kvPath, seedFile: null }, { query }), []);
      assert.deepEqual(asked, []);
    });
  }
});

Deno.test("permissionProblems: a KV file outside the write scope", async (t) => {
  await t.step("the file may not be written", async () => {
    const { query } = fakeQuery({ read: ["/var/lib/servana.kv"], write: ["/var/lib"] });
    const problems = await permissionProblems({ kvPath: "/var/lib/servana.kv", seedFile: null }, {
      query,
    });
    assert.equal(problems.length, 1);
    assert.ok(
      problems[0].startsWith(
        "KV_PATH: /var/lib/servana.kv is outside what this process may write;",
      ),
      problems[0],
    );
    assert.ok(problems[0].includes(`may write only under ${WRITE_SCOPE}`), problems[0]);
    assert.ok(problems[0].includes("KV_PATH=./data/servana.kv"), problems[0]);
    assert.ok(!problems[0].includes("\n"));
  });

  await t.step("its folder may not be written (SQLite writes its journal there)", async () => {
    const { query, asked } = fakeQuery({
      read: ["/var/lib/servana.kv"],
      write: ["/var/lib/servana.kv"],
    });
    const problems = await permissionProblems({ kvPath: "/var/lib/servana.kv", seedFile: null }, {
      query,
    });
    assert.ok(asked.includes("write:/var/lib"), JSON.stringify(asked));
    assert.equal(problems.length, 1);
    assert.match(
      problems[0],
      /^KV_PATH: \/var\/lib\/servana\.kv is outside what this process may write;/,
    );
  });

  await t.step("a bare file name: its folder is the working directory", async () => {
    const { query, asked } = fakeQuery({ read: ["servana.kv"], write: ["servana.kv", "."] });
    assert.deepEqual(
      await permissionProblems({ kvPath: "servana.kv", seedFile: null }, { query }),
      [],
    );
    assert.ok(asked.includes("write:."), JSON.stringify(asked));
  });

  await t.step("writable but not readable", async () => {
    const { query } = fakeQuery({ write: ["./data/servana.kv", "./data"] });
    const problems = await permissionProblems({ kvPath: "./data/servana.kv", seedFile: null }, {
      query,
    });
    assert.equal(problems.length, 1);
    assert.match(
      problems[0],
      /^KV_PATH: \.\/data\/servana\.kv is outside what this process may read;/,
    );
  });
});

Deno.test("permissionProblems: a seed file that may not be read", async () => {
  const { query } = fakeQuery({ ...EVERYTHING, read: ["./data/servana.kv"] });
  assert.deepEqual(
    await permissionProblems({ kvPath: "./data/servana.kv", seedFile: "/etc/seed.json" }, {
      query,
    }),
    ["SEED_FILE: /etc/seed.json may not be read by this process; run with --allow-read for it"],
  );
});

Deno.test("permissionProblems: every problem, one line each, KV first", async () => {
  const { query } = fakeQuery({});
  const problems = await permissionProblems({ kvPath: "/srv/kv.sqlite", seedFile: "seed.json" }, {
    query,
  });
  assert.equal(problems.length, 2);
  assert.match(problems[0], /^KV_PATH: \/srv\/kv\.sqlite is outside what this process may write;/);
  assert.match(problems[1], /^SEED_FILE: seed\.json may not be read/);
  assert.ok(problems.every((problem) => !problem.includes("\n")));
});

Deno.test("isPermissionError: Deno's refusals only", () => {
  assert.equal(isPermissionError(new Deno.errors.NotCapable("no")), true);
  assert.equal(isPermissionError(new Deno.errors.PermissionDenied("no")), true);
  assert.equal(isPermissionError(new Deno.errors.NotFound("no")), false);
  assert.equal(isPermissionError(new Error("NotCapable")), false);
  assert.equal(isPermissionError("NotCapable"), false);
});
