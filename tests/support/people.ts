/**
 * Test helper: the people of demo/fixture.json by person key (`agent:123`,
 * `client:789`) and tokens for them signed with given secrets, for tests that
 * run the service as a separate process (no in-process dev tokens).
 *
 * @module
 */

import { mintCustomerToken, mintToken } from "../../src/auth/mod.ts";
import { parseFixture } from "../../src/store/fixture.ts";
import { parsePersonKey } from "../../src/store/mod.ts";

const fixture = parseFixture(
  JSON.parse(Deno.readTextFileSync(new URL("../../demo/fixture.json", import.meta.url))),
);

/** The secrets a test process verifies tokens with. */
export interface TestSecrets {
  /** `SUPABASE_JWT_SECRET`: agents. */
  agents: string;
  /** `JWT_ACCESS_SECRET`: customers. */
  customers: string;
}

/** Secrets for a test process: the customers' secret differs from the agents'. */
export function testSecrets(base: string): TestSecrets {
  return { agents: base, customers: `${base}-customers` };
}

/** The `supabase_user_id` of a fixture agent. */
export function authIdOf(agentId: number): string {
  const row = fixture.sys_user?.find((u) => u.sys_user_id === agentId);
  if (!row?.supabase_user_id) throw new Error(`no fixture agent ${agentId}`);
  return row.supabase_user_id;
}

/** The `client_number` of a fixture customer. */
export function numberOf(clientId: number): string {
  const row = fixture.client?.find((c) => c.client_id === clientId);
  if (!row) throw new Error(`no fixture customer ${clientId}`);
  return row.client_number;
}

/** A token for the fixture person `who`, signed with the matching secret. */
export async function tokenForPerson(
  who: string,
  secrets: TestSecrets,
  options: { expiresInSec?: number } = {},
): Promise<string> {
  const ref = parsePersonKey(who);
  if (ref === null) throw new Error(`not a person key: ${who}`);
  if (ref.kind === "agent") {
    return await mintToken({ authId: authIdOf(ref.id) }, {
      secret: secrets.agents,
      expiresInSec: options.expiresInSec,
    });
  }
  return await mintCustomerToken({ clientId: ref.id, clientNumber: numberOf(ref.id) }, {
    secret: secrets.customers,
    expiresInSec: options.expiresInSec,
  });
}

/**
 * Fixture rows that transfer the demo conversation 456 (customer 789) to
 * department 2 and agent 124, as Servana's REST side would: agent 123 of
 * department 1 loses it. Load with `store.loadFixture`.
 */
export const TRANSFER_456_TO_124 = {
  chat_group: [{
    chat_group_id: 456,
    client_id: 789,
    dept_id: 2,
    sys_user_id: 124,
    status: "active",
  }],
};
