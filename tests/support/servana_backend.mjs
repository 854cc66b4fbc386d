// Plays Servana's Node backend (REST side) for the tests, with the maintained
// Socket.IO libraries from npm: a socket.io Server that does not listen,
// on @socket.io/redis-streams-adapter over the `redis` client, emitting what
// the backend's REST controllers emit through `io.to(room).emit(...)`; and a
// read of the `user_presence:<id>` keys its automatic assignment reads.
//
//   node servana_backend.mjs emit <redisUrl> <streamName> '<[[room, event, payload], ...]>'
//   node servana_backend.mjs presence <redisUrl>
//
// Prints one JSON line with what it did.

import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

const [command, url, ...rest] = process.argv.slice(2);
const redis = createClient({ url });
await redis.connect();

if (command === "emit") {
  const [streamName, emitsJson] = rest;
  // as the backend builds `io` once the sockets are served elsewhere
  const io = new Server({ adapter: createAdapter(redis, { streamName }) });
  const emits = JSON.parse(emitsJson);
  for (const [room, event, payload] of emits) io.to(room).emit(event, payload);
  // the adapter appends to the stream asynchronously: wait until every emit is in it
  const before = Number(process.env.STREAM_LENGTH_BEFORE ?? "0");
  for (let i = 0; i < 200; i++) {
    const length = await redis.xLen(streamName);
    if (length >= before + emits.length) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  console.log(
    JSON.stringify({ emitted: emits.length, streamLength: await redis.xLen(streamName) }),
  );
  // done: the adapter's blocking stream reader would keep the process alive
  process.exit(0);
} else if (command === "presence") {
  const keys = (await redis.keys("user_presence:*")).sort();
  const entries = [];
  for (const key of keys) {
    entries.push({ key, ttl: await redis.ttl(key), value: JSON.parse(await redis.get(key)) });
  }
  console.log(JSON.stringify(entries));
} else {
  console.error(`unknown command ${command}`);
  process.exitCode = 2;
}
await redis.quit();
process.exit(process.exitCode ?? 0);
