/**
 * src/engine/socket.ts, a session's hold: message packets written while it
 * holds are queued in order, not sent; `release(first)` sends `first`, then
 * what was held. Held bytes count against `maxBufferedBytes`. Raw
 * long-polling requests against the bare engine.
 */

import assert from "node:assert/strict";
import { Engine, type EngineOptions, type EngineSocket } from "../src/engine/mod.ts";

async function withEngine(
  options: EngineOptions,
  fn: (engine: Engine, base: string) => Promise<void>,
): Promise<void> {
  const engine = new Engine(options);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, engine.handler());
  try {
    await fn(engine, `http://127.0.0.1:${server.addr.port}/socket.io/?EIO=4&transport=polling`);
  } finally {
    engine.close();
    await server.shutdown();
  }
}

async function open(engine: Engine, base: string): Promise<{ sid: string; session: EngineSocket }> {
  const body = await (await fetch(base)).text();
  const sid = JSON.parse(body.slice(1)).sid as string;
  return { sid, session: engine.clients.get(sid)! };
}

Deno.test("hold: nothing goes out until release, then first, then the held packets in order", async () => {
  await withEngine({ pingInterval: 60_000 }, async (engine, base) => {
    const { sid, session } = await open(engine, base);
    session.hold();
    session.write("held 1");
    session.write("held 2");
    // a poll now waits: nothing is sendable (answered once released)
    const poll = fetch(`${base}&sid=${sid}`).then((r) => r.text());
    const early = await Promise.race([
      poll.then(() => "answered"),
      new Promise((resolve) => setTimeout(() => resolve("waiting"), 100)),
    ]);
    assert.equal(early, "waiting");
    session.release(["first"]);
    assert.equal(await poll, ["4first", "4held 1", "4held 2"].join("\x1e"));
    // released: writes go out as usual
    session.write("later");
    assert.equal(await (await fetch(`${base}&sid=${sid}`)).text(), "4later");
  });
});

Deno.test("hold: held bytes count against maxBufferedBytes", async () => {
  await withEngine({ maxBufferedBytes: 65_536 }, async (engine, base) => {
    const { session } = await open(engine, base);
    const closed = new Promise<string>((resolve) => session.once("close", resolve));
    session.hold();
    for (let i = 0; i < 10; i++) session.write("x".repeat(10_000));
    assert.equal(await closed, "transport error");
  });
});
