/**
 * Agents' availability, as Servana's web app and REST side use it:
 * `presence:update`, `presence:heartbeat` (→ `presence:heartbeat:ack`),
 * `presence:getAll` (→ `presence:all`), `presence:getAvailableByDepartment`
 * (→ `presence:availableByDepartment`), and the availability side of an
 * agent's connection and disconnection: an agent's first connection makes
 * them `accepting_chats` and drains the queue; their last one takes them
 * offline. Every change is broadcast as `presence:change`.
 *
 * @module
 */

import type { Server } from "socket.io";
import type { AvailabilityRecord, AvailabilityStatus } from "../availability.ts";
import { ServanaError } from "../errors.ts";
import { log } from "../log.ts";
import type { Agent, Person } from "../store/mod.ts";
import {
  enforceRateLimit,
  type EventContext,
  personOf,
  securityEvent,
  type Services,
} from "./context.ts";

/** Input of {@linkcode updateAvailability}. */
export interface AvailabilityInput {
  status: AvailabilityStatus;
}

function requireAgent(ctx: EventContext, event: string): Agent {
  const person = personOf(ctx);
  if (person.kind === "agent") return person;
  securityEvent(ctx, "access_denied", { socketEvent: event, reason: "agents_only" });
  throw new ServanaError("ACCESS_DENIED", "Access denied: agents only");
}

/** Broadcasts `presence:change { userId, userType, status, firstName, lastName, deptIds, timestamp }`. */
export function announceAvailability(
  io: Server,
  agent: Pick<Person, "id" | "firstName" | "lastName">,
  options: { status: AvailabilityStatus; deptIds: number[]; reason?: string },
): void {
  io.emit("presence:change", {
    userId: agent.id,
    userType: "agent",
    status: options.status,
    firstName: agent.firstName,
    lastName: agent.lastName,
    deptIds: options.deptIds,
    timestamp: new Date().toISOString(),
    ...(options.reason ? { reason: options.reason } : {}),
  });
}

/** Drains the queue for an agent in the background (tracked for shutdown). */
function drainLater(services: Services, agent: Agent): void {
  services.track(services.queue.drainFor(agent)).catch((error) => {
    log("warn", "queue drain failed", { agentId: agent.id, error: String(error) });
  });
}

/** `presence:update { status }`: agents only; `accepting_chats` drains the queue. */
export async function updateAvailability(
  input: AvailabilityInput,
  ctx: EventContext,
  event: string,
) {
  const agent = requireAgent(ctx, event);
  await enforceRateLimit(ctx, "status", event);
  const { services, socket } = ctx;
  const record = await services.availability.set(agent, input.status, socket.id);
  announceAvailability(services.io, agent, { status: input.status, deptIds: record.deptIds });
  if (input.status === "accepting_chats") drainLater(services, agent);
  return { status: input.status };
}

/** `presence:heartbeat`: refreshes an agent's availability (and the backend's Redis key). */
export async function availabilityHeartbeat(_input: unknown, ctx: EventContext, event: string) {
  const person = personOf(ctx);
  await enforceRateLimit(ctx, "status", event);
  if (person.kind === "agent") await ctx.services.availability.heartbeat(person);
  return { timestamp: new Date().toISOString() };
}

/** `presence:getAll`: connected agents accepting chats, keyed by `sys_user_id` (the backend's shape). */
export async function allAvailability(_input: unknown, ctx: EventContext, event: string) {
  requireAgent(ctx, event);
  await enforceRateLimit(ctx, "read", event);
  const all: Record<string, AvailabilityRecord> = {};
  for (const record of await ctx.services.availability.list()) {
    if (record.userPresence === "accepting_chats") all[String(record.userId)] = record;
  }
  return { presences: all };
}

/**
 * `presence:getAvailableByDepartment` (the web app's transfer dialog):
 * active departments with how many agents accept chats in each, and those
 * agents (active, role `Agent`).
 */
export async function availableByDepartment(_input: unknown, ctx: EventContext, event: string) {
  requireAgent(ctx, event);
  await enforceRateLimit(ctx, "read", event);
  const { store, availability } = ctx.services;
  const [departments, agents, records] = await Promise.all([
    store.listDepartments(),
    store.listAgents(),
    availability.list(),
  ]);
  const accepting = new Set(
    records.filter((r) => r.userPresence === "accepting_chats").map((r) => r.userId),
  );
  const available = agents
    .filter((agent) => agent.roleName === "Agent" && accepting.has(agent.id))
    .map((agent) => ({
      userId: agent.id,
      firstName: agent.firstName,
      lastName: agent.lastName,
      email: agent.email,
      deptIds: agent.departments,
      isAvailable: true,
    }));
  return {
    departments: departments.filter((d) => d.active).map((d) => ({
      dept_id: d.id,
      dept_name: d.name,
      availableCount: available.filter((a) => a.deptIds.includes(d.id)).length,
    })),
    availableAgents: available,
  };
}

/**
 * An agent's socket connected: keeps the status other tabs set, or (first
 * connection) starts `accepting_chats`, announces it and drains the queue.
 */
export async function availabilityOnConnect(ctx: EventContext): Promise<void> {
  const person = personOf(ctx);
  if (person.kind !== "agent") return;
  const { services, socket } = ctx;
  const { record, changed } = await services.availability.connected(person, socket.id);
  if (!socket.connected) {
    // closed meanwhile: its disconnect may have run before this entry was written
    if (await services.members.connectionCount(person) === 0) {
      await services.availability.disconnected(person.id);
    }
    return;
  }
  if (!changed) return;
  announceAvailability(services.io, person, {
    status: record.userPresence,
    deptIds: record.deptIds,
  });
  drainLater(services, person);
}

/** A person's last connection ended (here or with a dead process): an agent goes offline. */
export async function availabilityOnLastDisconnect(
  services: Services,
  person: Pick<Person, "kind" | "id" | "firstName" | "lastName">,
): Promise<void> {
  if (person.kind !== "agent") return;
  await services.availability.disconnected(person.id);
  announceAvailability(services.io, person, {
    status: "offline",
    deptIds: [],
    reason: "disconnect",
  });
}

/**
 * Keeps connected agents' entries (and the backend's 900 s Redis keys)
 * fresh: every `everyMs`, each agent with a socket on this process is
 * touched. Returns a stop function.
 */
export function startAvailabilityRefresh(
  services: Services,
  options: { everyMs: number },
): () => void {
  const timer = setInterval(async () => {
    const seen = new Set<number>();
    for (const socket of services.io.of("/").sockets.values()) {
      const person = (socket.data as { person?: Person }).person;
      if (person?.kind !== "agent" || seen.has(person.id)) continue;
      seen.add(person.id);
      try {
        await services.availability.heartbeat(person);
      } catch (error) {
        log("warn", "availability refresh failed", { agentId: person.id, error: String(error) });
      }
    }
  }, options.everyMs);
  return () => clearInterval(timer);
}
