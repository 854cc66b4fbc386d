import assert from "node:assert/strict";
import {
  extractToken,
  extractTokens,
  hasHeaderCredential,
  isAmbientCredential,
  parseCookieHeader,
  tokenFromSupabaseCookieValue,
} from "../src/auth/token_source.ts";

const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
const OTHER = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2In0.b3RoZXI";

function headers(init: Record<string, string>): Headers {
  return new Headers(init);
}

function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const SESSION = JSON.stringify({
  access_token: JWT,
  refresh_token: "refresh-xyz",
  token_type: "bearer",
  expires_in: 3600,
  user: { id: "u", email: "ü@example.com" },
});

Deno.test("extractToken: sources and their order", async (t) => {
  await t.step("handshake auth.token", () => {
    assert.deepEqual(extractToken({ headers: headers({}), auth: { token: JWT } }), {
      token: JWT,
      source: "auth",
    });
  });

  await t.step("auth.token with a Bearer prefix is accepted", () => {
    const found = extractToken({ headers: headers({}), auth: { token: `Bearer ${JWT}` } });
    assert.deepEqual(found, { token: JWT, source: "auth" });
  });

  await t.step("Authorization: Bearer, scheme case-insensitive", () => {
    for (const scheme of ["Bearer", "bearer", "BEARER"]) {
      const found = extractToken({ headers: headers({ authorization: `${scheme} ${JWT}` }) });
      assert.deepEqual(found, { token: JWT, source: "bearer" });
    }
  });

  await t.step("auth.token wins over Bearer, Bearer over cookies", () => {
    const all = headers({ authorization: `Bearer ${OTHER}`, cookie: `access_token=${JWT}` });
    assert.equal(extractToken({ headers: all, auth: { token: JWT } })?.source, "auth");
    const found = extractToken({ headers: all });
    assert.deepEqual(found, { token: OTHER, source: "bearer" });
  });

  await t.step("default cookie access_token", () => {
    const found = extractToken({ headers: headers({ cookie: `theme=dark; access_token=${JWT}` }) });
    assert.deepEqual(found, { token: JWT, source: "cookie", cookieName: "access_token" });
  });

  await t.step("configured cookie names, in order, replace the default", () => {
    const h = headers({ cookie: `access_token=${OTHER}; b=${JWT}; a=${OTHER}` });
    assert.deepEqual(extractToken({ headers: h }, { cookieNames: ["a", "b"] }), {
      token: OTHER,
      source: "cookie",
      cookieName: "a",
    });
    assert.equal(
      extractToken({ headers: headers({ cookie: `access_token=${JWT}` }) }, {
        cookieNames: ["session"],
      }),
      null,
    );
  });

  await t.step("configured cookie wins over the Supabase cookie", () => {
    const h = headers({
      cookie: `sb-abc-auth-token=${encodeURIComponent(SESSION)}; access_token=${OTHER}`,
    });
    assert.equal(extractToken({ headers: h })?.token, OTHER);
  });

  await t.step("URL-encoded cookie values are decoded", () => {
    const h = headers({ cookie: `access_token=${encodeURIComponent(JWT)}` });
    assert.equal(extractToken({ headers: h })?.token, JWT);
  });

  await t.step("nothing at all", () => {
    assert.equal(extractToken({ headers: headers({}) }), null);
    assert.equal(extractToken({ headers: headers({ cookie: "theme=dark" }) }), null);
  });
});

Deno.test("extractToken: @supabase/ssr cookie", async (t) => {
  await t.step("raw JSON session (URL-encoded)", () => {
    const h = headers({ cookie: `sb-abcdefgh-auth-token=${encodeURIComponent(SESSION)}` });
    assert.deepEqual(extractToken({ headers: h }), {
      token: JWT,
      source: "cookie",
      cookieName: "sb-abcdefgh-auth-token",
    });
  });

  await t.step("array form of old versions", () => {
    const value = encodeURIComponent(JSON.stringify([JWT, "refresh", null, null, []]));
    const h = headers({ cookie: `sb-abc-auth-token=${value}` });
    assert.equal(extractToken({ headers: h })?.token, JWT);
  });

  await t.step("base64- prefixed form", () => {
    const h = headers({ cookie: `sb-abc-auth-token=base64-${base64url(SESSION)}` });
    assert.equal(extractToken({ headers: h })?.token, JWT);
  });

  await t.step("chunked base64 form, chunks concatenated in numeric order", () => {
    const value = `base64-${base64url(SESSION)}`;
    const size = Math.ceil(value.length / 3);
    const chunks = [value.slice(0, size), value.slice(size, 2 * size), value.slice(2 * size)];
    // sent out of order on purpose
    const cookie = `sb-abc-auth-token.2=${chunks[2]}; sb-abc-auth-token.0=${
      chunks[0]
    }; sb-abc-auth-token.1=${chunks[1]}`;
    assert.deepEqual(extractToken({ headers: headers({ cookie }) }), {
      token: JWT,
      source: "cookie",
      cookieName: "sb-abc-auth-token",
    });
  });

  await t.step("chunked raw JSON, split inside a percent escape", () => {
    const encoded = encodeURIComponent(SESSION);
    const cut = encoded.indexOf("%") + 1; // splits "%22" into "%" | "22"
    const cookie = `sb-abc-auth-token.0=${encoded.slice(0, cut)}; sb-abc-auth-token.1=${
      encoded.slice(cut)
    }`;
    assert.equal(extractToken({ headers: headers({ cookie }) })?.token, JWT);
  });

  await t.step("a missing chunk ends the sequence", () => {
    const value = `base64-${base64url(SESSION)}`;
    const cookie = `sb-abc-auth-token.0=${value.slice(0, 10)}; sb-abc-auth-token.2=${
      value.slice(10)
    }`;
    assert.equal(extractToken({ headers: headers({ cookie }) }), null);
  });

  await t.step("the code-verifier cookie is not a session", () => {
    const cookie = `sb-abc-auth-token-code-verifier=${encodeURIComponent(JSON.stringify(JWT))}`;
    assert.equal(extractToken({ headers: headers({ cookie }) }), null);
  });
});

Deno.test("extractToken: garbage is absent, never thrown", async (t) => {
  const garbageCookies = [
    "sb-abc-auth-token=base64-!!!notbase64",
    "sb-abc-auth-token=base64-",
    `sb-abc-auth-token=base64-${base64url("{not json")}`,
    `sb-abc-auth-token=base64-${btoa("\xff\xfe\xfd")}`,
    "sb-abc-auth-token=%7B%22access_token%22%3A42%7D",
    "sb-abc-auth-token=%E0%A4%A",
    "sb-abc-auth-token=null",
    "sb-abc-auth-token=%5B%5D",
    "sb-abc-auth-token=%22just-a-string%22",
    `sb-abc-auth-token=${encodeURIComponent(JSON.stringify({ access_token: "" }))}`,
    `sb-abc-auth-token=${encodeURIComponent(JSON.stringify({ access_token: "a b" }))}`,
    "access_token=",
    "access_token=%20%20",
    "=novalue; ;;; access_token",
    `access_token=${"x".repeat(20_000)}`,
    `sb-abc-auth-token=base64-${"A".repeat(70_000)}`,
  ];
  for (const cookie of garbageCookies) {
    await t.step(`cookie ${cookie.slice(0, 40)}`, () => {
      assert.equal(extractToken({ headers: headers({ cookie }) }), null);
    });
  }

  const garbageAuth: unknown[] = [
    null,
    "token",
    42,
    [],
    { token: 42 },
    { token: "" },
    { token: "   " },
    { token: { nested: JWT } },
    {
      get token(): string {
        throw new Error("hostile getter");
      },
    },
  ];
  for (const [i, auth] of garbageAuth.entries()) {
    await t.step(`garbage auth #${i}`, () => {
      assert.equal(extractToken({ headers: headers({}), auth }), null);
    });
  }

  await t.step("non-Bearer Authorization schemes", () => {
    for (const value of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Token x"]) {
      assert.equal(extractToken({ headers: headers({ authorization: value }) }), null, value);
    }
  });

  await t.step("garbage auth falls through to the next source", () => {
    const found = extractToken({
      headers: headers({ authorization: `Bearer ${JWT}` }),
      auth: { token: 7 },
    });
    assert.deepEqual(found, { token: JWT, source: "bearer" });
  });
});

const THIRD = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3In0.dGhpcmQ";
const FOURTH = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0In0.Zm91cnRo";

Deno.test("extractTokens: every token presented, in order, each once", async (t) => {
  await t.step("auth, Bearer, configured cookies, Supabase cookies", () => {
    const session = encodeURIComponent(JSON.stringify({ access_token: FOURTH }));
    const h = headers({
      authorization: `Bearer ${OTHER}`,
      cookie: `sb-abc-auth-token=${session}; b=${THIRD}; a=${JWT}x`,
    });
    assert.deepEqual(
      extractTokens({ headers: h, auth: { token: JWT } }, { cookieNames: ["a", "b"] }),
      [
        { token: JWT, source: "auth" },
        { token: OTHER, source: "bearer" },
        { token: `${JWT}x`, source: "cookie", cookieName: "a" },
        { token: THIRD, source: "cookie", cookieName: "b" },
        { token: FOURTH, source: "cookie", cookieName: "sb-abc-auth-token" },
      ],
    );
  });

  await t.step("a token presented twice is listed once, where it came first", () => {
    const h = headers({ authorization: `Bearer ${JWT}`, cookie: `access_token=${JWT}` });
    assert.deepEqual(extractTokens({ headers: h, auth: { token: JWT } }), [
      { token: JWT, source: "auth" },
    ]);
    assert.deepEqual(extractTokens({ headers: h }), [{ token: JWT, source: "bearer" }]);
  });

  await t.step("Supabase cookies of two projects: both, in the header's order", () => {
    const first = encodeURIComponent(JSON.stringify({ access_token: THIRD }));
    const second = `base64-${base64url(JSON.stringify({ access_token: OTHER }))}`;
    const h = headers({ cookie: `sb-two-auth-token.0=${second}; sb-one-auth-token=${first}` });
    assert.deepEqual(extractTokens({ headers: h }), [
      { token: OTHER, source: "cookie", cookieName: "sb-two-auth-token" },
      { token: THIRD, source: "cookie", cookieName: "sb-one-auth-token" },
    ]);
  });

  await t.step("garbage in one source leaves the others", () => {
    const h = headers({
      authorization: "Basic dXNlcjpwYXNz",
      cookie: `access_token=; sb-abc-auth-token=base64-!!!; access_token_2=${OTHER}`,
    });
    assert.deepEqual(
      extractTokens({ headers: h, auth: { token: JWT } }, {
        cookieNames: ["access_token", "access_token_2"],
      }),
      [
        { token: JWT, source: "auth" },
        { token: OTHER, source: "cookie", cookieName: "access_token_2" },
      ],
    );
  });

  await t.step("nothing at all: an empty list; extractToken is the first or null", () => {
    assert.deepEqual(extractTokens({ headers: headers({}) }), []);
    assert.equal(extractToken({ headers: headers({}) }), null);
    const h = headers({ authorization: `Bearer ${OTHER}`, cookie: `access_token=${JWT}` });
    assert.deepEqual(extractToken({ headers: h }), extractTokens({ headers: h })[0]);
  });
});

Deno.test("hasHeaderCredential: a usable Bearer token or cookie in the headers", async (t) => {
  const cases: Array<[string, Record<string, string>, string[] | undefined, boolean]> = [
    ["no headers", {}, undefined, false],
    ["Bearer", { authorization: `Bearer ${JWT}` }, undefined, true],
    ["access_token cookie", { cookie: `access_token=${JWT}` }, undefined, true],
    [
      "Supabase cookie",
      { cookie: `sb-abc-auth-token=${encodeURIComponent(SESSION)}` },
      undefined,
      true,
    ],
    ["a cookie not configured", { cookie: `access_token=${JWT}` }, ["session"], false],
    ["a configured cookie", { cookie: `session=${JWT}` }, ["session"], true],
    ["only unrelated cookies", { cookie: "theme=dark; lang=en" }, undefined, false],
    ["an empty token cookie", { cookie: "access_token=" }, undefined, false],
    ["a non-Bearer scheme", { authorization: "Basic dXNlcjpwYXNz" }, undefined, false],
  ];
  for (const [name, init, cookieNames, expected] of cases) {
    await t.step(name, () => {
      assert.equal(hasHeaderCredential(headers(init), { cookieNames }), expected);
    });
  }
});

Deno.test("isAmbientCredential: only cookies", () => {
  assert.equal(isAmbientCredential("cookie"), true);
  assert.equal(isAmbientCredential("auth"), false);
  assert.equal(isAmbientCredential("bearer"), false);
});

Deno.test("parseCookieHeader", () => {
  const cookies = parseCookieHeader(
    ' a=1; b = two ; c="quoted"; a=ignored; d=%41%42; e=%E0%A4%A; f',
  );
  assert.deepEqual([...cookies], [
    ["a", "1"],
    ["b", "two"],
    ["c", "quoted"],
    ["d", "AB"],
    ["e", "%E0%A4%A"],
  ]);
});

Deno.test("tokenFromSupabaseCookieValue", () => {
  assert.equal(tokenFromSupabaseCookieValue(SESSION), JWT);
  assert.equal(tokenFromSupabaseCookieValue(`base64-${base64url(SESSION)}`), JWT);
  // standard base64 alphabet with padding is tolerated too
  assert.equal(tokenFromSupabaseCookieValue(`base64-${btoa(JSON.stringify([JWT]))}`), JWT);
  assert.equal(tokenFromSupabaseCookieValue(""), null);
  assert.equal(tokenFromSupabaseCookieValue("{}"), null);
});
