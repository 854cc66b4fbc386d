/**
 * Error codes of the Servana Socket.IO contract and the error payload every
 * `error` event, failed ack and refused handshake carries.
 *
 * @module
 */

/** Every error code the service sends, the seed's list plus `SERVER_ERROR`. */
export const ERROR_CODES = [
  "AUTH_REQUIRED",
  "ACCESS_DENIED",
  "ROOM_NOT_FOUND",
  "RATE_LIMIT_EXCEEDED",
  "INVALID_DATA",
  "USER_NOT_FOUND",
  "ROOM_INACTIVE",
  "SERVER_ERROR",
] as const;

/** One of {@linkcode ERROR_CODES}. */
export type ErrorCode = typeof ERROR_CODES[number];

/** The payload of an `error` event: `{ message, code, details? }`. */
export interface ErrorPayload {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

/** Default human-readable message for each code. */
export const DEFAULT_MESSAGES: Readonly<Record<ErrorCode, string>> = {
  AUTH_REQUIRED: "Authentication required",
  ACCESS_DENIED: "Access denied",
  ROOM_NOT_FOUND: "Chat room not found",
  RATE_LIMIT_EXCEEDED: "Too many requests",
  INVALID_DATA: "Malformed request data",
  USER_NOT_FOUND: "User not found",
  ROOM_INACTIVE: "Chat room is closed",
  SERVER_ERROR: "Internal server error",
};

/**
 * An error that carries a contract error code. Thrown inside the service and
 * turned into an {@linkcode ErrorPayload} at the edge (event handler or
 * handshake middleware).
 */
export class ServanaError extends Error {
  /** The contract error code. */
  readonly code: ErrorCode;
  /** Extra information safe to show to the client. */
  readonly details?: unknown;

  constructor(code: ErrorCode, message?: string, options?: { details?: unknown; cause?: unknown }) {
    super(message ?? DEFAULT_MESSAGES[code], { cause: options?.cause });
    this.name = "ServanaError";
    this.code = code;
    this.details = options?.details;
  }

  /** The payload sent to the client. */
  toPayload(): ErrorPayload {
    const payload: ErrorPayload = { code: this.code, message: this.message };
    if (this.details !== undefined) payload.details = this.details;
    return payload;
  }
}

/**
 * Turns anything thrown into a client-safe payload: a {@linkcode ServanaError}
 * keeps its code; anything else becomes `SERVER_ERROR` without internals.
 */
export function toErrorPayload(error: unknown): ErrorPayload {
  if (error instanceof ServanaError) return error.toPayload();
  return { code: "SERVER_ERROR", message: DEFAULT_MESSAGES.SERVER_ERROR };
}
