// Identity (CONTRACT "Identity"): HS256 JWTs with the secret from CHAT_JWT_SECRET. The algorithm is
// pinned here, never taken from the token header; `exp` is required; the clock leeway is 5 s, as in
// coursechat, not a library default.

import jwt from "jsonwebtoken";

import { ChatError } from "./errors.js";

const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;
const ROLES = new Set(["user", "tutor", "admin"]);

export class Verifier {
  constructor(secret, leewaySeconds) {
    this.secret = secret;
    this.options = { algorithms: ["HS256"], clockTolerance: leewaySeconds };
  }

  // The caller `{userId, role, name, exp}` named by a token, or a ChatError
  // `unauthorized` / `invalid_token` / `token_expired`.
  verify(token) {
    if (typeof token !== "string" || token === "") {
      throw new ChatError("unauthorized", "no token");
    }
    let claims;
    try {
      claims = jwt.verify(token, this.secret, this.options);
    } catch (e) {
      if (e instanceof jwt.TokenExpiredError) throw new ChatError("token_expired", "the token has expired");
      throw new ChatError("invalid_token", `invalid token: ${e.message}`);
    }
    if (typeof claims.exp !== "number") throw new ChatError("invalid_token", "invalid token: exp is required");
    if (typeof claims.sub !== "string" || !USER_ID.test(claims.sub)) {
      throw new ChatError("invalid_token", "invalid token: sub must be 1..64 chars of [A-Za-z0-9_-]");
    }
    if (!ROLES.has(claims.role)) throw new ChatError("invalid_token", "invalid token: unknown role");
    const name = typeof claims.name === "string" && claims.name.trim() !== "" && claims.name.length <= 200
      ? claims.name
      : undefined;
    return { userId: claims.sub, role: claims.role, name, exp: claims.exp };
  }
}

// The `Authorization: Bearer <jwt>` token of a request ("" when there is none).
export function bearer(req) {
  const header = req.headers.authorization ?? "";
  return header.startsWith("Bearer ") ? header.slice(7).trim() : "";
}

export function isValidId(id) {
  return typeof id === "string" && USER_ID.test(id);
}
