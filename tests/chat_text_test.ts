/**
 * src/chat_text.ts: chat text is stored as the person typed it, with markup
 * that could run in a page removed and nothing HTML-escaped.
 */

import assert from "node:assert/strict";
import { cleanChatText, MAX_STORED_BYTES, storedBytes } from "../src/chat_text.ts";

/** Whether a browser would start parsing markup somewhere in `text`. */
function opensMarkup(text: string): boolean {
  return /<[A-Za-z!/?]/.test(text);
}

Deno.test("cleanChatText: text without markup is kept as typed", async (t) => {
  const cases: Array<[string, string]> = [
    ["hello", "hello"],
    ["  surrounding whitespace  \n", "surrounding whitespace"],
    ["line one\nline two\n\n  indented", "line one\nline two\n\n  indented"],
    ["5 < 6", "5 < 6"],
    ["a > b", "a > b"],
    ["1 <3 you", "1 <3 you"],
    ["<3<3", "<3<3"],
    ["1<2<3", "1<2<3"],
    ["price<$5", "price<$5"],
    ["I paid <100 dollars", "I paid <100 dollars"],
    ["<- back", "<- back"],
    ["-->", "-->"],
    ["text<", "text<"],
    ["Tom & Jerry", "Tom & Jerry"],
    // entities typed literally stay literal: not decoded, not escaped again
    ["&amp; &lt;b&gt;", "&amp; &lt;b&gt;"],
    ["&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"],
    ["emoji 😀 and ünïcödé", "emoji 😀 and ünïcödé"],
    ["quotes \"double\" and 'single'", "quotes \"double\" and 'single'"],
  ];
  for (const [input, expected] of cases) {
    await t.step(JSON.stringify(input), () => {
      assert.equal(cleanChatText(input), expected);
    });
  }
});

Deno.test("cleanChatText: tags are removed, their text kept", async (t) => {
  const cases: Array<[string, string]> = [
    ["<b>bold</b>", "bold"],
    ["<B>bold</B> and <i>it</i>", "bold and it"],
    ["<a href='https://evil.example'>link</a>", "link"],
    ["<p>unclosed", "unclosed"],
    ["x<br/>y", "xy"],
    ["a</b>c", "ac"],
    ["<b\n>x</b>", "x"],
    ["& <b>x</b> &", "& x &"],
    ["<b>a</b> < <b>b</b>", "a < b"],
    ["line1\nline2 <b>x</b>\n", "line1\nline2 x"],
    ["a &lt;b&gt; <i>c</i>", "a &lt;b&gt; c"],
    ["<img src=x onerror=alert(1)>", ""],
    ["<b>   </b>", ""],
  ];
  for (const [input, expected] of cases) {
    await t.step(JSON.stringify(input), () => {
      assert.equal(cleanChatText(input), expected);
    });
  }
});

Deno.test("cleanChatText: comments, doctypes, processing instructions and CDATA go", async (t) => {
  const cases: Array<[string, string]> = [
    ["x<!-- hidden -->y", "xy"],
    ["<!--<b>-->z", "z"],
    ["<!doctype html>hi", "hi"],
    ["<?php echo 1 ?>after", "after"],
    ["<![CDATA[x]]>", ""],
  ];
  for (const [input, expected] of cases) {
    await t.step(JSON.stringify(input), () => {
      assert.equal(cleanChatText(input), expected);
    });
  }
});

Deno.test("cleanChatText: elements whose content is not text go with their content", async (t) => {
  const cases: Array<[string, string]> = [
    ["<script>alert(1)</script>ok", "ok"],
    ["<SCRIPT>X</SCRIPT>Y", "Y"],
    ["<script>never closed", ""],
    ["<style>p { color: red }</style>text", "text"],
    ["<noscript>n</noscript>a", "a"],
    ["<template><b>t</b></template>b", "b"],
    ["<iframe src=x></iframe>after", "after"],
    ["<object data=x>o</object>c", "c"],
    ["<svg><script>1</script></svg>z", "z"],
    ["<math><mi>x</mi></math>m", "m"],
    ["<xmp><b>x</b></xmp>q", "q"],
    ["<noembed>e</noembed>d", "d"],
    ["<noframes>f</noframes>e", "e"],
    ['<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>', ""],
  ];
  for (const [input, expected] of cases) {
    await t.step(JSON.stringify(input), () => {
      assert.equal(cleanChatText(input), expected);
    });
  }
});

Deno.test("cleanChatText: removing one tag cannot assemble another", async (t) => {
  const hostile = [
    "<<b>b>",
    "<<script>script>alert(1)<</script>/script>",
    "<scr<script>ipt>alert(1)</script>",
    "<<b>img src=x onerror=alert(1)<</b>>",
    "<<<<<<<<b>b>b>b>b>b>b>b>b>",
    "<</b>b>x",
    "<!<!---->-- x -->",
    "<?<??>?>",
    "<" + "<b>".repeat(20) + "i>",
    "</",
    "<!",
    "<?",
  ];
  for (const input of hostile) {
    await t.step(JSON.stringify(input), () => {
      const cleaned = cleanChatText(input);
      assert.ok(!opensMarkup(cleaned), `${JSON.stringify(input)} → ${JSON.stringify(cleaned)}`);
      // and cleaning is stable: the result is what would be stored again
      assert.equal(cleanChatText(cleaned), cleaned);
    });
  }
  await t.step("exact results of the documented example", () => {
    assert.equal(cleanChatText("<<b>b>"), "");
    assert.equal(cleanChatText("<scr<script>ipt>alert(1)</script>"), "ipt>alert(1)");
  });
});

Deno.test("storedBytes: one byte per Latin-1 character, two per UTF-16 unit otherwise", () => {
  assert.equal(storedBytes(""), 0);
  assert.equal(storedBytes("abc"), 3);
  assert.equal(storedBytes("é ÿ"), 3);
  assert.equal(storedBytes("Ā"), 2);
  assert.equal(storedBytes("aĀ"), 4);
  assert.equal(storedBytes("😀"), 4);
  assert.equal(storedBytes("a".repeat(1000) + "😀"), 2004);
});

Deno.test("storedBytes matches what Deno KV stores: a body at the limit fits one value", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const message = (body: string) => ({
      id: Number.MAX_SAFE_INTEGER,
      chatGroupId: Number.MAX_SAFE_INTEGER,
      body,
      createdAt: new Date(0).toISOString(),
      sender: { kind: "client", id: Number.MAX_SAFE_INTEGER },
      deliveredAt: new Date(0).toISOString(),
      readAt: new Date(0).toISOString(),
    });
    const latin = "é".repeat(MAX_STORED_BYTES);
    const wide = "Ā".repeat(MAX_STORED_BYTES / 2);
    assert.equal(storedBytes(latin), MAX_STORED_BYTES);
    assert.equal(storedBytes(wide), MAX_STORED_BYTES);
    await kv.set(["chat", 1, 1], message(latin));
    await kv.set(["chat", 1, 2], message(wide));
    assert.equal((await kv.get<{ body: string }>(["chat", 1, 2])).value?.body, wide);
    // KV's 64 KiB limit is what storedBytes models: a bit over it in wide characters is refused
    await assert.rejects(kv.set(["chat", 1, 3], message("Ā".repeat(33_000))));
    assert.ok(storedBytes("Ā".repeat(33_000)) > 65_536);
  } finally {
    kv.close();
  }
});
