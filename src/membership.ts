/**
 * Who is connected and who is in which conversation, across every server
 * process, in Deno KV: the connections of a person (a cap per person; "first
 * tab", "last tab") and the members of a conversation (`memberCount`,
 * "someone of the other side is in the room", `userJoined` / `userLeft` once
 * per person). Counting members costs a read of that conversation's entries,
 * never a round trip through every process or a copy of every socket.
 *
 * Entries belong to the process that wrote them. A process proves it is alive
 * with a heartbeat key; entries of a process whose heartbeat stopped (killed,
 * crashed) are ignored at once and removed by {@linkcode Membership.reap},
 * which reports the people whose last connection went with it.
 *
 * Keys (`person` is `agent:5` / `client:5`):
 * - `["m", "proc", processId]` → `{ beatAt }`, refreshed every `beatMs`
 * - `["m", "procs", processId]` → `{ startedAt }`, until the process closed or was reaped
 * - `["m", "conn", person, socketId]` → `{ process }`; `["m", "conn_v", person]` → version
 * - `["m", "member", chatGroupId, person, socketId]` → `{ process }`;
 *   `["m", "member_v", chatGroupId, person]` → version
 * - `["m", "own", processId, ...entryKey]` → `true`: what a process wrote, for reaping
 *
 * Every change to one person's connections (or to one person's membership of
 * one conversation) checks and bumps that version key in the same atomic
 * commit, so "first" and "last" are true for exactly one caller and the cap
 * holds under concurrent handshakes; the last entry's removal deletes the
 * version key, so nothing is left per person or conversation.
 *
 * @module
 */

import { retryCommit, tryCommit } from "./kv_retry.ts";
import { parsePersonKey, personKey, type PersonRef } from "./store/mod.ts";

/** Options of {@linkcode Membership}. */
export interface MembershipOptions {
  /** This process's id (default: random). */
  processId?: string;
  /** Heartbeat period, ms (default 5000); a process silent for 4 periods is dead. */
  beatMs?: number;
  /** Clock, ms (tests). */
  now?: () => number;
}

/** Result of {@linkcode Membership.connect}. */
export interface ConnectResult {
  /** False when the person already holds `max` connections (nothing was written). */
  accepted: boolean;
  /** The person had no live connection before this one. */
  first: boolean;
  /** Live connections of the person, this one included when accepted. */
  count: number;
}

interface Owned {
  process: string;
}

const PREFIX = "m";
/** Mutations per atomic commit when deleting a process's entries (KV allows 1000). */
const BATCH = 200;

/** Cluster-wide connections and conversation membership; see the module docs. */
export class Membership {
  /** This process's id. */
  readonly processId: string;
  readonly #kv: Deno.Kv;
  readonly #beatMs: number;
  readonly #now: () => number;
  readonly #alive = new Map<string, { alive: boolean; at: number }>();
  #beat: ReturnType<typeof setInterval> | undefined;
  #reaper: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(kv: Deno.Kv, options: MembershipOptions = {}) {
    this.#kv = kv;
    this.processId = options.processId ?? crypto.randomUUID();
    this.#beatMs = options.beatMs ?? 5000;
    this.#now = options.now ?? Date.now;
  }

  /** Registers this process and starts its heartbeat (and, given `onReaped`, the reaper). */
  async start(options: { onReaped?: (gone: PersonRef[]) => void } = {}): Promise<void> {
    await this.#retry(async () => {
      const op = this.#kv.atomic()
        .set([PREFIX, "procs", this.processId], { startedAt: this.#now() })
        .set([PREFIX, "proc", this.processId], { beatAt: this.#now() }, {
          expireIn: this.#beatMs * 4,
        });
      return (await tryCommit(op)) ? true : null;
    });
    this.#beat = setInterval(() => {
      this.#kv.set([PREFIX, "proc", this.processId], { beatAt: this.#now() }, {
        expireIn: this.#beatMs * 4,
      }).catch(() => {});
    }, this.#beatMs);
    const onReaped = options.onReaped;
    if (onReaped) {
      this.#reaper = setInterval(() => {
        this.reap().then((gone) => gone.length && onReaped(gone), () => {});
      }, this.#beatMs * 3);
    }
  }

  /** Records a connection of `person`, unless they already hold `max` live ones. */
  async connect(
    person: PersonRef,
    socketId: string,
    options: { max: number },
  ): Promise<ConnectResult> {
    const who = personKey(person);
    const versionKey: Deno.KvKey = [PREFIX, "conn_v", who];
    const entryKey: Deno.KvKey = [PREFIX, "conn", who, socketId];
    return await this.#retry(async () => {
      const version = await this.#kv.get<number>(versionKey);
      const { live, dead } = await this.#entries([PREFIX, "conn", who]);
      const others = live.filter((key) => key[3] !== socketId);
      if (others.length >= options.max) {
        return { accepted: false, first: false, count: others.length };
      }
      const op = this.#kv.atomic().check(version).set(versionKey, (version.value ?? 0) + 1);
      this.#own(op, entryKey);
      for (const key of dead) op.delete(key);
      const commit = await op.commit();
      return commit.ok
        ? { accepted: true, first: others.length === 0, count: others.length + 1 }
        : null;
    });
  }

  /** Removes a connection; `last` when the person has no live connection left. */
  async disconnect(person: PersonRef, socketId: string): Promise<{ last: boolean }> {
    const who = personKey(person);
    return await this.#remove(
      [PREFIX, "conn_v", who],
      [PREFIX, "conn", who],
      [PREFIX, "conn", who, socketId],
    );
  }

  /** Live connections of a person. */
  async connectionCount(person: PersonRef): Promise<number> {
    return (await this.#entries([PREFIX, "conn", personKey(person)])).live.length;
  }

  /** Records that a socket of `person` is in a conversation; `first` for the person's first socket there. */
  async join(
    chatGroupId: number,
    person: PersonRef,
    socketId: string,
  ): Promise<{ first: boolean; members: PersonRef[] }> {
    const who = personKey(person);
    const versionKey: Deno.KvKey = [PREFIX, "member_v", chatGroupId, who];
    const entryKey: Deno.KvKey = [PREFIX, "member", chatGroupId, who, socketId];
    return await this.#retry(async () => {
      const version = await this.#kv.get<number>(versionKey);
      const { live, dead } = await this.#entries([PREFIX, "member", chatGroupId]);
      const mine = live.filter((key) => key[3] === who && key[4] !== socketId);
      const op = this.#kv.atomic().check(version).set(versionKey, (version.value ?? 0) + 1);
      this.#own(op, entryKey);
      for (const key of dead) op.delete(key);
      const commit = await op.commit();
      if (!commit.ok) return null;
      return { first: mine.length === 0, members: distinctPeople([...live, entryKey], 3) };
    });
  }

  /** Removes a socket from a conversation; `last` when the person has no socket left there. */
  async leave(
    chatGroupId: number,
    person: PersonRef,
    socketId: string,
  ): Promise<{ last: boolean }> {
    const who = personKey(person);
    return await this.#remove(
      [PREFIX, "member_v", chatGroupId, who],
      [PREFIX, "member", chatGroupId, who],
      [PREFIX, "member", chatGroupId, who, socketId],
    );
  }

  /** The distinct people with a live socket in a conversation. */
  async members(chatGroupId: number): Promise<PersonRef[]> {
    return distinctPeople((await this.#entries([PREFIX, "member", chatGroupId])).live, 3);
  }

  /**
   * Removes the entries of dead processes and returns the people whose last
   * live connection went with them. Several processes may reap at once: each
   * dead process is claimed by one of them.
   */
  async reap(): Promise<PersonRef[]> {
    const people = new Set<string>();
    for await (const entry of this.#kv.list({ prefix: [PREFIX, "procs"] })) {
      const processId = entry.key[2] as string;
      if (processId === this.processId || (await this.#aliveSet([processId])).has(processId)) {
        continue;
      }
      // entries first (deleting twice is harmless), the registration last: a reap that
      // fails half-way leaves the registration, and the next one finishes the work
      const mine = new Set<string>();
      const keys: Deno.KvKey[] = [];
      for await (const own of this.#kv.list({ prefix: [PREFIX, "own", processId] })) {
        const item = own.key.slice(3);
        keys.push(own.key, item);
        if (item[1] === "conn") mine.add(item[2] as string);
      }
      await this.#deleteAll(keys);
      const claimed = await this.#retry(async () => {
        const now = await this.#kv.get(entry.key);
        if (now.versionstamp !== entry.versionstamp) return false; // another process claimed it
        return (await tryCommit(this.#kv.atomic().check(now).delete(entry.key))) ? true : null;
      });
      if (claimed) { for (const who of mine) people.add(who); }
    }
    const gone: PersonRef[] = [];
    for (const who of people) {
      const ref = parsePersonKey(who);
      if (ref !== null && (await this.connectionCount(ref)) === 0) gone.push(ref);
    }
    return gone;
  }

  /** How many processes registered in this KV are alive (this one included). */
  async liveProcessCount(): Promise<number> {
    const ids: string[] = [];
    for await (const entry of this.#kv.list({ prefix: [PREFIX, "procs"] })) {
      ids.push(entry.key[2] as string);
    }
    return (await this.#aliveSet(ids)).size;
  }

  /** Stops the heartbeat and removes everything this process wrote. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#beat);
    clearInterval(this.#reaper);
    const keys: Deno.KvKey[] = [];
    for await (const own of this.#kv.list({ prefix: [PREFIX, "own", this.processId] })) {
      keys.push(own.key, own.key.slice(3));
    }
    keys.push([PREFIX, "procs", this.processId], [PREFIX, "proc", this.processId]);
    await this.#deleteAll(keys);
  }

  /** Adds an entry of this process and its ownership record to `op`. */
  #own(op: Deno.AtomicOperation, key: Deno.KvKey): void {
    op.set(key, { process: this.processId } satisfies Owned);
    op.set([PREFIX, "own", this.processId, ...key], true);
  }

  async #remove(
    versionKey: Deno.KvKey,
    prefix: Deno.KvKey,
    entryKey: Deno.KvKey,
  ): Promise<{ last: boolean }> {
    return await this.#retry(async () => {
      const [version, current] = await this.#kv.getMany<[number, Owned]>([versionKey, entryKey]);
      // never recorded, or already removed: nothing changes, and nobody "left"
      if (current.value === null) return { last: false };
      const { live } = await this.#entries(prefix);
      const others = live.filter((key) => key[key.length - 1] !== entryKey[entryKey.length - 1]);
      const op = this.#kv.atomic().check(version).check(current)
        .delete(entryKey).delete([PREFIX, "own", this.processId, ...entryKey]);
      // the last entry takes its version key along: nothing stays behind per person
      if (others.length === 0) op.delete(versionKey);
      else op.set(versionKey, (version.value ?? 0) + 1);
      const commit = await op.commit();
      return commit.ok ? { last: others.length === 0 } : null;
    });
  }

  /** Entries under `prefix`, split by whether their process is alive. */
  async #entries(prefix: Deno.KvKey): Promise<{ live: Deno.KvKey[]; dead: Deno.KvKey[] }> {
    const found: Deno.KvEntry<Owned>[] = [];
    for await (const entry of this.#kv.list<Owned>({ prefix })) found.push(entry);
    const alive = await this.#aliveSet(found.map((entry) => entry.value.process));
    const live: Deno.KvKey[] = [];
    const dead: Deno.KvKey[] = [];
    for (const entry of found) (alive.has(entry.value.process) ? live : dead).push(entry.key);
    return { live, dead };
  }

  /** Which of these processes are alive (answers are cached for a second). */
  async #aliveSet(processIds: readonly string[]): Promise<Set<string>> {
    const now = this.#now();
    const alive = new Set<string>();
    const unknown: string[] = [];
    for (const id of new Set(processIds)) {
      if (id === this.processId) {
        alive.add(id);
        continue;
      }
      const cached = this.#alive.get(id);
      if (cached !== undefined && now - cached.at < 1000) {
        if (cached.alive) alive.add(id);
      } else {
        unknown.push(id);
      }
    }
    for (let i = 0; i < unknown.length; i += 10) {
      const batch = unknown.slice(i, i + 10);
      const beats = await this.#kv.getMany<{ beatAt: number }[]>(
        batch.map((id) => [PREFIX, "proc", id]),
      );
      beats.forEach((beat, j) => {
        const isAlive = beat.value !== null && now - beat.value.beatAt < this.#beatMs * 4;
        this.#alive.set(batch[j], { alive: isAlive, at: now });
        if (isAlive) alive.add(batch[j]);
      });
    }
    if (this.#alive.size > 1000) this.#alive.clear();
    return alive;
  }

  async #deleteAll(keys: Deno.KvKey[]): Promise<void> {
    for (let i = 0; i < keys.length; i += BATCH) {
      const batch = keys.slice(i, i + BATCH);
      await this.#retry(async () => {
        const op = this.#kv.atomic();
        for (const key of batch) op.delete(key);
        return (await tryCommit(op)) ? true : null;
      });
    }
  }

  #retry<T>(attempt: () => Promise<T | null>): Promise<T> {
    return retryCommit(attempt, { what: "membership" });
  }
}

/** The distinct people named at position `at` of entry keys. */
function distinctPeople(keys: readonly Deno.KvKey[], at: number): PersonRef[] {
  const seen = new Set<string>();
  const people: PersonRef[] = [];
  for (const key of keys) {
    const who = key[at] as string;
    if (seen.has(who)) continue;
    seen.add(who);
    const ref = parsePersonKey(who);
    if (ref !== null) people.push(ref);
  }
  return people;
}
