/**
 * src/auth/dev_login.ts: `POST /dev/login { kind, id }` of the demo console.
 * JSON only (a cross-site form or text/plain post cannot reach it), no
 * foreign Origin, tokens only of the kinds whose development minter is
 * given, and only for active demo people.
 */

import assert from "node:assert/strict";
import { devLoginHandler, type DevLoginOptions } from "../src/auth/dev_login.ts";
import type { Agent, Customer, Person, PersonRef } from "../src/store/mod.ts";

const JOHN: Agent = {
  kind: "agent",
  id: 123,
  role: "agent",
  authId: "00000000-0000-4000-8000-000000000123",
  email: "john@servana.example",
  roleName: "Agent",
  departments: [1],
  firstName: "John",
  lastName: "Doe",
  image: null,
  active: true,
};
const CARLA: Customer = {
  kind: "client",
  id: 789,
  role: "client",
  number: "9171234567",
  countryCode: "+63",
  firstName: "Carla",
  lastName: "Client",
  image: null,
  active: true,
};
/** An agent without a Supabase account, one inactive agent, one inactive customer. */
const NO_AUTH: Agent = { ...JOHN, id: 125, authId: null };
const GONE_AGENT: Agent = { ...JOHN, id: 126, active: false };
const GONE_CLIENT: Customer = { ...CARLA, id: 791, active: false };
/** Customer 123: same number as agent 123, another person. */
const CLIENT_123: Customer = { ...CARLA, id: 123, number: "9190000123" };

const PEOPLE: Person[] = [JOHN, CARLA, NO_AUTH, GONE_AGENT, GONE_CLIENT, CLIENT_123];

interface Minted {
  agents: string[];
  customers: Array<{ clientId: number; clientNumber: string }>;
}

function handler(overrides: Partial<DevLoginOptions> = {}): {
  handle: (req: Request) => Promise<Response>;
  minted: Minted;
  looked: PersonRef[];
} {
  const minted: Minted = { agents: [], customers: [] };
  const looked: PersonRef[] = [];
  const handle = devLoginHandler({
    getPerson: (ref) => {
      looked.push(ref);
      return Promise.resolve(PEOPLE.find((p) => p.kind === ref.kind && p.id === ref.id) ?? null);
    },
    mintAgent: (authId) => {
      minted.agents.push(authId);
      return Promise.resolve(`agent-token-for-${authId}`);
    },
    mintCustomer: (customer) => {
      minted.customers.push(customer);
      return Promise.resolve(`customer-token-for-${customer.clientId}`);
    },
    cookieName: "access_token",
    allowedOrigins: ["http://localhost:5173", "https://app.servana.example/"],
    ...overrides,
  });
  return { handle, minted, looked };
}

function post(body: unknown, headers: Record<string, string> = {}): Request {
  return new Request("http://127.0.0.1:3000/dev/login", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

Deno.test("dev login: mints a token for an active demo person and sets the cookie", async (t) => {
  await t.step("an agent: the token of their supabase_user_id", async () => {
    const { handle, minted } = handler();
    const res = await handle(post({ kind: "agent", id: 123 }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    const token = `agent-token-for-${JOHN.authId}`;
    assert.equal(
      res.headers.get("set-cookie"),
      `access_token=${token}; HttpOnly; Path=/; SameSite=Lax; Max-Age=3600`,
    );
    assert.deepEqual(await res.json(), { token, person: JOHN });
    assert.deepEqual(minted, { agents: [JOHN.authId], customers: [] });
  });

  await t.step("a customer: the token of their client_id and number", async () => {
    const { handle, minted } = handler({ cookieName: "sb_session" });
    const res = await handle(post({ kind: "client", id: 789 }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("set-cookie") ?? "", /^sb_session=customer-token-for-789; /);
    assert.deepEqual(await res.json(), { token: "customer-token-for-789", person: CARLA });
    assert.deepEqual(minted, {
      agents: [],
      customers: [{ clientId: 789, clientNumber: "9171234567" }],
    });
  });

  await t.step("customer 123 is not agent 123", async () => {
    const { handle, looked } = handler();
    const res = await handle(post({ kind: "client", id: 123 }));
    assert.equal((await res.json()).person.number, "9190000123");
    assert.deepEqual(looked, [{ kind: "client", id: 123 }]);
  });

  await t.step("a JSON content type with parameters", async () => {
    const { handle } = handler();
    const res = await handle(
      post({ kind: "agent", id: 123 }, { "content-type": "Application/JSON; charset=utf-8" }),
    );
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });
});

Deno.test("dev login: JSON only", async (t) => {
  const cases: Array<[string, string | null]> = [
    ["text/plain (a no-preflight cross-site post)", "text/plain"],
    ["a form", "application/x-www-form-urlencoded"],
    ["multipart", "multipart/form-data; boundary=x"],
    ["a JSON look-alike", "application/jsonp"],
    ["none", null],
  ];
  for (const [name, type] of cases) {
    await t.step(name, async () => {
      const { handle, minted } = handler();
      const headers = new Headers();
      if (type !== null) headers.set("content-type", type);
      const req = new Request("http://127.0.0.1:3000/dev/login", {
        method: "POST",
        headers,
        body: JSON.stringify({ kind: "agent", id: 123 }),
      });
      if (type === null) req.headers.delete("content-type");
      assert.equal(req.headers.get("content-type"), type);
      const res = await handle(req);
      assert.equal(res.status, 415);
      assert.equal(res.headers.get("set-cookie"), null);
      assert.deepEqual(await res.json(), {
        code: "INVALID_DATA",
        message: "Expected Content-Type: application/json",
      });
      assert.deepEqual(minted, { agents: [], customers: [] });
    });
  }
});

Deno.test("dev login: a foreign Origin is refused", async (t) => {
  const refused = [
    "https://evil.example",
    "http://127.0.0.1:3001",
    "https://127.0.0.1:3000",
    "null",
    "http://localhost:5174",
  ];
  for (const origin of refused) {
    await t.step(`refused: ${origin}`, async () => {
      const { handle, minted } = handler();
      const res = await handle(post({ kind: "agent", id: 123 }, { origin }));
      assert.equal(res.status, 403);
      assert.equal(res.headers.get("set-cookie"), null);
      assert.deepEqual(await res.json(), { code: "ACCESS_DENIED", message: "Origin not allowed" });
      assert.deepEqual(minted, { agents: [], customers: [] });
    });
  }
  const accepted = [
    "http://127.0.0.1:3000", // the server's own
    "HTTP://127.0.0.1:3000",
    "http://localhost:5173",
    "https://app.servana.example", // configured with a trailing slash
    "https://APP.servana.example/",
  ];
  for (const origin of accepted) {
    await t.step(`accepted: ${origin}`, async () => {
      const { handle } = handler();
      const res = await handle(post({ kind: "agent", id: 123 }, { origin }));
      assert.equal(res.status, 200);
      await res.body?.cancel();
    });
  }
  await t.step("no Origin (curl, same-origin navigation) is accepted", async () => {
    const { handle } = handler();
    const res = await handle(post({ kind: "agent", id: 123 }));
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });
});

Deno.test("dev login: mints only the kinds whose development minter is given", async (t) => {
  await t.step("agents use a real secret: no agent tokens, customers still", async () => {
    const { handle, minted, looked } = handler({ mintAgent: null });
    const res = await handle(post({ kind: "agent", id: 123 }));
    assert.equal(res.status, 403);
    assert.deepEqual(await res.json(), {
      code: "ACCESS_DENIED",
      message: "No agent tokens here: a real secret is configured",
    });
    assert.equal(res.headers.get("set-cookie"), null);
    assert.deepEqual(looked, []);
    const ok = await handle(post({ kind: "client", id: 789 }));
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    assert.equal(minted.customers.length, 1);
  });

  await t.step("customers use a real secret: no customer tokens, agents still", async () => {
    const { handle, minted } = handler({ mintCustomer: null });
    const res = await handle(post({ kind: "client", id: 789 }));
    assert.equal(res.status, 403);
    assert.deepEqual(await res.json(), {
      code: "ACCESS_DENIED",
      message: "No client tokens here: a real secret is configured",
    });
    assert.deepEqual(minted, { agents: [], customers: [] });
    const ok = await handle(post({ kind: "agent", id: 123 }));
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  });
});

Deno.test("dev login: unknown, inactive or account-less people → 404", async (t) => {
  const cases: Array<[string, { kind: string; id: number }]> = [
    ["unknown agent", { kind: "agent", id: 999 }],
    ["unknown customer", { kind: "client", id: 999 }],
    ["agent 789 (789 is a customer)", { kind: "agent", id: 789 }],
    ["inactive agent", { kind: "agent", id: 126 }],
    ["inactive customer", { kind: "client", id: 791 }],
    ["agent without a Supabase account", { kind: "agent", id: 125 }],
  ];
  for (const [name, body] of cases) {
    await t.step(name, async () => {
      const { handle, minted } = handler();
      const res = await handle(post(body));
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { code: "USER_NOT_FOUND", message: "No such demo user" });
      assert.equal(res.headers.get("set-cookie"), null);
      assert.deepEqual(minted, { agents: [], customers: [] });
    });
  }
});

Deno.test("dev login: a malformed body → 400", async (t) => {
  const cases: Array<[string, unknown]> = [
    ["not JSON", "{ kind: agent"],
    ["null", "null"],
    ["a list", [1, 2]],
    ["no kind", { id: 123 }],
    ["kind admin", { kind: "admin", id: 1 }],
    ["id a string", { kind: "agent", id: "123" }],
    ["id fractional", { kind: "agent", id: 1.5 }],
    ["id unsafe", { kind: "agent", id: 2 ** 53 }],
  ];
  for (const [name, body] of cases) {
    await t.step(name, async () => {
      const { handle, minted, looked } = handler();
      const res = await handle(post(body));
      assert.equal(res.status, 400);
      assert.equal((await res.json()).code, "INVALID_DATA");
      assert.deepEqual(minted, { agents: [], customers: [] });
      assert.deepEqual(looked, []);
    });
  }
});
