/**
 * The client's address behind reverse proxies: taken from `X-Forwarded-For`
 * or `Forwarded` (RFC 7239) only when the TCP peer is a trusted proxy.
 *
 * The header is walked from right to left (the rightmost entry was written by
 * the nearest proxy), skipping entries that are themselves trusted proxies;
 * the first untrusted entry is the client. Entries left of it were written by
 * the client or by untrusted hops and are never read, so a client cannot
 * choose its address, nor make the walk fail by sending garbage. A malformed
 * entry reached during the walk (a proxy misconfiguration) gives the peer's
 * address.
 *
 * ```ts
 * import { clientAddress, parseTrustedProxies } from "./client_address.ts";
 *
 * const trusted = parseTrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
 * clientAddress("10.1.2.3", new Headers({ "x-forwarded-for": "203.0.113.9" }), { trusted });
 * // → "203.0.113.9"
 * ```
 *
 * @module
 */

/** One parsed IP address: 4 bytes (IPv4) or 16 bytes (IPv6). */
interface Ip {
  bytes: Uint8Array;
}

/** A network: address bytes and prefix length in bits. */
interface Cidr {
  bytes: Uint8Array;
  prefix: number;
}

/** Parsed trusted proxy networks (from {@linkcode parseTrustedProxies}). */
export interface TrustedProxies {
  /** The networks, IPv4 and IPv6. */
  readonly networks: readonly Cidr[];
}

/** Which header the trusted proxies write. */
export type ProxyHeader = "x-forwarded-for" | "forwarded";

/** Options of {@linkcode clientAddress}. */
export interface ClientAddressOptions {
  /** The trusted proxies; none trusted when empty. */
  trusted: TrustedProxies;
  /**
   * The header the proxies write (default `x-forwarded-for`). Only that one is
   * read: a proxy passes the other one through from the client unchanged.
   */
  header?: ProxyHeader;
  /** Most proxy hops walked before giving up (default 16); then the peer's address. */
  maxHops?: number;
}

/**
 * Parses a list of trusted proxies: IPv4 or IPv6 addresses, or networks in
 * CIDR notation (`10.0.0.0/8`, `fd00::/8`). Throws a `TypeError` naming the
 * first invalid entry.
 */
export function parseTrustedProxies(list: readonly string[]): TrustedProxies {
  const networks: Cidr[] = [];
  for (const raw of list) {
    const entry = raw.trim();
    if (entry === "") continue;
    const slash = entry.indexOf("/");
    const ip = parseIp(slash < 0 ? entry : entry.slice(0, slash));
    if (!ip) throw new TypeError(`not an IP address or CIDR network: ${JSON.stringify(raw)}`);
    const bits = ip.bytes.length * 8;
    let prefix = bits;
    if (slash >= 0) {
      const text = entry.slice(slash + 1);
      prefix = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
      if (!(prefix >= 0 && prefix <= bits)) {
        throw new TypeError(`invalid prefix length in ${JSON.stringify(raw)}`);
      }
    }
    networks.push({ bytes: ip.bytes, prefix });
  }
  return { networks };
}

/** Whether `address` (an IP address string) lies in one of the trusted networks. */
export function isTrustedProxy(address: string, trusted: TrustedProxies): boolean {
  const ip = parseIp(address);
  return ip !== null && inNetworks(ip, trusted.networks);
}

/**
 * The client's address: the TCP peer's, unless the peer is a trusted proxy,
 * in which case the first untrusted hop of the proxy header, walked from
 * right to left. A missing header, or a malformed entry reached in the walk,
 * gives the peer's address. Addresses are returned normalized (IPv6
 * compressed and lower-case, IPv4-mapped IPv6 as IPv4).
 */
export function clientAddress(
  peer: string,
  headers: Headers,
  options: ClientAddressOptions,
): string {
  const { trusted } = options;
  if (trusted.networks.length === 0) return peer;
  const peerIp = parseIp(peer);
  if (!peerIp || !inNetworks(peerIp, trusted.networks)) return peer;
  const header = options.header ?? "x-forwarded-for";
  const value = headers.get(header);
  if (value === null) return peer;
  const maxHops = options.maxHops ?? 16;
  let end = value.length;
  let hop: Ip | null = null;
  for (let hops = 0; hops < maxHops && end > 0; hops++) {
    const comma = value.lastIndexOf(",", end - 1);
    const element = value.slice(comma + 1, end);
    end = comma < 0 ? 0 : comma;
    hop = header === "forwarded" ? forwardedFor(element) : parseHostPort(element.trim());
    if (!hop) return peer;
    if (!inNetworks(hop, trusted.networks)) return formatIp(hop);
    if (end === 0) return formatIp(hop); // every hop trusted: the leftmost is the client
  }
  return peer;
}

/** The `for=` node of one `Forwarded` element, or null when absent or not an IP. */
function forwardedFor(element: string): Ip | null {
  let found: Ip | null = null;
  for (const pair of element.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0) return null;
    const key = pair.slice(0, eq).trim().toLowerCase();
    if (key !== "for") continue;
    if (found) return null; // two "for" in one element
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"')) {
      if (value.length < 2 || !value.endsWith('"')) return null;
      value = value.slice(1, -1);
    }
    found = parseHostPort(value);
    if (!found) return null;
  }
  return found;
}

/** `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`. */
function parseHostPort(text: string): Ip | null {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return null;
    const rest = text.slice(close + 1);
    if (rest !== "" && !/^:\d{1,5}$/.test(rest)) return null;
    const ip = parseIp(text.slice(1, close));
    return ip && ip.bytes.length === 16 ? ip : null;
  }
  const colon = text.indexOf(":");
  if (colon >= 0 && text.indexOf(":", colon + 1) < 0) {
    // one colon: IPv4 with a port
    if (!/^\d{1,5}$/.test(text.slice(colon + 1))) return null;
    const ip = parseIpv4(text.slice(0, colon));
    return ip ? { bytes: ip } : null;
  }
  return parseIp(text);
}

function inNetworks(ip: Ip, networks: readonly Cidr[]): boolean {
  for (const net of networks) {
    if (net.bytes.length === ip.bytes.length && matches(ip.bytes, net)) return true;
  }
  return false;
}

function matches(bytes: Uint8Array, net: Cidr): boolean {
  const full = net.prefix >> 3;
  for (let i = 0; i < full; i++) if (bytes[i] !== net.bytes[i]) return false;
  const rest = net.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[full] & mask) === (net.bytes[full] & mask);
}

/** Parses an IPv4 or IPv6 address (IPv4-mapped IPv6 becomes IPv4); null when invalid. */
function parseIp(text: string): Ip | null {
  if (text.length === 0 || text.length > 45) return null;
  if (text.includes(":")) {
    const bytes = parseIpv6(text);
    if (!bytes) return null;
    if (isIpv4Mapped(bytes)) return { bytes: bytes.slice(12) };
    return { bytes };
  }
  const v4 = parseIpv4(text);
  return v4 ? { bytes: v4 } : null;
}

function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i];
    // decimal only, no leading zeros (no octal ambiguity)
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    bytes[i] = n;
  }
  return bytes;
}

function parseIpv6(input: string): Uint8Array | null {
  // a zone index (fe80::1%eth0) is not an address of a remote client
  if (input.includes("%")) return null;
  let text = input;
  let tail: Uint8Array | null = null;
  const lastColon = text.lastIndexOf(":");
  if (text.indexOf(".", lastColon) >= 0) {
    tail = parseIpv4(text.slice(lastColon + 1));
    if (!tail) return null;
    text = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const rest = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  const groups = head.length + rest.length;
  if (halves.length === 1 ? groups !== 8 : groups > 7) return null;
  const words: number[] = [...head, ...new Array(8 - groups).fill("0"), ...rest].map((g) =>
    /^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN
  );
  if (words.some((w) => Number.isNaN(w))) return null;
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = words[i] >> 8;
    bytes[2 * i + 1] = words[i] & 0xff;
  }
  if (tail) bytes.set(tail, 12);
  return bytes;
}

function isIpv4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** IPv4 dotted, IPv6 compressed lower-case (RFC 5952). */
function formatIp(ip: Ip): string {
  const b = ip.bytes;
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((b[2 * i] << 8) | b[2 * i + 1]);
  // longest run of zero words (at least two) becomes "::"
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLength).join(":");
  return `${left}::${right}`;
}
