/**
 * src/auth/customer_token.ts: customers' tokens (the Servana backend's own
 * HS256 tokens, `JWT_ACCESS_SECRET`). Three answers: a valid customer token
 * gives its claims; a token not signed with the customer secret gives null
 * (the caller may try it as a Supabase token); a token signed with it but
 * unusable is refused with AUTH_REQUIRED and the reason.
 */

import assert from "node:assert/strict";
import { type JWTPayload, SignJWT } from "jose";
import { CustomerTokenVerifier, mintCustomerToken } from "../src/auth/customer_token.ts";
import { ServanaError } from "../src/errors.ts";
import { signHs256, tamperSignature, unsecuredToken } from "./support/tokens.ts";

const SECRET = "customers-secret-with-at-least-32-characters";
const SUPABASE_SECRET = "supabase-secret-with-at-least-32-characters!";
const NOW = Date.UTC(2026, 11, 2, 9, 0, 0);
const NOW_SEC = Math.floor(NOW / 1000);

/** Signs `claims` exactly as given (no claims added) with HS256. */
async function sign(
  claims: JWTPayload,
  secret = SECRET,
  header: Record<string, unknown> = {},
): Promise<string> {
  return await new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT", ...header })
    .sign(new TextEncoder().encode(secret));
}

/** The backend's long-lived token payload for customer 789. */
function backendClaims(extra: JWTPayload = {}): JWTPayload {
  return {
    client_id: 789,
    client_number: "9171234567",
    type: "client",
    iat: NOW_SEC - 60,
    exp: NOW_SEC + 7 * 86_400,
    ...extra,
  };
}

async function assertRefused(promise: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ServanaError, `not a ServanaError: ${error}`);
    assert.equal(error.code, "AUTH_REQUIRED");
    assert.deepEqual(error.details, { reason });
    return true;
  });
}

const verifier = new CustomerTokenVerifier({ secret: SECRET, now: () => NOW });

Deno.test("CustomerTokenVerifier: a valid customer token gives its claims", async (t) => {
  await t.step("the backend's long-lived token", async () => {
    const payload = backendClaims();
    const claims = await verifier.verify(await sign(payload));
    assert.deepEqual(claims, {
      clientId: 789,
      clientNumber: "9171234567",
      exp: NOW_SEC + 7 * 86_400,
      raw: payload,
    });
  });

  await t.step("without type (the short-lived token) and without client_number", async () => {
    const claims = await verifier.verify(
      await sign({ client_id: 1, exp: NOW_SEC + 900 }),
    );
    assert.equal(claims?.clientId, 1);
    assert.equal(claims?.clientNumber, null);
    assert.equal(claims?.exp, NOW_SEC + 900);
  });

  await t.step("a token minted by mintCustomerToken: 7 days, type client", async () => {
    const token = await mintCustomerToken({ clientId: 790, clientNumber: "9181234567" }, {
      secret: SECRET,
      now: NOW,
    });
    const claims = await verifier.verify(token);
    assert.equal(claims?.clientId, 790);
    assert.equal(claims?.clientNumber, "9181234567");
    assert.equal(claims?.exp, NOW_SEC + 7 * 86_400);
    assert.deepEqual(
      { ...claims?.raw },
      {
        client_id: 790,
        client_number: "9181234567",
        type: "client",
        iat: NOW_SEC,
        exp: NOW_SEC + 7 * 86_400,
      },
    );
    const short = await mintCustomerToken({ clientId: 790, clientNumber: "1" }, {
      secret: SECRET,
      now: NOW,
      expiresInSec: 900,
    });
    assert.equal((await verifier.verify(short))?.exp, NOW_SEC + 900);
  });

  await t.step("expired by less than the clock tolerance (10 s) still passes", async () => {
    const claims = await verifier.verify(await sign(backendClaims({ exp: NOW_SEC - 9 })));
    assert.equal(claims?.clientId, 789);
  });
});

Deno.test("CustomerTokenVerifier: not signed with the customer secret → null", async (t) => {
  await t.step("the wrong secret", async () => {
    assert.equal(await verifier.verify(await sign(backendClaims(), "another-secret")), null);
  });

  await t.step(
    "a Supabase-shaped HS256 token with a client_id, signed with another secret",
    async () => {
      const token = await signHs256(SUPABASE_SECRET, {
        sub: "00000000-0000-4000-8000-000000000123",
        client_id: 789,
        type: "client",
      }, { now: NOW, issuer: "https://project.supabase.example/auth/v1" });
      assert.equal(await verifier.verify(token), null);
    },
  );

  await t.step("alg none", async () => {
    const token = unsecuredToken({ client_id: 789, type: "client" }, { now: NOW });
    assert.equal(await verifier.verify(token), null);
  });

  await t.step("an HS256 header on a none-style token (empty signature)", async () => {
    const [, payload] = (await sign(backendClaims())).split(".");
    const header = btoa(JSON.stringify({ alg: "HS256", typ: "JWT" })).replace(/=+$/, "");
    assert.equal(await verifier.verify(`${header}.${payload}.`), null);
  });

  await t.step("a tampered signature", async () => {
    assert.equal(await verifier.verify(tamperSignature(await sign(backendClaims()))), null);
  });

  await t.step("HS512 with the customer secret: only HS256 is a customer token", async () => {
    const token = await sign(backendClaims(), SECRET, { alg: "HS512" });
    assert.equal(JSON.parse(atob(token.split(".")[0])).alg, "HS512");
    assert.equal(await verifier.verify(token), null);
  });

  await t.step("garbage", async () => {
    for (const garbage of ["", "a.b", "a.b.c.d", "not-a-jwt", "e30.e30.e30", "x".repeat(17_000)]) {
      assert.equal(await verifier.verify(garbage), null, garbage.slice(0, 20));
    }
  });
});

Deno.test("CustomerTokenVerifier: signed with the customer secret but unusable → AUTH_REQUIRED", async (t) => {
  const cases: Array<[string, JWTPayload, string]> = [
    ["expired", backendClaims({ exp: NOW_SEC - 11 }), "expired"],
    ["expired a week ago", backendClaims({ exp: NOW_SEC - 7 * 86_400 }), "expired"],
    ["missing exp", { client_id: 789, client_number: "9171234567", type: "client" }, "missing_exp"],
    ["not yet valid", backendClaims({ nbf: NOW_SEC + 60 }), "not_yet_valid"],
    [
      "missing client_id",
      { client_number: "9171234567", type: "client", exp: NOW_SEC + 60 },
      "missing_client_id",
    ],
    ["client_id a string", backendClaims({ client_id: "789" }), "missing_client_id"],
    ["client_id zero", backendClaims({ client_id: 0 }), "missing_client_id"],
    ["client_id negative", backendClaims({ client_id: -5 }), "missing_client_id"],
    ["client_id fractional", backendClaims({ client_id: 7.5 }), "missing_client_id"],
    ["client_id above 2^53", backendClaims({ client_id: 2 ** 53 }), "missing_client_id"],
    ["type agent", backendClaims({ type: "agent" }), "wrong_token_type"],
    ["type refresh", backendClaims({ type: "refresh" }), "wrong_token_type"],
    ["type null", backendClaims({ type: null }), "wrong_token_type"],
  ];
  for (const [name, claims, reason] of cases) {
    await t.step(name, async () => {
      await assertRefused(verifier.verify(await sign(claims)), reason);
    });
  }
});

Deno.test("CustomerTokenVerifier: construction and clock", async () => {
  assert.throws(() => new CustomerTokenVerifier({ secret: "" }), TypeError);
  const token = await sign(backendClaims({ exp: NOW_SEC + 60 }));
  const later = new CustomerTokenVerifier({ secret: SECRET, now: () => NOW + 71_000 });
  await assertRefused(later.verify(token), "expired");
  const strict = new CustomerTokenVerifier({
    secret: SECRET,
    clockToleranceSec: 0,
    now: () => NOW + 61_000,
  });
  await assertRefused(strict.verify(token), "expired");
  const lenient = new CustomerTokenVerifier({
    secret: SECRET,
    clockToleranceSec: 0,
    now: () => NOW + 59_000,
  });
  assert.equal((await lenient.verify(token))?.clientId, 789);
});
