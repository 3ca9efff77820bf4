// Error codes from the contract turned into sentences a student or tutor can act on.
// Components never show a raw code; everything that reaches the UI goes through here.

import type { WireError } from './types';

const MESSAGES: Record<string, string> = {
  invalid_payload: 'That message could not be sent: it is empty or contains characters that are not allowed.',
  unauthorized: 'You are not signed in.',
  invalid_token: 'Your sign-in is not valid. Please open the chat again from your course platform.',
  token_expired: 'Your session has expired.',
  forbidden: 'You are not allowed to do that.',
  not_enrolled: 'You no longer have access to this course.',
  not_tutor: 'This person is not a tutor of that course.',
  blocked: 'You cannot message this person.',
  not_found: 'This chat is not available.',
  too_large: 'That message is too long.',
  unsupported_type: 'That file type is not supported.',
  rate_limited: 'You are sending messages too quickly. Please wait a moment and try again.',
  unavailable: 'The chat service is temporarily unavailable. Please try again shortly.',
  network: 'Could not reach the chat service. Check your connection and try again.',
  timeout: 'The chat service did not answer in time.',
  disconnected: 'You are offline. The message will be sent when the connection is back.',
};

/** A readable sentence for a contract error code (never the code itself). */
export function readableError(code: string | undefined | null): string {
  if (code && MESSAGES[code]) return MESSAGES[code];
  return 'Something went wrong. Please try again.';
}

/** An error as thrown by services/api.ts and passed through thunks. */
export class ChatError extends Error {
  readonly code: string;
  readonly status?: number;
  constructor(code: string, message: string, status?: number) {
    super(message);
    this.name = 'ChatError';
    this.code = code;
    this.status = status;
  }
  static fromWire(error: WireError | undefined): ChatError {
    return new ChatError(error?.code ?? 'unknown', error?.message ?? '');
  }
}

/** The contract code carried by anything thrown or rejected (`unknown` when there is none). */
export function errorCode(error: unknown): string {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return 'unknown';
}
