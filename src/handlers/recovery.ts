/**
 * Connection state recovery, after the identity check.
 *
 * socket.io restores a recovered socket before its middlewares run: it puts
 * the socket back into the rooms it had and writes what it missed at once,
 * so a client with a refused token would still receive chat text, and a
 * person who lost a conversation meanwhile would get its messages. Here the
 * restore is split in two:
 *
 * 1. {@linkcode deferRecovery} wraps the adapter's `restoreSession`: the
 *    socket comes back recovered (same id, private id and data) but in no
 *    room and with nothing replayed; the rooms it had and the client's
 *    offset are kept aside.
 * 2. Once the handshake middleware verified the person and the socket
 *    connected, the session decides which of those rooms the person may
 *    still enter ({@linkcode savedRooms}) and {@linkcode rejoinRooms}
 *    restores again from the same offset with only those rooms: the socket
 *    joins them, gets what was broadcast to them since the offset, and then
 *    what was broadcast meanwhile (held back by the engine so the order
 *    stays).
 *
 * Nothing reaches a recovering socket before its identity is verified, and
 * no private member of socket.io is touched.
 *
 * @module
 */

import type { Server } from "socket.io";
import { Encoder, PacketType } from "socket.io-parser";
import type { AppSocket } from "./context.ts";

/** What the adapter keeps of a session (socket.io-adapter's `Session`). */
interface RestoredSession {
  sid: string;
  pid: string;
  rooms: string[];
  data: unknown;
  missedPackets: unknown[][];
}

type Restore = (pid: string, offset: string) => Promise<RestoredSession | null>;

interface SessionAdapter {
  restoreSession: Restore;
  persistSession(session: Omit<RestoredSession, "missedPackets">): void;
}

/** An engine session that can hold message packets back (ours can). */
interface HoldingConnection {
  hold(): void;
  release(first?: readonly (string | ArrayBuffer | Uint8Array)[]): void;
}

/**
 * Rooms, private id and offset of a session restored without its rooms, by
 * its `socket.data` object (which the handshake middleware fills in place).
 */
const saved = new WeakMap<object, { rooms: string[]; pid: string; offset: string }>();
/** The adapter's own restore, by adapter. */
const restores = new WeakMap<object, Restore>();
const encoder = new Encoder();

/**
 * Makes the main namespace restore recovered sockets without rooms and
 * without replay (phase 1, see the module docs).
 */
export function deferRecovery(io: Server): void {
  const adapter = io.of("/").adapter as unknown as SessionAdapter;
  const restore: Restore = adapter.restoreSession.bind(adapter);
  restores.set(adapter, restore);
  adapter.restoreSession = async (pid, offset) => {
    const session = await restore(pid, offset);
    if (!session) return session;
    const data = typeof session.data === "object" && session.data !== null ? session.data : {};
    saved.set(data, { rooms: session.rooms, pid, offset });
    return { sid: session.sid, pid: session.pid, data, rooms: [], missedPackets: [] };
  };
}

/**
 * The rooms a recovered socket had when it dropped, or null when the socket
 * was not recovered by {@linkcode deferRecovery} (or was rejoined already).
 */
export function savedRooms(socket: AppSocket): string[] | null {
  const data = socket.data as object;
  const record = saved.get(data);
  if (record === undefined) return null;
  return record.rooms;
}

/**
 * Puts a recovered socket into `rooms` (phase 2, see the module docs): the
 * packets broadcast to them since the client's offset are replayed first,
 * then what was broadcast while they were read.
 */
export async function rejoinRooms(socket: AppSocket, rooms: readonly string[]): Promise<void> {
  const data = socket.data as object;
  const record = saved.get(data);
  saved.delete(data);
  const adapter = socket.nsp.adapter as unknown as SessionAdapter;
  const restore = restores.get(adapter);
  const conn = socket.conn as unknown as Partial<HoldingConnection>;
  const wanted = [...new Set([socket.id, ...rooms])];
  if (record === undefined || restore === undefined) {
    socket.join(wanted);
    return;
  }
  conn.hold?.();
  let missed: unknown[][] = [];
  try {
    adapter.persistSession({ sid: socket.id, pid: record.pid, rooms: wanted, data });
    const again = Promise.resolve(restore(record.pid, record.offset));
    // joined before the restore resolves: a broadcast meanwhile is held, not lost
    socket.join(wanted);
    missed = (await again.catch(() => null))?.missedPackets ?? [];
  } finally {
    const frames = missed.flatMap((packet) =>
      encoder.encode({ type: PacketType.EVENT, nsp: socket.nsp.name, data: packet })
    );
    conn.release?.(frames);
  }
}
