/**
 * The demo console's routes (src/demo/mod.ts) without a browser: when they
 * are served, what they serve (the page with its CSP, its script and
 * stylesheet, the official socket.io browser bundle from the installed
 * package), and that the embedded page data cannot break out of its block.
 * The browser side is tests/demo_e2e_test.ts.
 */

import assert from "node:assert/strict";
import { demoCsp, demoPageData, demoRoutes, loadClientBundle } from "../src/demo/mod.ts";
import { demoHtml } from "../src/demo/page.ts";
import { startApp } from "./support/server.ts";

const PRODUCTION = {
  APP_ENV: "production",
  SUPABASE_JWT_SECRET: "a-test-secret-of-some-length-1234",
  SOCKET_CORS_ORIGINS: "https://app.servana.example",
};

async function get(url: string, init?: RequestInit): Promise<{ res: Response; body: string }> {
  const res = await fetch(url, init);
  return { res, body: await res.text() };
}

interface EmbeddedData {
  devLogin: boolean;
  users: { kind: string; id: number; role: string; firstName: string; lastName: string }[];
  groups: { id: number; clientId: number; status: string | null }[];
}

function embeddedData(html: string): EmbeddedData {
  const match = html.match(/<script type="application\/json" id="demo-data">(.*?)<\/script>/s);
  assert.ok(match, "the page embeds its data block");
  return JSON.parse(match[1]);
}

Deno.test("demo routes: disabled unless config.serveDemo", () => {
  assert.equal(demoRoutes({ serveDemo: false }, { devLogin: true }), null);
  const handler = demoRoutes({ serveDemo: true }, { devLogin: true });
  assert.ok(handler);
  assert.equal(handler(new Request("http://x/other")), null, "other paths are not answered");
  assert.equal(handler(new Request("http://x/", { method: "POST" })), null, "only GET and HEAD");
});

Deno.test("demo routes: the socket.io bundle is the installed package's dist/socket.io.min.js", async () => {
  const bundle = loadClientBundle();
  assert.equal(bundle.kind, "min");
  const file = new URL(
    "dist/socket.io.min.js",
    import.meta.resolve("socket.io-client/package.json"),
  );
  assert.equal(bundle.text, await Deno.readTextFile(file));
  assert.match(bundle.text.slice(0, 80), /Socket\.IO v4\.8\.4/);
});

Deno.test("demo routes: development serves the page, its assets and the bundle", async (t) => {
  const running = await startApp({ SEED_FILE: "demo/fixture.json" });
  try {
    await t.step("GET / is the page with a strict Content-Security-Policy", async () => {
      const { res, body } = await get(`${running.url}/`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("cache-control"), "no-store");
      const csp = res.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.match(csp, /style-src 'self'(;|$)/);
      assert.match(csp, new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${running.port} `));
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.match(body, /<script src="\/socket\.io\.min\.js" defer><\/script>/);
      assert.doesNotMatch(body, /https?:\/\//, "nothing from another origin (no CDN)");
      const data = embeddedData(body);
      assert.equal(data.devLogin, true);
      // people are (kind, id): the admin agent 1 and the customer 1 are two entries
      assert.deepEqual(data.users.map((u) => `${u.kind}:${u.id}`), [
        "agent:1",
        "agent:123",
        "agent:124",
        "client:789",
        "client:790",
        "client:1",
      ]);
      assert.deepEqual(
        data.users.map((u) => [u.role, `${u.firstName} ${u.lastName}`.trim()]),
        [
          ["admin", "Ada Admin"],
          ["agent", "John Doe"],
          ["agent", "Jane Roe"],
          ["client", "Carla Client"],
          ["client", "Chris Customer"],
          ["client", "Pia"],
        ],
      );
      assert.deepEqual(data.groups.map((g) => [g.id, g.clientId, g.status]), [
        [456, 789, "active"],
        [457, 790, "active"],
        [458, 789, "resolved"],
        [459, 1, "queued"],
      ]);
    });

    await t.step("the script, the stylesheet and the bundle", async () => {
      const js = await get(`${running.url}/demo.js`);
      assert.equal(js.res.headers.get("content-type"), "text/javascript; charset=utf-8");
      assert.match(js.body, /io\(\{ withCredentials: true \}\)/);
      const css = await get(`${running.url}/demo.css`);
      assert.equal(css.res.headers.get("content-type"), "text/css; charset=utf-8");
      const bundle = await get(`${running.url}/socket.io.min.js`);
      assert.equal(bundle.res.status, 200);
      assert.equal(bundle.res.headers.get("content-type"), "text/javascript; charset=utf-8");
      assert.equal(bundle.body, loadClientBundle().text);
    });

    await t.step("HEAD / answers without a body; other paths stay 404", async () => {
      const head = await fetch(`${running.url}/`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), "");
      const missing = await get(`${running.url}/demo.map`);
      assert.equal(missing.res.status, 404);
      const post = await get(`${running.url}/`, { method: "POST" });
      assert.equal(post.res.status, 404);
    });

    await t.step("the routes do not shadow the service's own", async () => {
      const health = await get(`${running.url}/healthz`);
      assert.equal(health.res.status, 200);
      const login = await get(`${running.url}/dev/login`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kind: "agent", id: 123 }),
      });
      assert.equal(login.res.status, 200);
      assert.match(login.res.headers.get("set-cookie") ?? "", /^access_token=.*HttpOnly/);
    });

    await t.step("POST /dev/login { kind, id }: { token, person } and the cookie", async () => {
      for (
        const [kind, id, name] of [
          ["agent", 1, "Ada Admin"],
          ["client", 1, "Pia"],
          ["client", 789, "Carla Client"],
        ] as const
      ) {
        const { res, body } = await get(`${running.url}/dev/login`, {
          method: "POST",
          headers: { "Content-Type": "application/json; charset=utf-8" },
          body: JSON.stringify({ kind, id }),
        });
        assert.equal(res.status, 200, body);
        const answer = JSON.parse(body) as {
          token: string;
          person: { kind: string; id: number; firstName: string; lastName: string };
        };
        assert.equal(answer.person.kind, kind);
        assert.equal(answer.person.id, id);
        assert.equal(`${answer.person.firstName} ${answer.person.lastName}`.trim(), name);
        assert.equal(
          res.headers.get("set-cookie"),
          `access_token=${answer.token}; HttpOnly; Path=/; SameSite=Lax; Max-Age=3600`,
        );
      }
    });

    await t.step("POST /dev/login refuses what a cross-site page could send", async () => {
      const cases: [string, RequestInit, number, string][] = [
        [
          "no Content-Type",
          { body: JSON.stringify({ kind: "agent", id: 123 }) },
          415,
          "INVALID_DATA",
        ],
        [
          "text/plain",
          {
            headers: { "Content-Type": "text/plain" },
            body: JSON.stringify({ kind: "agent", id: 123 }),
          },
          415,
          "INVALID_DATA",
        ],
        [
          "a form post",
          {
            headers: { "Content-Type": "application/x-www-form-urlencoded" },
            body: "kind=agent&id=123",
          },
          415,
          "INVALID_DATA",
        ],
        [
          "a foreign Origin",
          {
            headers: { "Content-Type": "application/json", Origin: "https://evil.example" },
            body: JSON.stringify({ kind: "agent", id: 123 }),
          },
          403,
          "ACCESS_DENIED",
        ],
        [
          "the old { userId } body",
          {
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ userId: 123 }),
          },
          400,
          "INVALID_DATA",
        ],
        [
          "an unknown kind",
          {
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ kind: "admin", id: 1 }),
          },
          400,
          "INVALID_DATA",
        ],
        [
          "nobody with that id",
          {
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ kind: "client", id: 123 }),
          },
          404,
          "USER_NOT_FOUND",
        ],
      ];
      for (const [label, init, status, code] of cases) {
        const { res, body } = await get(`${running.url}/dev/login`, { method: "POST", ...init });
        assert.equal(res.status, status, label);
        assert.equal(JSON.parse(body).code, code, label);
        assert.equal(res.headers.get("set-cookie"), null, `${label}: no cookie`);
      }
      // the page's own origin is allowed
      const own = await get(`${running.url}/dev/login`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Origin: running.url },
        body: JSON.stringify({ kind: "client", id: 789 }),
      });
      assert.equal(own.res.status, 200);
    });
  } finally {
    await running.close();
  }
});

Deno.test("demo routes: production hides the console unless SERVE_DEMO=true", async (t) => {
  await t.step("default: GET / is 404", async () => {
    const running = await startApp(PRODUCTION);
    try {
      for (const path of ["/", "/demo.js", "/socket.io.min.js"]) {
        const { res } = await get(`${running.url}${path}`);
        assert.equal(res.status, 404, path);
      }
    } finally {
      await running.close();
    }
  });
  await t.step("SERVE_DEMO=true: served, and the page says dev login is off", async () => {
    const running = await startApp({ ...PRODUCTION, SERVE_DEMO: "true" });
    try {
      const { res, body } = await get(`${running.url}/`);
      assert.equal(res.status, 200);
      assert.equal(embeddedData(body).devLogin, false);
      const login = await get(`${running.url}/dev/login`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kind: "agent", id: 123 }),
      });
      assert.equal(login.res.status, 404);
    } finally {
      await running.close();
    }
  });
});

Deno.test("demo page: embedded data cannot close its script block", () => {
  const data = demoPageData(true);
  data.users[0].firstName = "</script><script>alert(1)</script><!--";
  const html = demoHtml(data);
  assert.equal(html.match(/<\/script>/g)?.length, 3, "only the page's own three script blocks");
  assert.equal(embeddedData(html).users.length, 6);
  assert.equal(embeddedData(html).users[0].firstName, "</script><script>alert(1)</script><!--");
});

Deno.test("demo CSP: a Host header that is not a plain host is left out", () => {
  const evil = new Request("http://x/", { headers: { host: "evil.test; script-src *" } });
  assert.equal(demoCsp(evil).includes("evil"), false);
  const good = new Request("http://x/", { headers: { host: "localhost:3000" } });
  assert.match(demoCsp(good), /connect-src 'self' ws:\/\/localhost:3000 wss:\/\/localhost:3000;/);
});
