/**
 * End to end: malformed payloads for every client event of both vocabularies
 * (the seed's and the apps'), unknown events and payload identity spoofing,
 * through the real server with socket.io-client. Every bad input gets
 * `error { code: "INVALID_DATA", message, details }` (the apps' `sendMessage`:
 * `messageError`) naming the field and a failed ack; the socket stays usable;
 * no unhandled rejection reaches the process.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { EVENTS } from "../src/handlers/vocabulary.ts";
import { LogThrottle, setLogSink } from "../src/log.ts";
import {
  type Ack,
  closeAll,
  connectAs,
  connectUsers,
  type ErrorPayload,
  type TestClient,
} from "./support/clients.ts";
import { startApp } from "./support/server.ts";

/** A payload field value, wrong in one way. */
interface BadValue {
  label: string;
  value: unknown;
}

function deeplyNested(depth: number): unknown {
  let value: unknown = { chatGroupId: 456 };
  for (let i = 0; i < depth; i++) value = { nested: value };
  return value;
}

/** Wrong values for a positive integer id. */
const BAD_IDS: BadValue[] = [
  { label: "string of digits", value: "456" },
  { label: "word", value: "four" },
  { label: "negative", value: -456 },
  { label: "zero", value: 0 },
  { label: "fraction", value: 4.5 },
  { label: "1e308", value: 1e308 },
  { label: "-1e308", value: -1e308 },
  { label: "MAX_SAFE_INTEGER+2", value: Number.MAX_SAFE_INTEGER + 2 },
  { label: "NaN (sent as null)", value: NaN },
  { label: "null", value: null },
  { label: "boolean", value: true },
  { label: "array", value: [456] },
  { label: "object", value: { id: 456 } },
  { label: "deeply nested object", value: deeplyNested(2000) },
  { label: "very long string", value: "9".repeat(100_000) },
  { label: "binary Buffer", value: Buffer.from([1, 2, 3, 4]) },
];

/** Wrong values for a required string. */
const BAD_STRINGS: BadValue[] = [
  { label: "number", value: 42 },
  { label: "1e308", value: 1e308 },
  { label: "null", value: null },
  { label: "boolean", value: false },
  { label: "array", value: ["hello"] },
  { label: "object", value: { text: "hello" } },
  { label: "deeply nested object", value: deeplyNested(2000) },
  { label: "binary Buffer", value: Buffer.from("hello") },
];

/** Wrong values for `userType`. */
const BAD_USER_TYPES: BadValue[] = [
  { label: "unknown role", value: "superuser" },
  { label: "empty", value: "" },
  { label: "capitalised", value: "Agent" },
  { label: "number", value: 1 },
  { label: "array", value: ["agent"] },
  { label: "very long string", value: "a".repeat(100_000) },
  { label: "binary Buffer", value: Buffer.from("agent") },
];

/** Whole payloads of the wrong kind (for events that take an object). */
const BAD_WHOLE: BadValue[] = [
  { label: "missing", value: undefined },
  { label: "null", value: null },
  { label: "string", value: "456" },
  { label: "number", value: 456 },
  { label: "huge number", value: 1e308 },
  { label: "boolean", value: true },
  { label: "empty array", value: [] },
  { label: "array of the payload", value: [{ chatGroupId: 456 }] },
  { label: "very long string", value: "x".repeat(200_000) },
];

/**
 * A Buffer is an object to the schema: it is refused for lacking the
 * required fields, and the error names the first of them.
 */
const BUFFER_PAYLOAD = Buffer.from('{"chatGroupId":456}');

/** Whole payloads refused by the events that take none. */
const BAD_NO_PAYLOAD: BadValue[] = [
  { label: "string", value: "all" },
  { label: "number", value: 1 },
  { label: "huge number", value: Number.MAX_SAFE_INTEGER + 2 },
  { label: "boolean", value: false },
  { label: "array", value: [] },
  { label: "object with a field", value: { userId: 1 } },
  { label: "object with a huge key", value: { ["k".repeat(100_000)]: 1 } },
  {
    label: "object with 5000 keys",
    value: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`key${i}`, i])),
  },
  { label: "deeply nested object", value: deeplyNested(2000) },
  { label: "binary Buffer", value: Buffer.from([0]) },
];

/** Wrong values for an optional, nullable id (the apps' `sys_user_id`, `client_id`). */
const BAD_NULLABLE_IDS: BadValue[] = BAD_IDS.filter((bad) =>
  bad.value !== null && !Number.isNaN(bad.value)
);

/** One malformed emission and the field its error must name. */
interface Case {
  event: string;
  label: string;
  /** Omitted (`undefined`) means the event is emitted with the ack only. */
  payload: unknown;
  field: string;
  /** The failure event (default `error`). */
  failureEvent: string;
}

interface EventSpec {
  event: string;
  /** Which shape, when one event takes two (`sendMessage`). */
  shape?: string;
  /** A valid payload (fields are replaced one at a time), or null for payload-less events. */
  valid: Record<string, unknown> | null;
  /** Per field: the wrong values to try. */
  fields: Record<string, BadValue[]>;
  /** Required fields (tried missing too). */
  required: string[];
  /** The failure event of this shape (default `error`). */
  failureEvent?: string;
  /**
   * Only field cases: a whole payload of the wrong kind is judged as the
   * event's other shape (the seed's `sendMessage`), which its spec covers.
   */
  fieldsOnly?: boolean;
}

const TYPING_FIELDS: Record<string, BadValue[]> = {
  chatGroupId: BAD_IDS,
  userType: BAD_USER_TYPES,
  userId: BAD_IDS,
  userName: [
    { label: "number", value: 7 },
    { label: "too long", value: "n".repeat(201) },
    { label: "object", value: { first: "John" } },
    { label: "binary Buffer", value: Buffer.from("John") },
  ],
};

const SPECS: EventSpec[] = [
  {
    event: "userOnline",
    valid: { userId: 123, userType: "agent" },
    fields: { userId: BAD_IDS, userType: BAD_USER_TYPES },
    required: ["userId", "userType"],
  },
  {
    event: "userHeartbeat",
    valid: { userId: 123, timestamp: 1_700_000_000_000 },
    fields: {
      userId: BAD_IDS,
      timestamp: [
        { label: "string", value: "now" },
        { label: "null", value: null },
        { label: "object", value: { at: 1 } },
        { label: "array", value: [1] },
        { label: "binary Buffer", value: Buffer.from([1]) },
      ],
    },
    required: ["userId"],
  },
  {
    event: "userOffline",
    valid: { userId: 123 },
    fields: { userId: BAD_IDS },
    required: ["userId"],
  },
  { event: "getOnlineUsers", valid: null, fields: {}, required: [] },
  {
    event: "joinChatGroup",
    valid: { groupId: 456, userType: "agent", userId: 123 },
    fields: { groupId: BAD_IDS, userType: BAD_USER_TYPES, userId: BAD_IDS },
    required: ["groupId"],
  },
  {
    event: "chat:join",
    valid: { chatGroupId: 456, userType: "agent", userId: 123 },
    fields: { chatGroupId: BAD_IDS, userType: BAD_USER_TYPES, userId: BAD_IDS },
    required: ["chatGroupId"],
  },
  {
    event: "leaveRoom",
    valid: { chatGroupId: 456 },
    fields: { chatGroupId: BAD_IDS },
    required: ["chatGroupId"],
  },
  {
    event: "chat:leave",
    valid: { chatGroupId: 456 },
    fields: { chatGroupId: BAD_IDS },
    required: ["chatGroupId"],
  },
  {
    event: "sendMessage",
    valid: { message: "hello", chatGroupId: 456, clientId: 789, clientMessageId: "m-1" },
    fields: {
      message: [...BAD_STRINGS, {
        label: "longer than MAX_MESSAGE_LENGTH",
        value: "x".repeat(100_000),
      }],
      chatGroupId: BAD_IDS,
      clientId: BAD_IDS,
      clientMessageId: [
        { label: "empty", value: "" },
        { label: "very long string", value: "k".repeat(10_000) },
        { label: "number", value: 7 },
        { label: "null", value: null },
      ],
    },
    required: ["message", "chatGroupId", "clientId"],
  },
  {
    event: "sendMessage",
    shape: "the apps' chat_body",
    valid: { chat_body: "hello", chat_group_id: 456, sys_user_id: 123, client_id: null },
    fields: {
      // (too long and empty after cleaning are checked after parsing: see below)
      chat_body: BAD_STRINGS,
      chat_group_id: BAD_IDS,
      sys_user_id: BAD_NULLABLE_IDS,
      client_id: BAD_NULLABLE_IDS,
      clientMessageId: [
        { label: "empty", value: "" },
        { label: "very long string", value: "k".repeat(10_000) },
        { label: "number", value: 7 },
      ],
    },
    required: ["chat_body", "chat_group_id"],
    failureEvent: "messageError",
    fieldsOnly: true,
  },
  {
    event: "getMessages",
    valid: { chatGroupId: 456, before: 10, limit: 20 },
    fields: {
      chatGroupId: BAD_IDS,
      before: BAD_IDS,
      limit: [
        { label: "zero", value: 0 },
        { label: "too many", value: 201 },
        { label: "1e308", value: 1e308 },
        { label: "negative", value: -5 },
        { label: "fraction", value: 2.5 },
        { label: "string", value: "20" },
        { label: "binary Buffer", value: Buffer.from([20]) },
      ],
    },
    required: ["chatGroupId"],
  },
  {
    event: "typing",
    valid: { chatGroupId: 456, userType: "agent", userId: 123, userName: "John Doe" },
    fields: TYPING_FIELDS,
    required: ["chatGroupId"],
  },
  {
    event: "stopTyping",
    valid: { chatGroupId: 456, userType: "agent", userId: 123, userName: "John Doe" },
    fields: TYPING_FIELDS,
    required: ["chatGroupId"],
  },
  {
    event: "presence:update",
    valid: { status: "accepting_chats" },
    fields: {
      status: [
        { label: "unknown status", value: "busy" },
        { label: "capitalised", value: "Offline" },
        { label: "empty", value: "" },
        { label: "number", value: 1 },
        { label: "null", value: null },
        { label: "array", value: ["offline"] },
        { label: "very long string", value: "s".repeat(100_000) },
        { label: "binary Buffer", value: Buffer.from("offline") },
      ],
    },
    required: ["status"],
  },
  { event: "presence:heartbeat", valid: null, fields: {}, required: [] },
  { event: "presence:getAll", valid: null, fields: {}, required: [] },
  { event: "presence:getAvailableByDepartment", valid: null, fields: {}, required: [] },
  { event: "getRoomStats", valid: null, fields: {}, required: [] },
  {
    event: "disconnectUser",
    valid: { userId: 789, userType: "client", reason: "spam" },
    fields: {
      userId: BAD_IDS,
      userType: BAD_USER_TYPES,
      reason: [
        { label: "number", value: 5 },
        { label: "too long", value: "r".repeat(201) },
        { label: "object", value: { why: "spam" } },
        { label: "binary Buffer", value: Buffer.from("spam") },
      ],
    },
    // customers and agents share numbers: without userType nobody is named
    required: ["userId", "userType"],
  },
  {
    event: "refreshToken",
    valid: { token: "eyJhbGciOiJIUzI1NiJ9.e30.sig" },
    fields: {
      token: [
        ...BAD_STRINGS,
        { label: "empty", value: "" },
        { label: "very long string", value: "t".repeat(20_000) },
      ],
    },
    required: ["token"],
  },
];

function buildCases(): Case[] {
  const cases: Case[] = [];
  for (const spec of SPECS) {
    const failureEvent = spec.failureEvent ?? "error";
    const event = spec.event;
    const shape = spec.shape ? ` (${spec.shape})` : "";
    if (spec.valid === null) {
      for (const bad of BAD_NO_PAYLOAD) {
        cases.push({
          event,
          label: bad.label,
          payload: bad.value,
          field: "(payload)",
          failureEvent,
        });
      }
      continue;
    }
    if (!spec.fieldsOnly) {
      for (const bad of BAD_WHOLE) {
        cases.push({
          event,
          label: `payload ${bad.label}`,
          payload: bad.value,
          field: "(payload)",
          failureEvent,
        });
      }
      cases.push({
        event,
        label: "payload binary Buffer",
        payload: BUFFER_PAYLOAD,
        field: spec.required[0],
        failureEvent,
      });
      // extra nesting: the right payload one level down
      cases.push({
        event,
        label: "payload wrapped in { data }",
        payload: { data: spec.valid },
        field: spec.required[0],
        failureEvent,
      });
    }
    for (const field of spec.required) {
      const payload = { ...spec.valid };
      delete payload[field];
      cases.push({ event, label: `${field} missing${shape}`, payload, field, failureEvent });
    }
    for (const [field, values] of Object.entries(spec.fields)) {
      for (const bad of values) {
        cases.push({
          event,
          label: `${field} ${bad.label}${shape}`,
          payload: { ...spec.valid, [field]: bad.value },
          field,
          failureEvent,
        });
      }
    }
  }
  return cases;
}

/**
 * Emits and returns the failure payload, asserting one `failureEvent` (and
 * no other failure event) said INVALID_DATA and the ack mirrors it.
 */
async function expectInvalid(
  c: TestClient,
  failureEvent: string,
  event: string,
  ...args: unknown[]
): Promise<ErrorPayload> {
  if (failureEvent === "error") return (await c.expectError("INVALID_DATA", event, ...args)).error;
  const from = c.mark();
  const ack: Ack = await c.request(event, ...args);
  const received = c.received.slice(from);
  assert.deepEqual(received.filter((r) => r.event === "error"), [], "no error event");
  const failures = received.filter((r) => r.event === failureEvent);
  assert.equal(failures.length, 1, `one ${failureEvent}`);
  const { error, ...payload } = failures[0].args[0] as ErrorPayload & { error: string };
  assert.equal(payload.code, "INVALID_DATA", JSON.stringify(payload));
  assert.equal(error, payload.message, "messageError's error is its message");
  assert.deepEqual(ack, { ok: false, ...payload }, "failed ack mirrors the failure");
  return payload;
}

Deno.test("malformed payloads: INVALID_DATA naming the field for every client event", async (t) => {
  const rejections: unknown[] = [];
  function onRejection(event: PromiseRejectionEvent): void {
    rejections.push(event.reason);
    event.preventDefault();
  }
  globalThis.addEventListener("unhandledrejection", onRejection);
  const lines: string[] = [];
  const previous = setLogSink({ write: (line) => void lines.push(line) });
  const running = await startApp({ SEED_FILE: "demo/fixture.json" });
  const clients: (TestClient | undefined)[] = [];
  try {
    const [agent, client] = await connectUsers(running, ["agent:123", "client:789"], clients);
    await agent.join(456);
    await client.join(456);

    const cases = buildCases();
    const covered = new Set(cases.map((c) => c.event));
    // every event a client may send, both vocabularies; `resolveChat` takes anything (below)
    assert.deepEqual(
      [...covered].sort(),
      [...EVENTS.keys()].filter((event) => event !== "resolveChat").sort(),
    );

    await t.step(`${cases.length} malformed emissions`, async () => {
      for (const c of cases) {
        const name = `${c.event} / ${c.label}`;
        const args = c.payload === undefined ? [] : [c.payload];
        let failure;
        try {
          failure = await expectInvalid(agent, c.failureEvent, c.event, ...args);
        } catch (error) {
          throw new Error(`${name}: ${(error as Error).message}`, { cause: error });
        }
        const details = failure.details as { issues?: { field: string; message: string }[] };
        assert.ok(Array.isArray(details?.issues), `${name}: details.issues`);
        assert.ok(details.issues.length > 0, name);
        for (const issue of details.issues) {
          assert.equal(typeof issue.field, "string", name);
          assert.equal(typeof issue.message, "string", name);
        }
        assert.ok(
          details.issues.some((i) => i.field === c.field),
          `${name}: expected field ${c.field} in ${JSON.stringify(details.issues)}`,
        );
        // the answer stays small whatever the input (zod quotes unknown keys)
        const size = JSON.stringify(failure).length;
        assert.ok(size < 4000, `${name}: error of ${size} characters`);
      }
    });

    await t.step("unknown events: INVALID_DATA naming the event", async () => {
      const unknown: [unknown, unknown[]][] = [
        ["hack", [{ chatGroupId: 456 }]],
        ["sendmessage", [{ message: "hi", chatGroupId: 456, clientId: 789 }]],
        ["constructor", []],
        ["__proto__", [{}]],
        ["toString", []],
        ["", [null]],
        ["x".repeat(5000), [1]],
        [404, ["numeric event name"]],
      ];
      for (const [event, args] of unknown) {
        const mark = agent.mark();
        agent.socket.emit(event as string, ...args);
        const error = await agent.next("error", mark) as {
          code: string;
          message: string;
          details: { event: string };
        };
        assert.equal(error.code, "INVALID_DATA", String(event).slice(0, 40));
        assert.equal(typeof error.message, "string");
        assert.equal(typeof error.details.event, "string");
        if (typeof event === "string") {
          assert.equal(error.details.event, event.slice(0, 64));
        }
      }
    });

    await t.step("resolveChat (the web app's dead event) is acknowledged and ignored", async () => {
      for (const payload of [{ chatGroupId: 456 }, "456", null, deeplyNested(50)]) {
        const ack = await agent.expectOk("resolveChat", payload);
        assert.deepEqual(ack, { ok: true, ignored: true });
      }
      // the conversation is still open
      await client.expectOk("getMessages", { chatGroupId: 456 });
    });

    await t.step("the socket is still connected and valid events still work", async () => {
      assert.equal(agent.socket.connected, true);
      const mark = client.mark();
      const ack = await agent.expectOk("sendMessage", {
        message: "still working",
        chatGroupId: 456,
        clientId: 789,
      });
      const got = await client.next("receiveMessage", mark) as { chat_id: number };
      assert.equal(got.chat_id, ack.chat_id);
      await agent.expectOk("typing", { chatGroupId: 456 });
      await agent.expectOk("getMessages", { chatGroupId: 456, limit: 5 });
      await agent.expectOk("userOnline", { userId: 123, userType: "agent" });
      // nothing malformed was stored or relayed
      await client.sync();
      assert.equal(client.count("receiveMessage"), 1);
      assert.equal(client.count("typing"), 1);
    });

    await t.step("no handler crashed and no rejection went unhandled", () => {
      const crashes = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.level === "error");
      assert.deepEqual(crashes, []);
      assert.deepEqual(rejections, []);
    });
  } finally {
    await closeAll(running, clients);
    setLogSink(previous);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
});

Deno.test("unknown event with an ack: the ack is answered with a failure", async () => {
  const running = await startApp({ SEED_FILE: "demo/fixture.json" });
  let agent: TestClient | undefined;
  try {
    agent = await connectAs(running, "agent:123");
    const { ack } = await agent.expectError("INVALID_DATA", "noSuchEvent", { a: 1 });
    assert.equal(ack.ok, false);
  } finally {
    await closeAll(running, [agent]);
  }
});

Deno.test("the apps' sendMessage: refusals after parsing name chat_body, the field they sent", async () => {
  const running = await startApp({ SEED_FILE: "demo/fixture.json", MAX_MESSAGE_LENGTH: "100" });
  const clients: (TestClient | undefined)[] = [];
  try {
    const [agent, client] = await connectUsers(running, ["agent:123", "client:789"], clients);
    await client.join(456);
    for (
      const [label, body] of [
        ["longer than MAX_MESSAGE_LENGTH", "x".repeat(101)],
        ["empty once markup is removed", "<b></b> <script>x</script>"],
      ]
    ) {
      const failure = await expectInvalid(agent, "messageError", "sendMessage", {
        chat_body: body,
        chat_group_id: 456,
      });
      const issues = (failure.details as { issues: { field: string }[] }).issues;
      assert.deepEqual(
        issues.map((i) => i.field),
        ["chat_body"],
        `${label}: ${JSON.stringify(failure)}`,
      );
    }
    await client.sync();
    assert.equal(client.count("receiveMessage"), 0);
  } finally {
    await closeAll(running, clients);
  }
});

Deno.test("payload identity spoofing: ACCESS_DENIED and an identity_mismatch log line, throttled", async () => {
  const lines: string[] = [];
  const previous = setLogSink({ write: (line) => void lines.push(line) });
  const running = await startApp({ SEED_FILE: "demo/fixture.json" });
  // the service's security-line throttle (one line per socket and event per 10 s), on a clock we move
  let now = Date.now();
  running.app.services.securityLog = new LogThrottle({ now: () => now });
  const clients: (TestClient | undefined)[] = [];
  try {
    const [agent, client, admin, customer1] = await connectUsers(running, [
      "agent:123",
      "client:789",
      "agent:1",
      "client:1",
    ], clients);

    const mismatches = (): Record<string, unknown>[] => {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.msg === "security" && l.event === "identity_mismatch");
    };

    await agent.expectError("ACCESS_DENIED", "userOnline", { userId: 124, userType: "agent" });
    assert.equal(mismatches().length, 1);
    assert.equal(mismatches()[0].kind, "agent");
    assert.equal(mismatches()[0].userId, 123);
    assert.equal(mismatches()[0].claimedUserId, 124);
    assert.equal(mismatches()[0].socketEvent, "userOnline");
    assert.equal(mismatches()[0].suppressed, undefined);

    await client.expectError("ACCESS_DENIED", "userOnline", { userId: 789, userType: "agent" });
    assert.equal(mismatches().length, 2);
    assert.equal(mismatches()[1].kind, "client");
    assert.equal(mismatches()[1].userId, 789);
    assert.equal(mismatches()[1].claimedUserType, "agent");

    // refused every time, but each socket writes one line per 10 s
    await agent.expectError("ACCESS_DENIED", "userOnline", { userId: 123, userType: "admin" });
    await client.expectError("ACCESS_DENIED", "userHeartbeat", { userId: 123 });
    await client.expectError("ACCESS_DENIED", "userOffline", { userId: 123 });
    assert.equal(mismatches().length, 2);

    // customer 1 and the admin agent 1 are different people: neither may claim the other
    await customer1.expectError("ACCESS_DENIED", "userOnline", { userId: 1, userType: "agent" });
    await admin.expectError("ACCESS_DENIED", "userOnline", { userId: 1, userType: "client" });
    assert.deepEqual(
      mismatches().slice(2).map((l) => [l.kind, l.userId, l.claimedUserType]),
      [["client", 1, "agent"], ["agent", 1, "client"]],
    );

    // after the window the next line says how many were left out
    now += 10_001;
    await client.expectError("ACCESS_DENIED", "userOnline", { userId: 790, userType: "client" });
    await agent.expectError("ACCESS_DENIED", "typing", { chatGroupId: 456, userId: 124 });
    const after = mismatches().slice(4);
    assert.deepEqual(after.map((l) => [l.userId, l.claimedUserId, l.suppressed]), [
      [789, 790, 2],
      [123, 124, 1],
    ]);

    // the spoofed identities were never announced
    await admin.sync();
    const online = admin.payloads("onlineUsersList").at(-1) as { userId: number }[];
    assert.deepEqual(online, []);

    // the genuine identity works; an admin may present itself as an agent
    const before = mismatches().length;
    await agent.expectOk("userOnline", { userId: 123, userType: "agent" });
    await admin.expectOk("userOnline", { userId: 1, userType: "agent" });
    await client.expectOk("userOnline", { userId: 789, userType: "client" });
    await customer1.expectOk("userOnline", { userId: 1, userType: "client" });
    assert.equal(mismatches().length, before);
  } finally {
    await closeAll(running, clients);
    setLogSink(previous);
  }
});
