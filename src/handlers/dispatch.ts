/**
 * The pipeline runner: one socket middleware per socket that looks every
 * incoming event up in a table of {@linkcode Binding}s, parses its payload
 * with the binding's zod schema (the first gate), runs the binding's
 * operation, and replies: success acks `{ ok: true, ...result }`; a failure
 * emits `error` (or the binding's failure event) and acks
 * `{ ok: false, code, message, details? }`. Unknown events are answered with
 * INVALID_DATA. Nothing thrown escapes, and no per-event listener is added to
 * the socket.
 *
 * @module
 */

import type { z } from "zod";
import { ServanaError } from "../errors.ts";
import { log } from "../log.ts";
import {
  type AckReply,
  type AppSocket,
  type EventContext,
  parsePayload,
  personOf,
  replyError,
} from "./context.ts";

/** What an operation may return: extra ack fields, or nothing. */
export type OperationResult = Record<string, unknown> | void;

/** One event of a vocabulary: its payload schema and the operation it maps onto. */
export interface Binding<I = unknown> {
  /** Parses the payload into the operation's input (the contract's or the apps' shape). */
  schema: z.ZodType<I>;
  /** The operation (`event` names the event, for logs): throws a `ServanaError` to refuse. */
  run: (input: I, ctx: EventContext, event: string) => Promise<OperationResult> | OperationResult;
  /** What the sender gets besides the ack on success (the apps' `chat:left`, `presence:all`, …). */
  reply?: (ctx: EventContext, input: I, result: OperationResult) => void;
  /** The failure event for this payload (default `error`): the apps' `sendMessage` uses `messageError`. */
  failureEvent?: (payload: unknown) => string;
}

/** Declares a binding (keeps the input type between schema and operation). */
export function bind<I>(binding: Binding<I>): Binding {
  return binding as unknown as Binding;
}

/** The socket middleware dispatching every event of `table` for one socket. */
export function dispatcher(
  ctx: EventContext,
  table: ReadonlyMap<string, Binding>,
): (packet: unknown[], next: (err?: Error) => void) => void {
  const { socket, services } = ctx;
  return (packet) => {
    const event = packet[0];
    const last = packet.at(-1);
    const ack = typeof last === "function" ? last as (reply: AckReply) => void : undefined;
    const binding = typeof event === "string" ? table.get(event) : undefined;
    if (binding === undefined) {
      unknownEvent(ctx, event, ack);
      return;
    }
    const payload = packet.length > (ack ? 2 : 1) ? packet[1] : undefined;
    void services.track(handle(event as string, binding, payload, ack));
  };

  async function handle(
    event: string,
    binding: Binding,
    payload: unknown,
    ack?: (reply: AckReply) => void,
  ): Promise<void> {
    const started = performance.now();
    services.metrics.messagesIn.inc({ event });
    try {
      const input = parsePayload(binding.schema, payload);
      const result = await binding.run(input, ctx, event);
      binding.reply?.(ctx, input, result);
      ack?.({ ok: true, ...(result ?? {}) });
    } catch (error) {
      const known = error instanceof ServanaError;
      services.metrics.errors.inc({ code: known ? error.code : "SERVER_ERROR" });
      if (!known || error.code === "SERVER_ERROR") {
        // a server-side failure: logged with its cause (a store error wrapped as SERVER_ERROR)
        const person = personOf(ctx);
        const cause = known && error.cause !== undefined ? error.cause : error;
        log("error", "handler failed", {
          event,
          kind: person.kind,
          userId: person.id,
          error: String(cause),
        });
      }
      replyError(socket, error, { ack, event: binding.failureEvent?.(payload) });
    } finally {
      services.metrics.eventLatency.observe({ event }, (performance.now() - started) / 1000);
    }
  }
}

function unknownEvent(
  ctx: EventContext,
  event: unknown,
  ack?: (reply: AckReply) => void,
): void {
  ctx.services.metrics.errors.inc({ code: "INVALID_DATA" });
  const name = typeof event === "string" ? event.slice(0, 64) : String(typeof event);
  replyError(
    ctx.socket as AppSocket,
    new ServanaError("INVALID_DATA", `Unknown event: ${name}`, { details: { event: name } }),
    { ack },
  );
}
