import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as reference from "engine.io-parser";
import {
  decodePacket,
  decodePayload,
  encodePacket,
  encodePacketText,
  encodePayload,
  isBinary,
  type Packet,
} from "../src/engine/parser.ts";

/** The reference parser's payload encoder is callback-based. */
function referencePayload(packets: Packet[]): string {
  let out: string | undefined;
  reference.encodePayload(packets as reference.Packet[], (encoded: string) => {
    out = encoded;
  });
  assert.notEqual(out, undefined, "reference encodePayload did not call back synchronously");
  return out!;
}

/** Bytes of a Buffer/Uint8Array/ArrayBuffer, for comparisons. */
function bytes(data: unknown): number[] {
  if (data instanceof ArrayBuffer) return [...new Uint8Array(data)];
  if (ArrayBuffer.isView(data)) {
    return [...new Uint8Array(data.buffer, data.byteOffset, data.byteLength)];
  }
  throw new Error(`not binary: ${typeof data}`);
}

Deno.test("engine parser", async (t) => {
  await t.step(
    "isBinary: ArrayBuffer and views are binary, strings and plain objects are not",
    () => {
      assert.equal(isBinary(new ArrayBuffer(2)), true);
      assert.equal(isBinary(new Uint8Array(2)), true);
      assert.equal(isBinary(Buffer.from("a")), true);
      assert.equal(isBinary(new DataView(new ArrayBuffer(1))), true);
      assert.equal(isBinary("abc"), false);
      assert.equal(isBinary({ byteLength: 1 }), false);
      assert.equal(isBinary(undefined), false);
    },
  );

  await t.step("encodePacket: text packets are the type digit followed by the data", () => {
    assert.equal(encodePacket({ type: "message", data: "hello" }), "4hello");
    assert.equal(encodePacket({ type: "ping" }), "2");
    assert.equal(encodePacket({ type: "pong", data: "probe" }), "3probe");
    assert.equal(encodePacket({ type: "open", data: '{"sid":"x"}' }), '0{"sid":"x"}');
    assert.equal(encodePacket({ type: "close" }), "1");
    assert.equal(encodePacket({ type: "upgrade" }), "5");
    assert.equal(encodePacket({ type: "noop" }), "6");
    assert.equal(encodePacket({ type: "message", data: "" }), "4");
  });

  await t.step("encodePacket: binary data is sent as raw bytes, without a type prefix", () => {
    const u8 = Uint8Array.from([1, 2, 3]);
    assert.equal(encodePacket({ type: "message", data: u8 }), u8, "a Uint8Array goes out as is");
    assert.deepEqual(bytes(encodePacket({ type: "message", data: u8.buffer })), [1, 2, 3]);
    const view = new DataView(Uint8Array.from([9, 1, 2, 9]).buffer, 1, 2);
    assert.deepEqual(bytes(encodePacket({ type: "message", data: view })), [1, 2]);
    const sub = Uint8Array.from([9, 4, 5, 9]).subarray(1, 3);
    assert.deepEqual(bytes(encodePacket({ type: "message", data: sub })), [4, 5]);
  });

  await t.step("encodePacketText: binary becomes 'b' + base64 (long-polling)", () => {
    assert.equal(
      encodePacketText({ type: "message", data: Uint8Array.from([1, 2, 3, 4]) }),
      "bAQIDBA==",
    );
    assert.equal(encodePacketText({ type: "message", data: new ArrayBuffer(0) }), "b");
    const sub = Uint8Array.from([0, 1, 2, 3, 4, 0]).subarray(1, 5);
    assert.equal(encodePacketText({ type: "message", data: sub }), "bAQIDBA==");
    assert.equal(encodePacketText({ type: "message", data: "hi" }), "4hi");
  });

  await t.step("decodePacket: text packets of every type", () => {
    assert.deepEqual(decodePacket("4hello"), { type: "message", data: "hello" });
    assert.deepEqual(decodePacket("2probe"), { type: "ping", data: "probe" });
    assert.deepEqual(decodePacket("3"), { type: "pong" });
    assert.deepEqual(decodePacket("5"), { type: "upgrade" });
    assert.deepEqual(decodePacket("6"), { type: "noop" });
    assert.deepEqual(decodePacket("1"), { type: "close" });
    assert.deepEqual(decodePacket("0{}"), { type: "open", data: "{}" });
    assert.deepEqual(decodePacket("4"), { type: "message" });
    // unicode survives
    assert.deepEqual(decodePacket("4€ 😀"), { type: "message", data: "€ 😀" });
  });

  await t.step("decodePacket: 'b' + base64 and raw bytes decode to binary messages", () => {
    const fromBase64 = decodePacket("bAQIDBA==");
    assert.equal(fromBase64.type, "message");
    assert.ok(Buffer.isBuffer(fromBase64.data));
    assert.deepEqual(bytes(fromBase64.data), [1, 2, 3, 4]);
    const fromBytes = decodePacket(Uint8Array.from([7, 8]).buffer);
    assert.equal(fromBytes.type, "message");
    assert.deepEqual(bytes(fromBytes.data), [7, 8]);
    const fromView = decodePacket(Uint8Array.from([0, 7, 8, 0]).subarray(1, 3));
    assert.deepEqual(bytes(fromView.data), [7, 8]);
  });

  await t.step("decodePacket: invalid input gives an error packet", () => {
    const error = { type: "error", data: "parser error" };
    assert.deepEqual(decodePacket(""), error);
    assert.deepEqual(decodePacket("abc"), error);
    assert.deepEqual(decodePacket("7"), error);
    assert.deepEqual(decodePacket("9hello"), error);
    assert.deepEqual(decodePacket("/"), error);
    assert.deepEqual(decodePacket("b!!!"), error);
  });

  await t.step("encodePayload: packets joined by \\x1e, binary as base64", () => {
    assert.equal(encodePayload([{ type: "message", data: "hello" }]), "4hello");
    assert.equal(
      encodePayload([
        { type: "message", data: "test1" },
        { type: "message", data: "test2" },
        { type: "message", data: "test3" },
      ]),
      "4test1\x1e4test2\x1e4test3",
    );
    assert.equal(
      encodePayload([
        { type: "message", data: "hello" },
        { type: "message", data: Uint8Array.from([1, 2, 3, 4]) },
      ]),
      "4hello\x1ebAQIDBA==",
    );
    assert.equal(encodePayload([{ type: "ping" }, { type: "close" }]), "2\x1e1");
  });

  await t.step("decodePayload: splits on \\x1e and decodes each packet", () => {
    const packets = decodePayload("4hello\x1ebAQIDBA==\x1e3");
    assert.equal(packets.length, 3);
    assert.deepEqual(packets[0], { type: "message", data: "hello" });
    assert.equal(packets[1].type, "message");
    assert.deepEqual(bytes(packets[1].data), [1, 2, 3, 4]);
    assert.deepEqual(packets[2], { type: "pong" });
  });

  await t.step(
    "decodePayload: stops at the first invalid packet, which comes back as error",
    () => {
      assert.deepEqual(decodePayload("4a\x1exyz\x1e4b"), [
        { type: "message", data: "a" },
        { type: "error", data: "parser error" },
      ]);
      assert.deepEqual(decodePayload("4a\x1e"), [
        { type: "message", data: "a" },
        { type: "error", data: "parser error" },
      ]);
    },
  );

  await t.step("text encodings match the reference engine.io-parser", async (t) => {
    const cases: Packet[][] = [
      [{ type: "message", data: "hello" }],
      [{ type: "open", data: '{"sid":"abc","upgrades":[]}' }],
      [{ type: "ping" }, { type: "pong", data: "probe" }, { type: "noop" }],
      [{ type: "message", data: "a" }, { type: "message", data: Uint8Array.from([0, 255, 128]) }],
      [{ type: "message", data: Buffer.from("binary") }, { type: "close" }],
      [{ type: "message", data: "héllo €" }, { type: "message", data: "" }],
    ];
    for (const packets of cases) {
      await t.step(JSON.stringify(packets.map((p) => p.type)), () => {
        assert.equal(encodePayload(packets), referencePayload(packets));
      });
    }
  });

  await t.step("WebSocket frame encodings match the reference engine.io-parser", () => {
    const textPackets: Packet[] = [
      { type: "message", data: "hello" },
      { type: "ping", data: "probe" },
      { type: "noop" },
      { type: "close" },
    ];
    for (const packet of textPackets) {
      let expected: unknown;
      reference.encodePacket(packet as reference.Packet, true, (encoded: unknown) => {
        expected = encoded;
      });
      assert.equal(encodePacket(packet), expected);
    }
    let expectedBinary: unknown;
    const binary = { type: "message" as const, data: Buffer.from([1, 2, 3]) };
    reference.encodePacket(binary, true, (encoded: unknown) => {
      expectedBinary = encoded;
    });
    assert.deepEqual(bytes(encodePacket(binary)), bytes(expectedBinary));
  });

  await t.step("decodings match the reference engine.io-parser", () => {
    const inputs = [
      "4hello",
      "2probe",
      "3",
      "6",
      "abc",
      "",
      "4hello\x1ebAQIDBA==",
      "4a\x1exyz\x1e4b",
      "0{}\x1e1",
    ];
    for (const input of inputs) {
      const ours = decodePayload(input).map((p) => ({
        type: p.type,
        data: p.data !== undefined && isBinary(p.data) ? bytes(p.data) : p.data,
      }));
      const theirs = reference.decodePayload(input, "nodebuffer").map((p) => ({
        type: p.type,
        data: p.data !== undefined && isBinary(p.data) ? bytes(p.data) : p.data,
      }));
      assert.deepEqual(ours, theirs, `payload ${JSON.stringify(input)}`);
    }
  });

  await t.step("round trip: what we encode for polling decodes back to the same packets", () => {
    const packets: Packet[] = [
      { type: "open", data: "{}" },
      { type: "message", data: "x\ny" },
      { type: "message", data: Buffer.from([10, 20, 30]) },
      { type: "ping" },
    ];
    const decoded = decodePayload(encodePayload(packets));
    assert.equal(decoded.length, 4);
    assert.deepEqual(decoded[0], { type: "open", data: "{}" });
    assert.deepEqual(decoded[1], { type: "message", data: "x\ny" });
    assert.deepEqual(bytes(decoded[2].data), [10, 20, 30]);
    assert.deepEqual(decoded[3], { type: "ping" });
  });
});
