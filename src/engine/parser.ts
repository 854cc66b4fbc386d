/**
 * Engine.IO protocol v4 packet and payload encoding.
 *
 * A packet is a type digit followed by its data (`4hello`). Binary data is
 * sent as-is in a WebSocket binary frame, and as `b` + base64 inside an HTTP
 * long-polling payload, where packets are joined by the record separator
 * `\x1e`.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** Engine.IO packet types, in wire order (`0` = open … `6` = noop). */
export const PACKET_TYPES = [
  "open",
  "close",
  "ping",
  "pong",
  "message",
  "upgrade",
  "noop",
] as const;

/** One of {@linkcode PACKET_TYPES}, or `error` for an undecodable packet. */
export type PacketType = typeof PACKET_TYPES[number] | "error";

/** Binary data as it travels through the engine. */
export type BinaryData = ArrayBuffer | ArrayBufferView;

/** Data carried by a packet. */
export type PacketData = string | BinaryData;

/** Options a sender attaches to a packet (socket.io passes `compress`, `volatile`…). */
export interface PacketOptions {
  compress?: boolean;
  [key: string]: unknown;
}

/** A decoded or to-be-encoded Engine.IO packet. */
export interface Packet {
  type: PacketType;
  data?: PacketData;
  options?: PacketOptions;
}

/** The record separator between packets of a long-polling payload. */
export const SEPARATOR = "\x1e";

const TYPE_CODE: Record<string, string> = {
  open: "0",
  close: "1",
  ping: "2",
  pong: "3",
  message: "4",
  upgrade: "5",
  noop: "6",
};

const ERROR_PACKET: Packet = { type: "error", data: "parser error" };

/** Whether a value is binary data (ArrayBuffer or a view such as Buffer/Uint8Array). */
export function isBinary(data: unknown): data is BinaryData {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data);
}

function toBuffer(data: BinaryData): Buffer {
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Encodes a packet for a WebSocket frame: a string, or the raw bytes for a
 * binary message.
 */
export function encodePacket(packet: Packet): string | Uint8Array {
  const data = packet.data;
  if (data !== undefined && isBinary(data)) {
    return data instanceof Uint8Array ? data : toBuffer(data);
  }
  return TYPE_CODE[packet.type] + (data ?? "");
}

/** Encodes a packet as text: binary data becomes `b` + base64 (long-polling). */
export function encodePacketText(packet: Packet): string {
  const data = packet.data;
  if (data !== undefined && isBinary(data)) {
    return "b" + toBuffer(data).toString("base64");
  }
  return TYPE_CODE[packet.type] + (data ?? "");
}

/**
 * Decodes one packet. A string is a text packet (or `b…` base64 binary);
 * binary input is a binary message. Invalid input gives an `error` packet.
 */
export function decodePacket(encoded: string | BinaryData): Packet {
  if (typeof encoded !== "string") {
    return { type: "message", data: toBuffer(encoded) };
  }
  if (encoded.length === 0) return ERROR_PACKET;
  const code = encoded.charCodeAt(0);
  if (code === 98 /* b */) {
    const body = encoded.slice(1);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) return ERROR_PACKET;
    return { type: "message", data: Buffer.from(body, "base64") };
  }
  const index = code - 48;
  if (index < 0 || index >= PACKET_TYPES.length) return ERROR_PACKET;
  const type = PACKET_TYPES[index];
  return encoded.length > 1 ? { type, data: encoded.slice(1) } : { type };
}

/** Joins packets into one long-polling payload. */
export function encodePayload(packets: readonly Packet[]): string {
  if (packets.length === 1) return encodePacketText(packets[0]);
  let out = "";
  for (let i = 0; i < packets.length; i++) {
    if (i > 0) out += SEPARATOR;
    out += encodePacketText(packets[i]);
  }
  return out;
}

/**
 * Splits a long-polling payload into packets. Decoding stops at the first
 * invalid packet, which is returned as an `error` packet.
 */
export function decodePayload(payload: string): Packet[] {
  const parts = payload.split(SEPARATOR);
  const packets: Packet[] = [];
  for (const part of parts) {
    const packet = decodePacket(part);
    packets.push(packet);
    if (packet.type === "error") break;
  }
  return packets;
}

/**
 * Whether the UTF-8 encoding of `text` is longer than `limit` bytes, counted
 * in place (no encoded copy): a string over the limit in UTF-16 code units is
 * over it in bytes too, one of at most a third of it is not, and between the
 * two the count stops as soon as it passes the limit.
 */
export function utf8LengthExceeds(text: string, limit: number): boolean {
  const length = text.length;
  if (length > limit) return true;
  if (length * 3 <= limit) return false;
  let bytes = 0;
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) {
      bytes += 1;
    } else if (code < 0x800) {
      bytes += 2;
    } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else {
        bytes += 3; // lone surrogate: encoded as U+FFFD
      }
    } else {
      bytes += 3;
    }
    if (bytes > limit) return true;
  }
  return false;
}
