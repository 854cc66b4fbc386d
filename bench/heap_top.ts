/**
 * What one idle connection keeps on a benchmark server's V8 heap, by
 * constructor: starts `bench/deno_server.ts` (or `raw_server.ts`) with
 * `--inspect`, takes a heap snapshot (after a full GC) before and after
 * opening N idle connections, and prints the heap growth per connection
 * split by the snapshot's node name (constructor, `(closure)`, `(array)`,
 * strings…) with the count per connection.
 *
 * ```sh
 * deno run -A bench/heap_top.ts [deno|raw] [connections=1000] [top=30]
 * ```
 *
 * The clients speak Engine.IO/Socket.IO over a Deno WebSocket by hand (open,
 * `40`, pong), so the snapshot shows the server's share only.
 *
 * @module
 */

const root = new URL("../", import.meta.url).pathname;

interface Snapshot {
  snapshot: {
    meta: { node_fields: string[]; node_types: (string | string[])[] };
  };
  nodes: number[];
  strings: string[];
}

/** Self size and count by `type:name` of every node of a snapshot. */
export function tally(
  snapshot: Snapshot,
): Map<string, { size: number; count: number }> {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]];
    let name = snapshot.strings[snapshot.nodes[i + nameAt]];
    if (
      type === "string" || type === "concatenated string" ||
      type === "sliced string"
    ) {
      name = "(string)";
    } else if (type === "number") name = "(number)";
    else if (type === "closure") name = `(closure) ${name}`;
    else if (type === "code") name = "(code)";
    const key = `${type}:${name.slice(0, 80)}`;
    const entry = out.get(key) ?? { size: 0, count: 0 };
    entry.size += snapshot.nodes[i + sizeAt];
    entry.count++;
    out.set(key, entry);
  }
  return out;
}

class Inspector {
  readonly #ws: WebSocket;
  #next = 1;
  readonly #waiting = new Map<number, (result: unknown) => void>();
  #chunks: string[] = [];

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data as string);
      if (message.method === "HeapProfiler.addHeapSnapshotChunk") {
        this.#chunks.push(message.params.chunk);
      } else if (message.id) this.#waiting.get(message.id)?.(message.result);
    };
  }

  static async open(port: number): Promise<Inspector> {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`))
      .json() as {
        webSocketDebuggerUrl: string;
      }[];
    const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    return new Inspector(ws);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async snapshot(): Promise<Snapshot> {
    await this.call("HeapProfiler.collectGarbage");
    this.#chunks = [];
    await this.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    return JSON.parse(this.#chunks.join(""));
  }

  close(): void {
    this.#ws.close();
  }
}

function openIdle(port: number, raw: boolean): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const url = raw
      ? `ws://127.0.0.1:${port}/`
      : `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`;
    const ws = new WebSocket(url);
    ws.onerror = () => reject(new Error("websocket error"));
    if (raw) {
      ws.onopen = () => resolve(ws);
      return;
    }
    ws.onmessage = (event) => {
      const data = event.data as string;
      if (data === "2") ws.send("3");
      else if (data.startsWith("0")) ws.send("40");
      else if (data.startsWith("40")) resolve(ws);
    };
  });
}

async function main(): Promise<void> {
  const which = Deno.args[0] === "raw" ? "raw" : "deno";
  const connections = Number(Deno.args[1] ?? 1000);
  const top = Number(Deno.args[2] ?? 30);
  const inspectPort = 9229 + Math.floor(Math.random() * 500);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      `--inspect=127.0.0.1:${inspectPort}`,
      `bench/${which === "raw" ? "raw" : "deno"}_server.ts`,
    ],
    cwd: root,
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/PORT \d+/.test(out)) out += (await reader.read()).value ?? "";
  const port = Number(out.match(/PORT (\d+)/)![1]);
  const inspector = await Inspector.open(inspectPort);
  const sockets: WebSocket[] = [];
  try {
    // warm up the code paths of a connection, then drop them
    for (let i = 0; i < 50; i++) {
      sockets.push(await openIdle(port, which === "raw"));
    }
    for (const ws of sockets.splice(0)) ws.close();
    await new Promise((r) => setTimeout(r, 500));
    const before = tally(await inspector.snapshot());
    for (let i = 0; i < connections; i += 50) {
      const batch = [];
      for (let j = i; j < Math.min(connections, i + 50); j++) {
        batch.push(openIdle(port, which === "raw"));
      }
      sockets.push(...await Promise.all(batch));
    }
    await new Promise((r) => setTimeout(r, 500));
    const after = tally(await inspector.snapshot());
    const rows: { key: string; size: number; count: number }[] = [];
    let total = 0;
    for (const [key, a] of after) {
      const b = before.get(key) ?? { size: 0, count: 0 };
      const size = (a.size - b.size) / connections;
      total += size;
      rows.push({ key, size, count: (a.count - b.count) / connections });
    }
    rows.sort((x, y) => y.size - x.size);
    console.log(
      `${which}: ${connections} idle connections, heap growth per connection`,
    );
    console.log(`${total.toFixed(0).padStart(8)} B  total`);
    for (const row of rows.slice(0, top)) {
      console.log(
        `${row.size.toFixed(0).padStart(8)} B  ${row.count.toFixed(2).padStart(6)} ×  ${row.key}`,
      );
    }
  } finally {
    for (const ws of sockets) ws.close();
    inspector.close();
    child.kill("SIGTERM");
    await child.status;
    await reader.cancel().catch(() => {});
  }
}

if (import.meta.main) await main();
