/**
 * Chat text as Servana stores it (`chat.chat_body`): what the person typed,
 * with markup that could run in a page removed, and nothing HTML-escaped, so
 * that Servana's REST side and apps can show it as-is (as text).
 *
 * Markup means HTML tags, comments, processing instructions and CDATA, and
 * the whole content of elements whose content is not text (`script`,
 * `style`, …). Text that merely contains `<`, `>` or `&` (`5 < 6`, `Tom &
 * Jerry`, `&amp;` typed literally) is kept as typed. Stripping repeats until
 * nothing changes, so that removing one tag cannot assemble another
 * (`<<b>b>` → `<b>` → ``).
 *
 * @module
 */

import { Parser } from "htmlparser2";

/** Elements whose content is dropped with them. */
const NON_TEXT = new Set([
  "script",
  "style",
  "noscript",
  "template",
  "iframe",
  "object",
  "embed",
  "svg",
  "math",
  "xmp",
  "noembed",
  "noframes",
]);

/** Most stripping passes (each pass shortens the text, so this only bounds pathological input). */
const MAX_PASSES = 8;

/** A `<` that starts something a browser would parse as markup. */
const TAG_START = /<(?=[A-Za-z!/?])/g;

/** Largest serialized body a Deno KV value can hold with the rest of a message, bytes. */
export const MAX_STORED_BYTES = 60_000;

/** One pass: the text nodes of `text`, outside non-text elements. */
function stripOnce(text: string): string {
  let out = "";
  let skipping = 0;
  const parser = new Parser({
    onopentagname(name) {
      if (NON_TEXT.has(name)) skipping++;
    },
    onclosetag(name) {
      if (NON_TEXT.has(name) && skipping > 0) skipping--;
    },
    ontext(chunk) {
      if (skipping === 0) out += chunk;
    },
  }, { decodeEntities: false, lowerCaseTags: true });
  parser.write(text);
  parser.end();
  return out;
}

/**
 * Chat text with markup removed (see the module docs) and surrounding
 * whitespace trimmed. Text without `<` is returned as is (trimmed), without
 * parsing.
 */
export function cleanChatText(text: string): string {
  if (!text.includes("<")) return text.trim();
  let current = text;
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const next = stripOnce(current);
    if (next === current) break;
    current = next;
  }
  // whatever still opens a tag after the passes (pathological input) loses its "<"
  return current.replace(TAG_START, "").trim();
}

/**
 * Bytes a body takes in a Deno KV value: V8 stores a string of Latin-1
 * characters with one byte each, any other with two per UTF-16 unit.
 */
export function storedBytes(body: string): number {
  // deno-lint-ignore no-control-regex
  return /^[\x00-\xff]*$/.test(body) ? body.length : body.length * 2;
}
