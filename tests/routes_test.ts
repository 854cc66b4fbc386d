/**
 * src/routes.ts: `/healthz`, `/readyz` (503 when the store fails and while
 * shutting down), `/metrics` (a bearer token when one is configured, else
 * public or 404), the demo pages and `POST /dev/login`.
 */

import assert from "node:assert/strict";
import { setLogSink } from "../src/log.ts";
import { Metrics } from "../src/metrics.ts";
import { routes, type RoutesOptions, sameSecret } from "../src/routes.ts";

const BASE = "http://127.0.0.1:3000";

function handler(overrides: Partial<RoutesOptions> = {}) {
  const metrics = new Metrics();
  metrics.errors.inc({ code: "ACCESS_DENIED" });
  return {
    metrics,
    handle: routes({
      ready: () => Promise.resolve(),
      closing: () => false,
      storeKind: "kv",
      metrics,
      metricsToken: null,
      metricsPublic: false,
      demo: null,
      devLogin: null,
      ...overrides,
    }),
  };
}

async function call(
  handle: ReturnType<typeof routes>,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; type: string | null; text: string }> {
  const res = await handle(new Request(`${BASE}${path}`, init));
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

/** Runs `fn` with log lines captured. */
async function captureLog<T>(fn: () => Promise<T>): Promise<[T, Record<string, unknown>[]]> {
  const lines: Record<string, unknown>[] = [];
  const previous = setLogSink({ write: (line) => lines.push(JSON.parse(line)) });
  try {
    return [await fn(), lines];
  } finally {
    setLogSink(previous);
  }
}

Deno.test("/healthz answers while the process runs", async () => {
  const { handle } = handler({
    ready: () => Promise.reject(new Error("down")),
    closing: () => true,
  });
  const res = await call(handle, "/healthz");
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.text), { status: "ok" });
});

Deno.test("/readyz: the store answers, fails, or the service is closing", async (t) => {
  await t.step("ready: 200 with the store's kind", async () => {
    const { handle } = handler({ storeKind: "postgres" });
    const res = await call(handle, "/readyz");
    assert.equal(res.status, 200);
    assert.equal(res.type, "application/json");
    assert.deepEqual(JSON.parse(res.text), { status: "ready", store: "postgres" });
  });

  await t.step("the store fails: 503 without internals, one warning line", async () => {
    const { handle } = handler({
      ready: () => Promise.reject(new Error("connect ECONNREFUSED 10.0.0.5:5432")),
    });
    const [res, lines] = await captureLog(() => call(handle, "/readyz"));
    assert.equal(res.status, 503);
    assert.deepEqual(JSON.parse(res.text), { status: "not_ready", reason: "store unavailable" });
    assert.ok(!res.text.includes("10.0.0.5"));
    assert.deepEqual(lines.map((l) => [l.level, l.msg, l.store]), [
      ["warn", "readiness check failed", "kv"],
    ]);
    assert.match(String(lines[0].error), /ECONNREFUSED/);
  });

  await t.step("closing: 503 shutting_down, the store is not asked", async () => {
    let asked = 0;
    const { handle } = handler({
      ready: () => {
        asked++;
        return Promise.resolve();
      },
      closing: () => true,
    });
    const res = await call(handle, "/readyz");
    assert.equal(res.status, 503);
    assert.deepEqual(JSON.parse(res.text), { status: "shutting_down" });
    assert.equal(asked, 0);
  });

  await t.step("closing is read at each request", async () => {
    let closing = false;
    const { handle } = handler({ closing: () => closing });
    assert.equal((await call(handle, "/readyz")).status, 200);
    closing = true;
    assert.equal((await call(handle, "/readyz")).status, 503);
  });
});

Deno.test("/metrics: a token when configured, else public or not there", async (t) => {
  await t.step("with METRICS_TOKEN: only the right bearer token", async () => {
    const { handle, metrics } = handler({ metricsToken: "m-token", metricsPublic: true });
    const ok = await call(handle, "/metrics", { headers: { authorization: "Bearer m-token" } });
    assert.equal(ok.status, 200);
    assert.equal(ok.type, "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(ok.text, metrics.render());
    assert.match(ok.text, /servana_errors_total\{code="ACCESS_DENIED"\} 1/);
    for (
      const authorization of [
        null,
        "",
        "Bearer",
        "Bearer m-toke",
        "Bearer m-token2",
        "bearer m-token",
        "Basic m-token",
        "m-token",
      ]
    ) {
      const headers: Record<string, string> = authorization === null ? {} : { authorization };
      const res = await call(handle, "/metrics", { headers });
      assert.equal(res.status, 401, String(authorization));
      assert.deepEqual(JSON.parse(res.text), { error: "unauthorized" });
    }
  });

  await t.step("without a token and METRICS_PUBLIC: public", async () => {
    const { handle, metrics } = handler({ metricsPublic: true });
    const res = await call(handle, "/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.text, metrics.render());
  });

  await t.step("without a token, not public: 404, as if there were none", async () => {
    const { handle } = handler({ metricsPublic: false });
    const res = await call(handle, "/metrics", { headers: { authorization: "Bearer x" } });
    assert.equal(res.status, 404);
    assert.deepEqual(JSON.parse(res.text), { error: "not_found" });
  });

  await t.step("HEAD is answered like GET; POST is not", async () => {
    const { handle } = handler({ metricsPublic: true });
    const head = await handle(new Request(`${BASE}/metrics`, { method: "HEAD" }));
    assert.equal(head.status, 200);
    await head.body?.cancel();
    assert.equal((await call(handle, "/metrics", { method: "POST" })).status, 404);
  });
});

Deno.test("the demo pages and /dev/login are served only when given", async (t) => {
  await t.step("without them: 404", async () => {
    const { handle } = handler();
    assert.equal((await call(handle, "/")).status, 404);
    assert.equal((await call(handle, "/dev/login", { method: "POST", body: "{}" })).status, 404);
  });

  await t.step("the demo answers GET requests it knows; others are 404", async () => {
    const { handle } = handler({
      demo: (req) => new URL(req.url).pathname === "/" ? new Response("<html>demo</html>") : null,
    });
    assert.equal((await call(handle, "/")).text, "<html>demo</html>");
    assert.equal((await call(handle, "/nope")).status, 404);
    assert.equal((await call(handle, "/", { method: "POST" })).status, 404);
  });

  await t.step("POST /dev/login goes to its handler; other methods do not", async () => {
    const seen: string[] = [];
    const { handle } = handler({
      devLogin: (req) => {
        seen.push(req.method);
        return Promise.resolve(new Response("minted", { status: 200 }));
      },
    });
    const res = await call(handle, "/dev/login", { method: "POST", body: "{}" });
    assert.deepEqual([res.status, res.text], [200, "minted"]);
    assert.equal((await call(handle, "/dev/login")).status, 404);
    assert.equal((await call(handle, "/dev/login", { method: "PUT", body: "{}" })).status, 404);
    assert.deepEqual(seen, ["POST"]);
  });
});

Deno.test("sameSecret: equal strings only", () => {
  assert.equal(sameSecret("Bearer abc", "Bearer abc"), true);
  assert.equal(sameSecret("", ""), true);
  assert.equal(sameSecret("Bearer ab", "Bearer abc"), false);
  assert.equal(sameSecret("Bearer abcd", "Bearer abc"), false);
  assert.equal(sameSecret("Bearer abd", "Bearer abc"), false);
  assert.equal(sameSecret("", "Bearer abc"), false);
  assert.equal(sameSecret("Bearer ábc", "Bearer abc"), false);
});
