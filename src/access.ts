/**
 * Room names and every access rule, in one place.
 *
 * Rooms (the seed's names): a chat group's room is its id as a string
 * (`"456"`), a department's is `dept_${id}`, a user's is `user_${id}`.
 * Internal rooms: `admins` (every admin socket), `staff` (agents and admins)
 * and `clients` (customers), used for role-scoped broadcasts.
 *
 * @module
 */

import type { ChatGroup, Role, User } from "./store/mod.ts";

/** Room of one chat group: the id itself (`"456"`), as in the seed. */
export function chatRoom(chatGroupId: number): string {
  return String(chatGroupId);
}

/** Room of a department: `dept_${id}`. */
export function deptRoom(departmentId: number): string {
  return `dept_${departmentId}`;
}

/** Room of a user (all their sockets): `user_${id}`. */
export function userRoom(userId: number): string {
  return `user_${userId}`;
}

/** Every admin socket. */
export const ADMINS_ROOM = "admins";
/** Every agent and admin socket (sees all presence). */
export const STAFF_ROOM = "staff";
/** Every customer socket (sees online agents only). */
export const CLIENTS_ROOM = "clients";

/** The rooms a socket joins on connection, by role. */
export function roomsOnConnect(user: Pick<User, "id" | "role" | "departments">): string[] {
  const rooms = [userRoom(user.id)];
  if (user.role === "client") {
    rooms.push(CLIENTS_ROOM);
    return rooms;
  }
  rooms.push(STAFF_ROOM);
  for (const dept of user.departments) rooms.push(deptRoom(dept));
  if (user.role === "admin") rooms.push(ADMINS_ROOM);
  return rooms;
}

/**
 * Whether a user may join (and so read and write) a chat group: clients only
 * their own; agents the groups assigned to them and their departments'
 * groups; admins every group.
 */
export function canAccessChatGroup(
  user: Pick<User, "id" | "role" | "departments">,
  group: ChatGroup,
): boolean {
  switch (user.role) {
    case "admin":
      return true;
    case "client":
      return group.clientId === user.id;
    case "agent":
      return group.agentId === user.id ||
        (group.departmentId !== null && user.departments.includes(group.departmentId));
  }
}

/** Whether a user may join a department room (`dept_${id}`): admins, or agents of it. */
export function canAccessDepartment(
  user: Pick<User, "role" | "departments">,
  departmentId: number,
): boolean {
  if (user.role === "admin") return true;
  return user.role === "agent" && user.departments.includes(departmentId);
}

/** Whether a viewer may see a user in presence lists: staff see all, clients only agents. */
export function canSeePresenceOf(viewerRole: Role, subjectRole: Role): boolean {
  return viewerRole !== "client" || subjectRole === "agent";
}

/** Admin-only actions: room statistics and forced disconnects. */
export function isAdmin(user: Pick<User, "role">): boolean {
  return user.role === "admin";
}

/**
 * Whether the `userType` a payload claims fits the user's role. Admins are
 * agents with admin rights, so they may call themselves `agent` or `admin`.
 */
export function userTypeMatches(role: Role, claimed: string): boolean {
  return claimed === role || (role === "admin" && claimed === "agent");
}
