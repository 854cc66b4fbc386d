/**
 * The fixture format of `SEED_FILE`: a small Servana database, one array per
 * table, each row with Servana's column names, loaded into the store at start
 * (idempotent: rows are inserted or updated by their key).
 *
 * ```json
 * { "department": [{ "dept_id": 1, "dept_name": "Support" }],
 *   "role": [{ "role_id": 2, "role_name": "Agent" }],
 *   "profile": [{ "prof_id": 2, "prof_firstname": "John", "prof_lastname": "Doe" }],
 *   "sys_user": [{ "sys_user_id": 123, "sys_user_email": "john@example.com",
 *                  "supabase_user_id": "6f1c…", "role_id": 2, "prof_id": 2 }],
 *   "sys_user_department": [{ "sys_user_id": 123, "dept_id": 1 }],
 *   "client": [{ "client_id": 789, "client_country_code": "+63", "client_number": "9171234567",
 *                "prof_id": 4, "client_is_active": true }],
 *   "chat_group": [{ "chat_group_id": 456, "client_id": 789, "dept_id": 1,
 *                    "sys_user_id": 123, "status": "active" }] }
 * ```
 *
 * Every table is optional; so are the nullable columns. `sys_user_is_active`
 * and `dept_is_active` default to true (as their columns do), `client_is_active`
 * to true. Unknown tables and columns are refused (a typo would otherwise load
 * nothing silently), and so are references to rows the fixture does not hold
 * (checked by the stores against what they already hold).
 *
 * @module
 */

import { z } from "zod";
import type { ChatStore, Fixture } from "./mod.ts";

const id = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const ref = id.nullable().optional();
const uuid = z.uuid({ message: "a uuid" });
const flag = z.boolean().nullable().optional();
const timestamp = z.iso.datetime({ offset: true, local: true, message: "an ISO 8601 time" })
  .nullable().optional();

const schemas = {
  department: z.strictObject({
    dept_id: id,
    dept_name: z.string().min(1),
    dept_is_active: flag,
  }),
  role: z.strictObject({ role_id: id, role_name: z.string().min(1) }),
  profile: z.strictObject({
    prof_id: id,
    prof_firstname: z.string().nullable().optional(),
    prof_lastname: z.string().nullable().optional(),
  }),
  image: z.strictObject({
    img_id: id,
    prof_id: id,
    img_location: z.string().min(1),
    img_is_current: flag,
  }),
  sys_user: z.strictObject({
    sys_user_id: id,
    sys_user_email: z.string().min(1),
    supabase_user_id: uuid.nullable().optional(),
    role_id: ref,
    prof_id: ref,
    sys_user_is_active: flag,
  }),
  sys_user_department: z.strictObject({ sys_user_id: id, dept_id: id }),
  client: z.strictObject({
    client_id: id,
    client_country_code: z.string().min(1),
    client_number: z.string().min(1),
    prof_id: ref,
    client_is_active: flag,
  }),
  chat_group: z.strictObject({
    chat_group_id: id,
    client_id: id,
    dept_id: ref,
    sys_user_id: ref,
    status: z.string().min(1).nullable().optional(),
    created_at: timestamp,
  }),
};

/** The zod schema of a fixture. */
export const fixtureSchema = z.strictObject({
  department: z.array(schemas.department).optional(),
  role: z.array(schemas.role).optional(),
  profile: z.array(schemas.profile).optional(),
  image: z.array(schemas.image).optional(),
  sys_user: z.array(schemas.sys_user).optional(),
  sys_user_department: z.array(schemas.sys_user_department).optional(),
  client: z.array(schemas.client).optional(),
  chat_group: z.array(schemas.chat_group).optional(),
});

/** A fixture that does not follow the format; `message` names the bad field. */
export class FixtureError extends Error {
  /** Each problem as `path: message`, e.g. `sys_user[0].supabase_user_id: …`. */
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
 * Validates a parsed JSON value as a {@linkcode Fixture}. Throws
 * {@linkcode FixtureError} naming every bad field and every duplicate key.
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
  const fixture = result.data as Fixture;
  const problems = [
    ...duplicates(fixture.department ?? [], (row) => row.dept_id, "department"),
    ...duplicates(fixture.role ?? [], (row) => row.role_id, "role"),
    ...duplicates(fixture.profile ?? [], (row) => row.prof_id, "profile"),
    ...duplicates(fixture.image ?? [], (row) => row.img_id, "image"),
    ...duplicates(fixture.sys_user ?? [], (row) => row.sys_user_id, "sys_user"),
    ...duplicates(
      fixture.sys_user_department ?? [],
      (row) => `${row.sys_user_id}/${row.dept_id}`,
      "sys_user_department",
    ),
    ...duplicates(fixture.client ?? [], (row) => row.client_id, "client"),
    ...duplicates(fixture.chat_group ?? [], (row) => row.chat_group_id, "chat_group"),
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
