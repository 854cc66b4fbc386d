/**
 * Room names and every access rule, in one place.
 *
 * Rooms are Servana's names, an interface: Servana's REST side emits into
 * them (through the Redis adapter).
 *
 * | room | who is in it |
 * | --- | --- |
 * | `chat_<chat_group_id>` | sockets that joined the conversation |
 * | `department_<dept_id>` | agents and admins of the department (on connection) |
 * | `agent_<sys_user_id>`, `user_<sys_user_id>` | every socket of an agent or admin |
 * | `client_<client_id>` | every socket of a customer |
 * | `admins`, `staff`, `clients` | role-scoped broadcasts (admins; agents+admins; customers) |
 *
 * The seed document's names are kept beside them, so that a server-side
 * emitter written against the seed reaches the same sockets: a conversation
 * is also the room `<chatGroupId>` and a department also `dept_<deptId>`. The
 * seed's `user_<userId>` is an agent's (customers and agents share numbers,
 * so a customer's room is `client_<client_id>`).
 *
 * @module
 */

import { type ChatGroup, type Person, type PersonRef, type Role, samePerson } from "./store/mod.ts";

/** Room of one conversation: `chat_<id>`. */
export function chatRoom(chatGroupId: number): string {
  return `chat_${chatGroupId}`;
}

/** Every name of a conversation's room: `chat_<id>` and the seed's `<id>`. */
export function chatRooms(chatGroupId: number): string[] {
  return [chatRoom(chatGroupId), String(chatGroupId)];
}

/** The conversation a room name belongs to (`chat_456` → 456), or null. */
export function chatGroupOfRoom(room: string): number | null {
  const match = /^chat_(\d{1,16})$/.exec(room);
  if (match === null) return null;
  const id = Number(match[1]);
  return Number.isSafeInteger(id) && id > 0 ? id : null;
}

/** Room of a department: `department_<id>`. */
export function departmentRoom(departmentId: number): string {
  return `department_${departmentId}`;
}

/** Every name of a department's room: `department_<id>` and the seed's `dept_<id>`. */
export function departmentRooms(departmentId: number): string[] {
  return [departmentRoom(departmentId), `dept_${departmentId}`];
}

/** Room of every socket of an agent or admin: `agent_<sys_user_id>`. */
export function agentRoom(agentId: number): string {
  return `agent_${agentId}`;
}

/** Room of every socket of a customer: `client_<client_id>`. */
export function customerRoom(clientId: number): string {
  return `client_${clientId}`;
}

/** The room holding every socket of a person. */
export function personRoom(person: PersonRef): string {
  return person.kind === "agent" ? agentRoom(person.id) : customerRoom(person.id);
}

/** Every admin socket. */
export const ADMINS_ROOM = "admins";
/** Every agent and admin socket (sees all presence). */
export const STAFF_ROOM = "staff";
/** Every customer socket (sees online agents only). */
export const CLIENTS_ROOM = "clients";

/** The rooms a socket joins on connection, by who it is. */
export function roomsOnConnect(person: Person): string[] {
  if (person.kind === "client") return [customerRoom(person.id), CLIENTS_ROOM];
  const rooms = [agentRoom(person.id), `user_${person.id}`, STAFF_ROOM];
  for (const dept of person.departments) rooms.push(...departmentRooms(dept));
  if (person.role === "admin") rooms.push(ADMINS_ROOM);
  return rooms;
}

/** Whether a room is one {@linkcode roomsOnConnect} hands out (a person's, a department's, a role's). */
export function isConnectionRoom(room: string): boolean {
  return /^(agent|user|client|department|dept)_\d+$/.test(room) || room === ADMINS_ROOM ||
    room === STAFF_ROOM || room === CLIENTS_ROOM;
}

/**
 * Whether a person may join (and so read and write) a conversation:
 * customers only their own; agents those assigned to them and those of their
 * departments; admins every one. Inactive people none.
 */
export function canAccessChatGroup(person: Person, group: ChatGroup): boolean {
  if (!person.active) return false;
  if (person.kind === "client") return group.clientId === person.id;
  if (person.role === "admin") return true;
  return group.agentId === person.id ||
    (group.departmentId !== null && person.departments.includes(group.departmentId));
}

/** Whether a viewer may see a person in presence lists: staff see all, customers only agents. */
export function canSeePresenceOf(viewerRole: Role, subjectRole: Role): boolean {
  return viewerRole !== "client" || subjectRole === "agent";
}

/** Admin-only actions: room statistics and forced disconnects. */
export function isAdmin(person: Pick<Person, "role">): boolean {
  return person.role === "admin";
}

/**
 * Whether a payload's `userId` / `userType` name the authenticated person.
 * `userType` `client` is a customer, `agent` and `admin` an agent (admins
 * may call themselves either); without `userType` the id alone is compared.
 */
export function claimMatches(
  person: Person,
  claimed: { userId?: number; userType?: string },
): boolean {
  if (claimed.userId !== undefined && claimed.userId !== person.id) return false;
  if (claimed.userType === undefined) return true;
  return claimed.userType === person.role ||
    (person.role === "admin" && claimed.userType === "agent");
}

/** The kind a payload's `userType` names. */
export function kindOfUserType(userType: "agent" | "client" | "admin"): PersonRef["kind"] {
  return userType === "client" ? "client" : "agent";
}

/** Whether someone of the other side (agents vs the customer) is among `members`. */
export function otherSidePresent(sender: PersonRef, members: readonly PersonRef[]): boolean {
  return members.some((member) => member.kind !== sender.kind && !samePerson(member, sender));
}
