/**
 * Test helper: a loopback TCP forwarder that a test can cut abruptly.
 *
 * Each accepted connection is piped to the target. {@linkcode ChaosProxy.cut}
 * resets every open connection on both sides with a real TCP RST (no
 * WebSocket close frame, no FIN): Deno's own `Deno.Conn` has no SO_LINGER,
 * so the proxy is built on `node:net`, whose `socket.resetAndDestroy()`
 * (libuv `uv_tcp_close_reset`, i.e. SO_LINGER 0 + close) is implemented by
 * Deno; the peers see `ECONNRESET`. During a hold after a cut, new
 * connections are reset as soon as they are accepted, so the client stays
 * away for as long as the test wants (longer than the recovery window, say).
 *
 * @module
 */

import net from "node:net";

/** Options of {@linkcode ChaosProxy.cut}. */
export interface CutOptions {
  /** Keep resetting new connections for this long, ms (default 0). */
  holdMs?: number;
}

/** A TCP forwarder on 127.0.0.1 with an abrupt cut. */
export class ChaosProxy {
  /** The port the proxy listens on. */
  readonly port: number;
  /** Connections reset so far (either side counts once per pair). */
  resets = 0;
  /** Connections accepted so far. */
  accepted = 0;
  readonly #server: net.Server;
  readonly #pairs = new Set<[net.Socket, net.Socket]>();
  #holdUntil = 0;

  private constructor(server: net.Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  /** Starts a proxy forwarding to `127.0.0.1:targetPort`. */
  static async start(targetPort: number): Promise<ChaosProxy> {
    const { promise, resolve } = Promise.withResolvers<ChaosProxy>();
    let proxy: ChaosProxy | null = null;
    const server = net.createServer((downstream) => proxy!.#accept(downstream, targetPort));
    server.listen(0, "127.0.0.1", () => {
      proxy = new ChaosProxy(server, (server.address() as net.AddressInfo).port);
      resolve(proxy);
    });
    return await promise;
  }

  /** `http://127.0.0.1:PORT` */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Open connection pairs. */
  get open(): number {
    return this.#pairs.size;
  }

  #accept(downstream: net.Socket, targetPort: number): void {
    this.accepted++;
    downstream.on("error", () => {});
    if (Date.now() < this.#holdUntil) {
      this.resets++;
      downstream.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    upstream.on("error", () => {});
    const pair: [net.Socket, net.Socket] = [downstream, upstream];
    this.#pairs.add(pair);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    const forget = () => {
      if (!this.#pairs.delete(pair)) return;
      // one side ended normally: end the other one too
      downstream.destroy();
      upstream.destroy();
    };
    downstream.once("close", forget);
    upstream.once("close", forget);
  }

  /**
   * Resets every open connection on both sides (TCP RST, no close frame)
   * and, with `holdMs`, every new one during that time.
   */
  cut(options: CutOptions = {}): number {
    this.#holdUntil = Date.now() + (options.holdMs ?? 0);
    const pairs = [...this.#pairs];
    this.#pairs.clear();
    for (const [downstream, upstream] of pairs) {
      downstream.unpipe(upstream);
      upstream.unpipe(downstream);
      downstream.resetAndDestroy();
      upstream.resetAndDestroy();
      this.resets++;
    }
    return pairs.length;
  }

  /** Resets every connection and stops listening. */
  async close(): Promise<void> {
    this.cut();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#server.close(() => resolve());
    await promise;
  }
}
