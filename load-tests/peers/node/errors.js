// The contract's error codes, and the one mapping of each to an HTTP status. Socket.IO acks and
// `error` events carry the same codes.

const STATUS = {
  invalid_payload: 400,
  unauthorized: 401,
  invalid_token: 401,
  token_expired: 401,
  forbidden: 403,
  not_enrolled: 403,
  not_tutor: 403,
  blocked: 403,
  not_found: 404,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
};

export class ChatError extends Error {
  constructor(code, message, retryAfterSeconds) {
    super(message);
    this.code = code;
    // Only for `rate_limited`: what `Retry-After` says.
    this.retryAfterSeconds = retryAfterSeconds;
  }

  get status() {
    return STATUS[this.code] ?? 500;
  }

  body() {
    return { code: this.code, message: this.message };
  }
}

// Any thrown value as a ChatError (a bug becomes a 500 `internal`, never a crash).
export function asChatError(e) {
  if (e instanceof ChatError) return e;
  console.error(e);
  return new ChatError("internal", "internal error");
}
