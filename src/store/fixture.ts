/**
 * The fixture format of `SEED_FILE`: departments, users and chat groups
 * loaded into the store at start (idempotent).
 *
 * ```json
 * { "departments": [{ "id": 1, "name": "Support" }],
 *   "users": [{ "id": 123, "authId": "agent-123", "role": "agent", "departments": [1],
 *               "firstName": "John", "lastName": "Doe" }],
 *   "chatGroups": [{ "id": 456, "clientId": 789, "departmentId": 1, "agentId": 123,
 *                    "status": "active" }] }
 * ```
 *
 * Every list is optional. In users, `departments` defaults to `[]` and the
 * names to `""`; in chat groups, `departmentId` and `agentId` default to
 * `null` and `status` to `"active"`. Unknown keys are refused (a typo would
 * otherwise load nothing silently).
 *
 * @module
 */

import { z } from "zod";
import type { ChatStore, Fixture } from "./mod.ts";

const id = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

const departmentSchema = z.strictObject({
  id,
  name: z.string().min(1),
});

const userSchema = z.strictObject({
  id,
  authId: z.string().min(1),
  role: z.enum(["client", "agent", "admin"]),
  departments: z.array(id).default([]),
  firstName: z.string().default(""),
  lastName: z.string().default(""),
});

const chatGroupSchema = z.strictObject({
  id,
  clientId: id,
  departmentId: id.nullable().default(null),
  agentId: id.nullable().default(null),
  status: z.enum(["active", "closed"]).default("active"),
});

/** The zod schema of a fixture. */
export const fixtureSchema = z.strictObject({
  departments: z.array(departmentSchema).default([]),
  users: z.array(userSchema).default([]),
  chatGroups: z.array(chatGroupSchema).default([]),
});

/** A fixture that does not follow the format; `message` names the bad field. */
export class FixtureError extends Error {
  /** Each problem as `path: message`, e.g. `users[0].role: …`. */
  readonly problems: string[];

  constructor(problems: string[], source?: string) {
    super(`Invalid fixture${source ? ` ${source}` : ""}: ${problems.join("; ")}`);
    this.name = "FixtureError";
    this.problems = problems;
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text === "" ? String(part) : `.${String(part)}`;
  }
  return text === "" ? "(root)" : text;
}

function duplicates<T>(items: readonly T[], key: (item: T) => unknown, what: string): string[] {
  const seen = new Map<unknown, number>();
  const problems: string[] = [];
  items.forEach((item, index) => {
    const value = key(item);
    const first = seen.get(value);
    if (first === undefined) seen.set(value, index);
    else problems.push(`${what}[${index}]: duplicate of ${what}[${first}] (${String(value)})`);
  });
  return problems;
}

/**
 * Validates a parsed JSON value as a {@linkcode Fixture} and fills in the
 * defaults. Throws {@linkcode FixtureError} naming every bad field.
 */
export function parseFixture(json: unknown): Fixture {
  const result = fixtureSchema.safeParse(json);
  if (!result.success) {
    const problems: string[] = [];
    for (const issue of result.error.issues) {
      if (issue.code === "unrecognized_keys") {
        for (const key of issue.keys) {
          problems.push(`${formatPath([...issue.path, key])}: unknown key`);
        }
      } else {
        problems.push(`${formatPath(issue.path)}: ${issue.message}`);
      }
    }
    throw new FixtureError(problems);
  }
  const fixture = result.data;
  const problems = [
    ...duplicates(fixture.departments, (department) => department.id, "departments"),
    ...duplicates(fixture.users, (user) => user.id, "users"),
    ...duplicates(fixture.users, (user) => user.authId, "users"),
    ...duplicates(fixture.chatGroups, (group) => group.id, "chatGroups"),
  ];
  if (problems.length > 0) throw new FixtureError(problems);
  return fixture;
}

/** Reads a fixture file (`SEED_FILE`), validates it and loads it into the store. */
export async function loadFixtureFile(store: ChatStore, path: string | URL): Promise<Fixture> {
  const text = await Deno.readTextFile(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FixtureError([`not valid JSON (${(error as Error).message})`], String(path));
  }
  let fixture: Fixture;
  try {
    fixture = parseFixture(json);
  } catch (error) {
    if (error instanceof FixtureError) throw new FixtureError(error.problems, String(path));
    throw error;
  }
  await store.loadFixture(fixture);
  return fixture;
}
