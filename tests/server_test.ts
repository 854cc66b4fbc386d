/**
 * src/server.ts HTTP routes through a running service: /healthz, /readyz
 * (ready, store down, shutting down), unknown routes, and /metrics (text
 * exposition format, public in development, hidden in production unless
 * METRICS_TOKEN (bearer) or METRICS_PUBLIC=true).
 */

import assert from "node:assert/strict";
import { io, type Socket } from "socket.io-client";
import { type LogSink, setLogSink } from "../src/log.ts";
import { KvStore } from "../src/store/kv_store.ts";
import { tokenFor } from "./support/clients.ts";
import { startApp } from "./support/server.ts";

const FIXTURE = decodeURIComponent(new URL("../demo/fixture.json", import.meta.url).pathname);

/** Silences the service's log lines for a test; returns the restore function. */
function quietLog(): () => void {
  const sink: LogSink = { write() {} };
  const previous = setLogSink(sink);
  return () => setLogSink(previous);
}

async function request(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; type: string | null; body: string }> {
  const response = await fetch(url, init);
  return {
    status: response.status,
    type: response.headers.get("content-type"),
    body: await response.text(),
  };
}

/** A KV store whose health check fails once `down` is set, as a store that lost its database would. */
class DownStore extends KvStore {
  down = false;
  override ping(): Promise<void> {
    return this.down ? Promise.reject(new Error("store unreachable")) : super.ping();
  }
}

/** Connects a socket.io client or rejects with the connect_error. */
function connect(url: string, options: Record<string, unknown>): Promise<Socket> {
  const socket = io(url, { forceNew: true, reconnection: false, ...options });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (error) => {
      socket.close();
      reject(error);
    });
  });
}

Deno.test("/healthz answers 200", async () => {
  const restore = quietLog();
  const running = await startApp();
  try {
    const get = await request(`${running.url}/healthz`);
    assert.equal(get.status, 200);
    assert.equal(get.type, "application/json");
    assert.deepEqual(JSON.parse(get.body), { status: "ok" });
    const head = await request(`${running.url}/healthz`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
  } finally {
    await running.close();
    restore();
  }
});

Deno.test("/readyz: 200 when the store answers, 503 when it does not or while closing", async (t) => {
  const restore = quietLog();
  try {
    await t.step("ready", async () => {
      const running = await startApp();
      try {
        const ready = await request(`${running.url}/readyz`);
        assert.equal(ready.status, 200);
        assert.deepEqual(JSON.parse(ready.body), { status: "ready", store: "kv" });
      } finally {
        await running.close();
      }
    });

    await t.step("a store down at start-up stops the start", async () => {
      const kv = await Deno.openKv(":memory:");
      const store = new DownStore(kv);
      store.down = true;
      try {
        await assert.rejects(startApp({}, { kv, store }), /store unreachable/);
      } finally {
        kv.close();
      }
    });

    await t.step("store down after start-up", async () => {
      const kv = await Deno.openKv(":memory:");
      const store = new DownStore(kv);
      const running = await startApp({}, { kv, store });
      try {
        assert.equal((await request(`${running.url}/readyz`)).status, 200);
        store.down = true;
        const down = await request(`${running.url}/readyz`);
        assert.equal(down.status, 503);
        assert.equal(JSON.parse(down.body).status, "not_ready");
        // liveness does not depend on the store
        assert.equal((await request(`${running.url}/healthz`)).status, 200);
      } finally {
        await running.close();
      }
    });

    await t.step("503 once close has begun, also for new Engine.IO requests", async () => {
      const running = await startApp();
      try {
        const closing = running.app.close();
        const readyz = await request(`${running.url}/readyz`);
        const engine = await request(`${running.url}/socket.io/?EIO=4&transport=polling`);
        await closing;
        assert.equal(readyz.status, 503);
        assert.deepEqual(JSON.parse(readyz.body), { status: "shutting_down" });
        assert.equal(engine.status, 503);
        // liveness still answers until the HTTP server stops
        assert.equal((await request(`${running.url}/healthz`)).status, 200);
      } finally {
        await running.close();
      }
    });
  } finally {
    restore();
  }
});

Deno.test("unknown routes and methods answer 404", async (t) => {
  const restore = quietLog();
  const running = await startApp({ SERVE_DEMO: "false" });
  try {
    const cases: Array<[string, string]> = [
      ["GET", "/nope"],
      ["GET", "/healthz/extra"],
      ["GET", "/dev/login"],
      ["POST", "/healthz"],
      ["DELETE", "/metrics"],
      ["PUT", "/readyz"],
      ["GET", "/"],
      ["GET", "/.env"],
    ];
    for (const [method, path] of cases) {
      await t.step(`${method} ${path}`, async () => {
        const response = await request(`${running.url}${path}`, { method });
        assert.equal(response.status, 404);
        assert.deepEqual(JSON.parse(response.body), { error: "not_found" });
      });
    }
  } finally {
    await running.close();
    restore();
  }
});

Deno.test("/metrics: Prometheus text format reflecting the service", async () => {
  const restore = quietLog();
  const running = await startApp({ SEED_FILE: FIXTURE });
  try {
    const token = await tokenFor(running, "agent:123");
    const socket = await connect(running.url, { transports: ["websocket"], auth: { token } });
    try {
      await assert.rejects(connect(running.url, { transports: ["websocket"] }));

      const metrics = await request(`${running.url}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(metrics.type ?? "", /^text\/plain; version=0\.0\.4/);
      const lines = metrics.body.split("\n");
      assert.ok(lines.includes("# TYPE servana_sockets gauge"));
      assert.ok(lines.includes("# TYPE servana_auth_failures_total counter"));
      assert.ok(
        lines.includes('servana_sockets{role="agent",transport="websocket"} 1'),
        metrics.body,
      );
      assert.ok(
        lines.includes('servana_auth_failures_total{reason="missing_token"} 1'),
        metrics.body,
      );
      // every sample line is `name{labels} value` or `name value`
      for (const line of lines) {
        if (line === "" || line.startsWith("# ")) continue;
        assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+-]+$/, line);
      }
      assert.ok(!metrics.body.includes(token.split(".")[2]), "no token in the metrics");
    } finally {
      socket.close();
    }
  } finally {
    await running.close();
    restore();
  }
});

Deno.test("/metrics with METRICS_TOKEN: 401 without the bearer, 200 with it", async (t) => {
  const restore = quietLog();
  const secret = "metrics-bearer-0123456789";
  const running = await startApp({ METRICS_TOKEN: secret });
  try {
    const refusals: Array<[string, Record<string, string>]> = [
      ["no Authorization", {}],
      ["wrong bearer", { authorization: "Bearer not-the-token" }],
      ["empty bearer", { authorization: "Bearer " }],
      ["token without the scheme", { authorization: secret }],
      ["token as Basic", { authorization: `Basic ${secret}` }],
      ["a prefix of the token", { authorization: `Bearer ${secret.slice(0, -1)}` }],
    ];
    for (const [name, headers] of refusals) {
      await t.step(name, async () => {
        const response = await request(`${running.url}/metrics`, { headers });
        assert.equal(response.status, 401);
        assert.ok(!response.body.includes("servana_"), "metrics leaked");
        assert.ok(!response.body.includes(secret), "token echoed");
      });
    }
    await t.step("the right bearer", async () => {
      const response = await request(`${running.url}/metrics`, {
        headers: { authorization: `Bearer ${secret}` },
      });
      assert.equal(response.status, 200);
      assert.ok(response.body.includes("# TYPE servana_sockets gauge"));
    });
    await t.step("health endpoints stay open", async () => {
      assert.equal((await request(`${running.url}/healthz`)).status, 200);
      assert.equal((await request(`${running.url}/readyz`)).status, 200);
    });
  } finally {
    await running.close();
    restore();
  }
});

/** A production configuration the service starts with (no dev tokens, no demo). */
const PRODUCTION = {
  APP_ENV: "production",
  SUPABASE_JWT_SECRET: "a-production-test-secret-0123456789",
  SOCKET_CORS_ORIGINS: "https://app.servana.example",
};

Deno.test("/metrics in production: 404 unless METRICS_TOKEN or METRICS_PUBLIC=true", async (t) => {
  const restore = quietLog();
  try {
    await t.step("neither set: 404 like any unknown route, nothing leaked", async () => {
      const running = await startApp(PRODUCTION);
      try {
        for (
          const headers of [{}, { authorization: "Bearer anything" }] as Record<string, string>[]
        ) {
          const response = await request(`${running.url}/metrics`, { headers });
          assert.equal(response.status, 404);
          assert.deepEqual(JSON.parse(response.body), { error: "not_found" });
        }
        // the health endpoints are not affected
        assert.equal((await request(`${running.url}/healthz`)).status, 200);
        assert.equal((await request(`${running.url}/readyz`)).status, 200);
      } finally {
        await running.close();
      }
    });

    await t.step("METRICS_PUBLIC=true: served without a token", async () => {
      const running = await startApp({ ...PRODUCTION, METRICS_PUBLIC: "true" });
      try {
        const response = await request(`${running.url}/metrics`);
        assert.equal(response.status, 200);
        assert.match(response.type ?? "", /^text\/plain; version=0\.0\.4/);
        assert.ok(response.body.includes("# TYPE servana_sockets gauge"));
      } finally {
        await running.close();
      }
    });

    await t.step("METRICS_TOKEN: the bearer is required", async () => {
      const secret = "production-metrics-bearer-42";
      const running = await startApp({ ...PRODUCTION, METRICS_TOKEN: secret });
      try {
        const without = await request(`${running.url}/metrics`);
        assert.equal(without.status, 401);
        assert.ok(!without.body.includes("servana_"), "metrics leaked");
        const withToken = await request(`${running.url}/metrics`, {
          headers: { authorization: `Bearer ${secret}` },
        });
        assert.equal(withToken.status, 200);
        assert.ok(withToken.body.includes("# TYPE servana_sockets gauge"));
      } finally {
        await running.close();
      }
    });
  } finally {
    restore();
  }
});
