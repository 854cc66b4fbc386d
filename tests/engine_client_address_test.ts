/**
 * The client's address behind trusted proxies (src/engine/client_address.ts),
 * hostile headers included.
 */

import assert from "node:assert/strict";
import {
  clientAddress,
  isTrustedProxy,
  parseTrustedProxies,
} from "../src/engine/client_address.ts";

const trusted = parseTrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"]);

function xff(value: string, peer = "127.0.0.1"): string {
  return clientAddress(peer, new Headers({ "x-forwarded-for": value }), { trusted });
}

function fwd(value: string, peer = "127.0.0.1"): string {
  return clientAddress(peer, new Headers({ forwarded: value }), { trusted, header: "forwarded" });
}

Deno.test("trusted proxy list: addresses and CIDR networks, IPv4 and IPv6", () => {
  const list = parseTrustedProxies([" 192.168.1.0/24 ", "2001:db8::/32", "203.0.113.7", ""]);
  assert.equal(list.networks.length, 3);
  assert.equal(isTrustedProxy("192.168.1.200", list), true);
  assert.equal(isTrustedProxy("192.168.2.1", list), false);
  assert.equal(isTrustedProxy("2001:db8:ffff::1", list), true);
  assert.equal(isTrustedProxy("2001:db9::1", list), false);
  assert.equal(isTrustedProxy("203.0.113.7", list), true);
  assert.equal(isTrustedProxy("203.0.113.8", list), false);
  // an IPv4-mapped IPv6 peer is its IPv4 address
  assert.equal(isTrustedProxy("::ffff:192.168.1.9", list), true);
  // odd prefixes
  const odd = parseTrustedProxies(["10.128.0.0/9", "0.0.0.0/0"]);
  assert.equal(isTrustedProxy("1.2.3.4", odd), true);
  assert.equal(isTrustedProxy("::1", odd), false, "an IPv4 network never matches IPv6");
  const nine = parseTrustedProxies(["10.128.0.0/9"]);
  assert.equal(isTrustedProxy("10.200.0.1", nine), true);
  assert.equal(isTrustedProxy("10.127.0.1", nine), false);
});

Deno.test("trusted proxy list: invalid entries are refused with the entry named", () => {
  for (
    const bad of [
      "10.0.0.0/33",
      "::/129",
      "10.0.0/8",
      "256.1.1.1",
      "010.0.0.1",
      "1.2.3.4/",
      "1.2.3.4/-1",
      "example.com",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "fe80::1%eth0",
    ]
  ) {
    assert.throws(() => parseTrustedProxies([bad]), TypeError, bad);
  }
});

Deno.test("X-Forwarded-For is read only when the peer is a trusted proxy", () => {
  assert.equal(xff("203.0.113.9"), "203.0.113.9");
  // an untrusted peer's header is ignored: it is the client itself
  assert.equal(xff("203.0.113.9", "198.51.100.1"), "198.51.100.1");
  // no header
  assert.equal(clientAddress("127.0.0.1", new Headers(), { trusted }), "127.0.0.1");
  // no trusted proxies configured
  assert.equal(
    clientAddress("127.0.0.1", new Headers({ "x-forwarded-for": "203.0.113.9" }), {
      trusted: parseTrustedProxies([]),
    }),
    "127.0.0.1",
  );
});

Deno.test("X-Forwarded-For: walked from the right, trusted hops skipped", () => {
  // client -> proxy 10.0.0.2 -> proxy 127.0.0.1 (the peer)
  assert.equal(xff("203.0.113.9, 10.0.0.2"), "203.0.113.9");
  // the client's own (spoofed) entries are left of the first untrusted hop: never read
  assert.equal(xff("1.1.1.1, 8.8.8.8, 203.0.113.9, 10.0.0.2"), "203.0.113.9");
  assert.equal(xff("10.0.0.99, 203.0.113.9"), "203.0.113.9", "a spoofed trusted entry is skipped");
  // every hop trusted: the leftmost is the client
  assert.equal(xff("10.9.9.9, 10.0.0.2"), "10.9.9.9");
  // repeated header lines are joined with ", " by the Fetch API
  const headers = new Headers();
  headers.append("x-forwarded-for", "6.6.6.6");
  headers.append("x-forwarded-for", "203.0.113.9");
  assert.equal(clientAddress("127.0.0.1", headers, { trusted }), "203.0.113.9");
  // ports and IPv6
  assert.equal(xff("203.0.113.9:51000"), "203.0.113.9");
  assert.equal(xff("2001:DB8::0:1"), "2001:db8::1", "normalized");
  assert.equal(xff("[2001:db8::1]:443"), "2001:db8::1");
  assert.equal(xff("::ffff:203.0.113.9"), "203.0.113.9");
  assert.equal(xff("203.0.113.9", "::1"), "203.0.113.9", "IPv6 peer");
  assert.equal(xff("203.0.113.9", "::ffff:127.0.0.1"), "203.0.113.9", "IPv4-mapped peer");
});

Deno.test("X-Forwarded-For: hostile or malformed headers", () => {
  // garbage left of the first untrusted hop cannot make the walk fail
  assert.equal(xff('"><script>, , unknown, 203.0.113.9'), "203.0.113.9");
  assert.equal(xff("x".repeat(100_000) + ", 203.0.113.9"), "203.0.113.9");
  assert.equal(xff(",".repeat(10_000) + "203.0.113.9"), "203.0.113.9");
  // a malformed entry reached in the walk: the peer
  for (
    const bad of [
      "",
      " ",
      "unknown",
      "203.0.113.9, ",
      "203.0.113.9,",
      "203.0.113.9, garbage",
      "999.0.0.1",
      "203.0.113.9:99999999",
      "[2001:db8::1",
      "[203.0.113.9]",
      "2001:db8::1:80:x",
      "1.2.3.4.5",
      "fe80::1%25eth0",
      "01.2.3.4",
      "\u00b9.2.3.4",
    ]
  ) {
    assert.equal(xff(bad), "127.0.0.1", JSON.stringify(bad));
  }
  // more trusted hops than the walk allows: the peer
  assert.equal(xff(Array(20).fill("10.0.0.1").join(", ")), "127.0.0.1");
  assert.equal(
    clientAddress("127.0.0.1", new Headers({ "x-forwarded-for": "203.0.113.9, 10.0.0.1" }), {
      trusted,
      maxHops: 1,
    }),
    "127.0.0.1",
  );
});

Deno.test("Forwarded (RFC 7239): for= of each element, from the right", () => {
  assert.equal(fwd("for=203.0.113.9"), "203.0.113.9");
  assert.equal(fwd("for=203.0.113.9;proto=https;by=10.0.0.2"), "203.0.113.9");
  assert.equal(fwd('For="[2001:db8:cafe::17]:4711"'), "2001:db8:cafe::17");
  assert.equal(fwd('for="203.0.113.9:4711"'), "203.0.113.9");
  assert.equal(fwd("for=6.6.6.6, for=203.0.113.9, for=10.0.0.2"), "203.0.113.9");
  // only the configured header is read: X-Forwarded-For passed through from the client is ignored
  assert.equal(
    clientAddress(
      "127.0.0.1",
      new Headers({ forwarded: "for=203.0.113.9", "x-forwarded-for": "6.6.6.6" }),
      { trusted, header: "forwarded" },
    ),
    "203.0.113.9",
  );
  assert.equal(
    clientAddress(
      "127.0.0.1",
      new Headers({ forwarded: "for=6.6.6.6", "x-forwarded-for": "203.0.113.9" }),
      { trusted },
    ),
    "203.0.113.9",
  );
});

Deno.test("Forwarded: hostile or malformed elements", () => {
  assert.equal(fwd('for="unterminated, for=203.0.113.9'), "203.0.113.9");
  for (
    const bad of [
      "for=unknown",
      "for=_hidden",
      "proto=https",
      "for=203.0.113.9;for=1.2.3.4",
      'for="203.0.113.9',
      "for=[2001:db8::1]:x",
      "for",
      "for=203.0.113.9, by=10.0.0.1",
    ]
  ) {
    assert.equal(fwd(bad), "127.0.0.1", JSON.stringify(bad));
  }
});
