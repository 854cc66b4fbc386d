/**
 * An Engine.IO v4 server on Deno's own HTTP and WebSocket APIs
 * (`Deno.serve`, `Deno.upgradeWebSocket`), for socket.io's `Server#bind`.
 *
 * ```ts
 * import { Server } from "socket.io";
 * import { Engine } from "./src/engine/mod.ts";
 *
 * const engine = new Engine({ pingInterval: 25_000 });
 * const io = new Server();
 * io.bind(engine as never);
 * Deno.serve(engine.handler());
 * ```
 *
 * Refused requests are answered as the reference Node server answers them
 * (400 with `{"code":N,"message":"…"}`, 403 for `allowRequest` refusals) and
 * reported as a `connection_error` event `{ req, code, message, context }`.
 *
 * @module
 */

import { EventEmitter } from "node:events";
import { log } from "../log.ts";
import {
  clientAddress,
  parseTrustedProxies,
  type ProxyHeader,
  type TrustedProxies,
} from "./client_address.ts";
import { applyCors, type CorsOptions, preflight } from "./cors.ts";
import { PendingSessions } from "./pending.ts";
import { PollingTransport } from "./polling.ts";
import { EngineSocket } from "./socket.ts";
import { type EngineRequest, toEngineRequest, type Transport } from "./transport.ts";
import { WebSocketTransport } from "./websocket.ts";

export type { CorsOptions } from "./cors.ts";
export type { ProxyHeader } from "./client_address.ts";
export { EngineSocket } from "./socket.ts";
export type { EngineRequest } from "./transport.ts";

/** Transport names. */
export type TransportName = "polling" | "websocket";

/** Engine.IO error codes, as the reference server numbers them. */
export const ERRORS = {
  UNKNOWN_TRANSPORT: 0,
  UNKNOWN_SID: 1,
  BAD_HANDSHAKE_METHOD: 2,
  BAD_REQUEST: 3,
  FORBIDDEN: 4,
  UNSUPPORTED_PROTOCOL_VERSION: 5,
} as const;

/** Messages of {@linkcode ERRORS}, as the reference server words them. */
export const ERROR_MESSAGES: Readonly<Record<number, string>> = {
  0: "Transport unknown",
  1: "Session ID unknown",
  2: "Bad handshake method",
  3: "Bad request",
  4: "Forbidden",
  5: "Unsupported protocol version",
};

/** Refusal returned by {@linkcode EngineOptions.allowRequest}. */
export interface Refusal {
  /** Message sent to the client (default "Forbidden"). */
  message?: string;
}

/**
 * Decides whether a handshake may proceed: `true` (or nothing) lets it in,
 * `false` or a {@linkcode Refusal} refuses it with 403 and code 4.
 */
export type AllowRequest = (
  req: EngineRequest,
  raw: Request,
) => boolean | Refusal | void | Promise<boolean | Refusal | void>;

/** Options of {@linkcode Engine}. */
export interface EngineOptions {
  /** Path the engine serves (default `/socket.io/`). */
  path?: string;
  /** How often the server pings, ms (default 25000). */
  pingInterval?: number;
  /** How long to wait for a pong, ms (default 20000). */
  pingTimeout?: number;
  /** How long an upgrade may take, ms (default 10000). */
  upgradeTimeout?: number;
  /** Largest message or POST body, bytes (default 1e6). */
  maxHttpBufferSize?: number;
  /** CORS for long-polling; off when unset. */
  cors?: CorsOptions;
  /** Hook that may refuse a handshake. */
  allowRequest?: AllowRequest;
  /** Allowed transports (default both). */
  transports?: TransportName[];
  /** Whether polling sessions may upgrade to WebSocket (default true). */
  allowUpgrades?: boolean;
  /**
   * Reverse proxies whose forwarding header is believed: IPv4/IPv6 addresses
   * or CIDR networks. A session's `remoteAddress` (socket.io's
   * `handshake.address`) is then the client's address from that header when
   * the TCP peer is one of them (see `client_address.ts`). Default: none,
   * the address is the TCP peer's.
   */
  trustedProxies?: readonly string[];
  /** The header the trusted proxies write (default `x-forwarded-for`). */
  proxyHeader?: ProxyHeader;
  /**
   * How long a closing long-polling session waits for the client's next poll
   * to hand it the last packets and the close packet, ms (default 5000); the
   * session is freed then in any case.
   */
  closeTimeout?: number;
  /**
   * Most bytes waiting to reach one client (the session's write buffer plus
   * what its WebSocket has not written yet); a client that stops reading
   * past it is disconnected (default 4 MiB).
   */
  maxBufferedBytes?: number;
  /**
   * Ms after its handshake at which a session the application has not marked
   * authenticated ({@linkcode EngineSocket.markAuthenticated}) is closed;
   * 0 = never (default 0: off).
   */
  pendingTimeout?: number;
  /** Most pending (not yet authenticated) sessions per client address (default: no cap). */
  maxPendingPerAddress?: number;
  /** Most pending (not yet authenticated) sessions in total (default: no cap). */
  maxPending?: number;
}

/** A refused request, as emitted with `connection_error`. */
export interface ConnectionError {
  req: EngineRequest;
  code: number;
  message: string;
  context: Record<string, unknown>;
}

/** Info Deno passes to a serve handler (only the remote address is read). */
export interface ServeInfo {
  remoteAddr: { hostname?: string } | Deno.Addr;
}

/** Request handler as `Deno.serve` takes it. */
export type EngineHandler = (
  req: Request,
  info: Deno.ServeHandlerInfo,
) => Response | Promise<Response>;

interface ResolvedOptions {
  path: string;
  pingInterval: number;
  pingTimeout: number;
  upgradeTimeout: number;
  maxHttpBufferSize: number;
  cors?: CorsOptions;
  allowRequest?: AllowRequest;
  transports: TransportName[];
  allowUpgrades: boolean;
  proxyHeader: ProxyHeader;
  closeTimeout: number;
  maxBufferedBytes: number;
  pendingTimeout: number;
  maxPendingPerAddress: number;
  maxPending: number;
}

/**
 * The Engine.IO server. Emits `connection` with an {@linkcode EngineSocket}
 * for each new session and `connection_error` for each refused request.
 */
export class Engine extends EventEmitter {
  /** Open sessions by id. */
  readonly clients: Map<string, EngineSocket> = new Map();
  /** Resolved options (socket.io reads `opts`). */
  readonly opts: Readonly<ResolvedOptions>;
  readonly #trusted: TrustedProxies;
  readonly #pending: PendingSessions | null;

  constructor(options: EngineOptions = {}) {
    super();
    const path = options.path ?? "/socket.io/";
    this.opts = {
      path: path.endsWith("/") ? path : path + "/",
      pingInterval: options.pingInterval ?? 25_000,
      pingTimeout: options.pingTimeout ?? 20_000,
      upgradeTimeout: options.upgradeTimeout ?? 10_000,
      maxHttpBufferSize: options.maxHttpBufferSize ?? 1e6,
      cors: options.cors,
      allowRequest: options.allowRequest,
      transports: options.transports ?? ["polling", "websocket"],
      allowUpgrades: options.allowUpgrades ?? true,
      proxyHeader: options.proxyHeader ?? "x-forwarded-for",
      closeTimeout: options.closeTimeout ?? 5000,
      maxBufferedBytes: options.maxBufferedBytes ?? 4 * 1024 * 1024,
      pendingTimeout: options.pendingTimeout ?? 0,
      maxPendingPerAddress: options.maxPendingPerAddress ?? Infinity,
      maxPending: options.maxPending ?? Infinity,
    };
    this.#trusted = parseTrustedProxies(options.trustedProxies ?? []);
    const o = this.opts;
    this.#pending = o.pendingTimeout > 0 || o.maxPendingPerAddress !== Infinity ||
        o.maxPending !== Infinity
      ? new PendingSessions({
        timeoutMs: o.pendingTimeout,
        maxPerAddress: o.maxPendingPerAddress,
        maxTotal: o.maxPending,
      })
      : null;
  }

  /** Number of sessions not (yet) marked authenticated, when pending limits are on. */
  get pendingCount(): number {
    return this.#pending?.size ?? 0;
  }

  /** Number of open sessions. */
  get clientsCount(): number {
    return this.clients.size;
  }

  /** The path the engine serves, with a trailing slash. */
  get path(): string {
    return this.opts.path;
  }

  /** Whether a URL path belongs to the engine. */
  matches(pathname: string): boolean {
    return pathname.startsWith(this.opts.path) || pathname === this.opts.path.slice(0, -1);
  }

  /** The request handler for `Deno.serve`. Requests outside the path get 404. */
  handler(): EngineHandler {
    return (req, info) => {
      const pathname = new URL(req.url).pathname;
      if (!this.matches(pathname)) return new Response("Not Found", { status: 404 });
      return this.handleRequest(req, info);
    };
  }

  /** Serves one Engine.IO request (polling or WebSocket upgrade). */
  async handleRequest(req: Request, info: ServeInfo): Promise<Response> {
    const address = clientAddress(remoteAddress(info), req.headers, {
      trusted: this.#trusted,
      header: this.opts.proxyHeader,
    });
    const ereq = toEngineRequest(req, address);
    const isUpgrade = req.headers.get("upgrade")?.toLowerCase() === "websocket";
    const cors = this.opts.cors;
    if (cors && req.method === "OPTIONS" && !isUpgrade) return await preflight(req, cors);
    const headers = new Headers();
    if (cors && !isUpgrade) await applyCors(req, headers, cors);

    const refused = await this.#verify(ereq, req, isUpgrade);
    if (refused) return this.#refuse(ereq, refused, headers, isUpgrade);

    const sid = ereq._query.sid;
    if (sid) {
      const client = this.clients.get(sid)!;
      if (isUpgrade) return this.#upgrade(req, client);
      const transport = client.transport;
      if (!(transport instanceof PollingTransport)) {
        return this.#refuse(
          ereq,
          { code: ERRORS.BAD_REQUEST, context: { name: "TRANSPORT_MISMATCH" } },
          headers,
          false,
        );
      }
      return transport.onRequest(req, headers);
    }
    if (ereq._query.EIO !== "4") {
      return this.#refuse(
        ereq,
        {
          code: ERRORS.UNSUPPORTED_PROTOCOL_VERSION,
          context: { protocol: ereq._query.EIO === undefined ? 3 : Number(ereq._query.EIO) },
        },
        headers,
        isUpgrade,
      );
    }
    return this.#handshake(ereq, req, headers, isUpgrade);
  }

  async #verify(ereq: EngineRequest, req: Request, isUpgrade: boolean): Promise<Refused | null> {
    const transport = ereq._query.transport as TransportName;
    if (!this.opts.transports.includes(transport)) {
      return { code: ERRORS.UNKNOWN_TRANSPORT, context: { transport } };
    }
    const sid = ereq._query.sid;
    if (sid) {
      const client = this.clients.get(sid);
      if (!client || client.expireIfOverdue()) {
        return { code: ERRORS.UNKNOWN_SID, context: { sid } };
      }
      const previousTransport = client.transport.name;
      if (!isUpgrade && previousTransport !== transport) {
        return {
          code: ERRORS.BAD_REQUEST,
          context: { name: "TRANSPORT_MISMATCH", transport, previousTransport },
        };
      }
      if (ereq._query.EIO !== "4") {
        return {
          code: ERRORS.BAD_REQUEST,
          context: { name: "PROTOCOL_MISMATCH", protocol: ereq._query.EIO, previousProtocol: 4 },
        };
      }
      return null;
    }
    if (req.method !== "GET") {
      return { code: ERRORS.BAD_HANDSHAKE_METHOD, context: { method: req.method } };
    }
    if (transport === "websocket" && !isUpgrade) {
      return { code: ERRORS.BAD_REQUEST, context: { name: "TRANSPORT_HANDSHAKE_ERROR" } };
    }
    const refusal = this.#pending?.refusal(ereq.remoteAddress);
    if (refusal) {
      const pending = this.#pending!;
      return {
        code: ERRORS.FORBIDDEN,
        // the total cap is the server's state ("try later"), the per-address cap the client's
        status: refusal === "total" ? 503 : 403,
        message: "Too many pending sessions",
        context: {
          name: "PENDING_LIMIT",
          scope: refusal,
          address: ereq.remoteAddress,
          pending: refusal === "total" ? pending.size : pending.countFor(ereq.remoteAddress),
        },
      };
    }
    if (!this.opts.allowRequest) return null;
    let decision: boolean | Refusal | void;
    try {
      decision = await this.opts.allowRequest(ereq, req);
    } catch (error) {
      decision = { message: error instanceof Error ? error.message : String(error) };
    }
    if (decision === undefined || decision === true) return null;
    const message = typeof decision === "object" ? decision.message : undefined;
    return { code: ERRORS.FORBIDDEN, context: { message }, message };
  }

  #refuse(ereq: EngineRequest, refused: Refused, headers: Headers, isUpgrade: boolean): Response {
    const message = refused.message ?? ERROR_MESSAGES[refused.code];
    this.emit(
      "connection_error",
      {
        req: ereq,
        code: refused.code,
        message: ERROR_MESSAGES[refused.code],
        context: refused.context,
      } satisfies ConnectionError,
    );
    log("debug", "engine refused request", { code: refused.code, context: refused.context });
    const status = refused.status ?? (refused.code === ERRORS.FORBIDDEN ? 403 : 400);
    if (isUpgrade) {
      return new Response(message, {
        status: refused.status ?? 400,
        headers: { "Content-Type": "text/html", Connection: "close" },
      });
    }
    headers.set("Content-Type", "application/json");
    return new Response(JSON.stringify({ code: refused.code, message }), { status, headers });
  }

  #handshake(
    ereq: EngineRequest,
    req: Request,
    headers: Headers,
    isUpgrade: boolean,
  ): Response | Promise<Response> {
    const id = generateId();
    let transport: Transport;
    let response: Response | undefined;
    if (isUpgrade) {
      const upgraded = upgrade(req);
      if (!upgraded) {
        return this.#refuse(
          ereq,
          { code: ERRORS.BAD_REQUEST, context: { name: "TRANSPORT_HANDSHAKE_ERROR" } },
          headers,
          true,
        );
      }
      transport = new WebSocketTransport(upgraded.socket, this.opts);
      response = upgraded.response;
    } else {
      transport = new PollingTransport(this.opts);
    }
    const upgrades = this.opts.allowUpgrades && transport.name === "polling" &&
        this.opts.transports.includes("websocket")
      ? ["websocket"]
      : [];
    const socket = new EngineSocket(id, transport, ereq, {
      ...this.opts,
      upgrades,
      pending: this.#pending,
    });
    this.#pending?.add(socket);
    this.clients.set(id, socket);
    socket.once("close", () => this.clients.delete(id));
    log("debug", "engine session opened", { sid: id, transport: transport.name });
    const result = transport instanceof PollingTransport
      ? transport.onRequest(req, headers)
      : response!;
    this.emit("connection", socket);
    return result;
  }

  #upgrade(req: Request, client: EngineSocket): Response {
    const upgraded = upgrade(req);
    if (!upgraded) return new Response("Bad request", { status: 400 });
    if (client.upgrading || client.upgraded || !this.opts.allowUpgrades) {
      // the reference server accepts the WebSocket and closes it at once
      upgraded.socket.addEventListener("open", () => upgraded.socket.close(), { once: true });
      return upgraded.response;
    }
    client.maybeUpgrade(new WebSocketTransport(upgraded.socket, this.opts));
    return upgraded.response;
  }

  /** Closes every session. */
  close(): this {
    for (const client of [...this.clients.values()]) client.close(true);
    this.#pending?.clear();
    return this;
  }
}

interface Refused {
  code: number;
  context: Record<string, unknown>;
  message?: string;
  /** HTTP status when not the code's usual one. */
  status?: number;
}

function upgrade(req: Request): { socket: WebSocket; response: Response } | null {
  try {
    // idleTimeout 0: the engine runs its own heartbeat
    return Deno.upgradeWebSocket(req, { idleTimeout: 0 });
  } catch {
    return null;
  }
}

function remoteAddress(info: ServeInfo): string {
  const addr = info.remoteAddr as { hostname?: string; path?: string };
  return addr.hostname ?? addr.path ?? "";
}

/** A 20-character random session id (base64url of 15 random bytes). */
function generateId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(15));
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_");
}
