import assert from "node:assert/strict";
import { allowedOrigin, applyCors, type CorsOptions, preflight } from "../src/engine/cors.ts";
import { Engine } from "../src/engine/mod.ts";

const URL_ = "http://127.0.0.1/socket.io/?EIO=4&transport=polling";

function request(origin: string | null, init: RequestInit = {}): Request {
  const headers = new Headers(init.headers);
  if (origin !== null) headers.set("Origin", origin);
  return new Request(URL_, { ...init, headers });
}

async function corsHeaders(origin: string | null, options: CorsOptions): Promise<Headers> {
  const headers = new Headers();
  await applyCors(request(origin), headers, options);
  return headers;
}

const INFO = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
  completed: Promise.resolve(),
} as unknown as Deno.ServeHandlerInfo;

Deno.test("engine CORS", async (t) => {
  await t.step("allowedOrigin: no rule or '*' answers '*' whatever the origin", async () => {
    assert.equal(await allowedOrigin(request("https://a.example"), {}), "*");
    assert.equal(await allowedOrigin(request(null), { origin: "*" }), "*");
  });

  await t.step("allowedOrigin: false refuses every origin", async () => {
    assert.equal(await allowedOrigin(request("https://a.example"), { origin: false }), null);
  });

  await t.step("allowedOrigin: true reflects the request's origin, none without one", async () => {
    assert.equal(
      await allowedOrigin(request("https://a.example"), { origin: true }),
      "https://a.example",
    );
    assert.equal(await allowedOrigin(request(null), { origin: true }), null);
  });

  await t.step("allowedOrigin: a string must match exactly", async () => {
    const options = { origin: "https://app.example" };
    assert.equal(
      await allowedOrigin(request("https://app.example"), options),
      "https://app.example",
    );
    assert.equal(await allowedOrigin(request("https://app.example.evil"), options), null);
    assert.equal(await allowedOrigin(request("http://app.example"), options), null);
    assert.equal(await allowedOrigin(request(null), options), null);
  });

  await t.step("allowedOrigin: a RegExp is tested against the origin", async () => {
    const options = { origin: /^https:\/\/[a-z]+\.example$/ };
    assert.equal(await allowedOrigin(request("https://x.example"), options), "https://x.example");
    assert.equal(await allowedOrigin(request("https://x.example.evil"), options), null);
  });

  await t.step("allowedOrigin: a list allows any of its strings or patterns", async () => {
    const options = { origin: ["https://a.example", /\.b\.example$/] };
    assert.equal(await allowedOrigin(request("https://a.example"), options), "https://a.example");
    assert.equal(
      await allowedOrigin(request("https://x.b.example"), options),
      "https://x.b.example",
    );
    assert.equal(await allowedOrigin(request("https://c.example"), options), null);
    assert.equal(await allowedOrigin(request("https://a.example"), { origin: [] }), null);
  });

  await t.step("allowedOrigin: a function decides (sync or async); a throw refuses", async () => {
    const seen: (string | null)[] = [];
    const sync = (origin: string | null) => {
      seen.push(origin);
      return origin === "https://ok.example";
    };
    assert.equal(
      await allowedOrigin(request("https://ok.example"), { origin: sync }),
      "https://ok.example",
    );
    assert.equal(await allowedOrigin(request("https://no.example"), { origin: sync }), null);
    assert.deepEqual(seen, ["https://ok.example", "https://no.example"]);
    const asyncRule = (origin: string | null) => Promise.resolve(origin === "https://ok.example");
    assert.equal(
      await allowedOrigin(request("https://ok.example"), { origin: asyncRule }),
      "https://ok.example",
    );
    const throwing = () => {
      throw new Error("boom");
    };
    assert.equal(await allowedOrigin(request("https://ok.example"), { origin: throwing }), null);
    const rejecting = () => Promise.reject(new Error("boom"));
    assert.equal(await allowedOrigin(request("https://ok.example"), { origin: rejecting }), null);
  });

  await t.step(
    "applyCors: allowed origin is echoed with Vary: Origin and credentials",
    async () => {
      const headers = await corsHeaders("https://app.example", {
        origin: ["https://app.example"],
        credentials: true,
        exposedHeaders: ["X-One", "X-Two"],
      });
      assert.equal(headers.get("access-control-allow-origin"), "https://app.example");
      assert.equal(headers.get("access-control-allow-credentials"), "true");
      assert.equal(headers.get("access-control-expose-headers"), "X-One,X-Two");
      assert.equal(headers.get("vary"), "Origin");
    },
  );

  await t.step("applyCors: refused origin gets no CORS headers, only Vary: Origin", async () => {
    const headers = await corsHeaders("https://evil.example", {
      origin: ["https://app.example"],
      credentials: true,
    });
    assert.equal(headers.get("access-control-allow-origin"), null);
    assert.equal(headers.get("access-control-allow-credentials"), null);
    assert.equal(headers.get("vary"), "Origin");
  });

  await t.step("applyCors: '*' answers '*' without Vary; credentials off by default", async () => {
    const headers = await corsHeaders("https://a.example", { origin: "*" });
    assert.equal(headers.get("access-control-allow-origin"), "*");
    assert.equal(headers.get("vary"), null);
    assert.equal(headers.get("access-control-allow-credentials"), null);
    assert.equal(headers.get("access-control-expose-headers"), null);
  });

  await t.step("preflight: 204 with default methods and reflected request headers", async () => {
    const res = await preflight(
      request("https://app.example", {
        method: "OPTIONS",
        headers: {
          "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": "content-type,x-token",
        },
      }),
      { origin: "https://app.example", credentials: true },
    );
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-origin"), "https://app.example");
    assert.equal(res.headers.get("access-control-allow-credentials"), "true");
    assert.equal(res.headers.get("access-control-allow-methods"), "GET,POST");
    assert.equal(res.headers.get("access-control-allow-headers"), "content-type,x-token");
    assert.equal(res.headers.get("vary"), "Origin, Access-Control-Request-Headers");
    assert.equal(res.headers.get("access-control-max-age"), null);
    assert.equal(res.headers.get("content-length"), "0");
    assert.equal(await res.text(), "");
  });

  await t.step("preflight: configured methods, headers and max age", async () => {
    const res = await preflight(
      request("https://app.example", {
        method: "OPTIONS",
        headers: { "Access-Control-Request-Headers": "x-other" },
      }),
      {
        origin: true,
        methods: ["GET", "POST", "PUT"],
        allowedHeaders: ["Authorization"],
        maxAge: 600,
      },
    );
    await res.body?.cancel();
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-methods"), "GET,POST,PUT");
    assert.equal(res.headers.get("access-control-allow-headers"), "Authorization");
    assert.equal(res.headers.get("access-control-max-age"), "600");
    assert.equal(res.headers.get("vary"), "Origin");
  });

  await t.step("preflight: refused origin still 204 but without allow-origin", async () => {
    const res = await preflight(request("https://evil.example", { method: "OPTIONS" }), {
      origin: ["https://app.example"],
    });
    await res.body?.cancel();
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  });

  await t.step(
    "through the engine: preflight, handshake and error replies carry CORS",
    async () => {
      const engine = new Engine({
        cors: { origin: ["https://app.example"], credentials: true },
        pingInterval: 60_000,
        pingTimeout: 60_000,
      });
      const handler = engine.handler();
      try {
        const pre = await handler(
          request("https://app.example", {
            method: "OPTIONS",
            headers: { "Access-Control-Request-Method": "POST" },
          }),
          INFO,
        );
        await pre.body?.cancel();
        assert.equal(pre.status, 204);
        assert.equal(pre.headers.get("access-control-allow-origin"), "https://app.example");

        const open = await handler(request("https://app.example"), INFO);
        assert.equal(open.status, 200);
        assert.equal(open.headers.get("access-control-allow-origin"), "https://app.example");
        assert.equal(open.headers.get("access-control-allow-credentials"), "true");
        assert.ok((await open.text()).startsWith("0{"));

        const bad = await handler(
          new Request("http://127.0.0.1/socket.io/?EIO=4&transport=nope", {
            headers: { Origin: "https://app.example" },
          }),
          INFO,
        );
        assert.equal(bad.status, 400);
        assert.equal(bad.headers.get("access-control-allow-origin"), "https://app.example");
        assert.deepEqual(await bad.json(), { code: 0, message: "Transport unknown" });

        const evil = await handler(request("https://evil.example"), INFO);
        assert.equal(evil.headers.get("access-control-allow-origin"), null);
        await evil.body?.cancel();
      } finally {
        engine.close();
      }
    },
  );

  await t.step(
    "through the engine: no cors option, no CORS headers and OPTIONS is not a preflight",
    async () => {
      const engine = new Engine();
      const handler = engine.handler();
      const res = await handler(
        request("https://app.example", { method: "OPTIONS" }),
        INFO,
      );
      assert.equal(res.headers.get("access-control-allow-origin"), null);
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { code: 2, message: "Bad handshake method" });
      engine.close();
    },
  );
});
