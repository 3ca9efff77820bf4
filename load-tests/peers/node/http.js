// REST: the four calls the load generator makes (the admin API and POST /api/chats) plus
// /healthz, each a few lines from the parsed request to the chat rules, with one error mapping.

import { bearer } from "./auth.js";
import { asChatError, ChatError } from "./errors.js";

// Largest JSON body (the contract's frame limit).
const MAX_BODY = 64 * 1024;

export function restHandler(chats, verifier) {
  const routes = [
    // Each may answer a promise (the cluster mode's rules are async).
    ["PUT", /^\/api\/admin\/users\/([^/]+)$/, async (caller, body, [id]) => ({ user: await chats.putUser(caller, id, body) })],
    ["PUT", /^\/api\/admin\/courses\/([^/]+)$/, async (caller, body, [id]) => ({ course: await chats.putCourse(caller, id, body) })],
    ["PUT", /^\/api\/admin\/enrollments$/, async (caller, body) => ({ enrollment: await chats.putEnrollment(caller, body) })],
    ["POST", /^\/api\/chats$/, async (caller, body) => {
      const { chat, created } = await chats.createChat(caller, body);
      return [created ? 201 : 200, { chat }];
    }],
  ];

  return async (req, res) => {
    const path = req.url.split("?", 1)[0];
    if (req.method === "GET" && path === "/healthz") return send(res, 200, { status: "ok" });
    let params;
    const route = routes.find(([method, pattern]) => method === req.method && (params = pattern.exec(path)));
    try {
      if (!route) throw new ChatError("not_found", "no such route");
      const caller = verifier.verify(bearer(req));
      await chats.signIn(caller);
      const body = await readJson(req);
      const answer = await route[2](caller, body, params.slice(1).map(decodeURIComponent));
      const [status, payload] = Array.isArray(answer) ? answer : [200, answer];
      send(res, status, payload);
    } catch (e) {
      const error = asChatError(e);
      if (error.retryAfterSeconds) res.setHeader("Retry-After", String(error.retryAfterSeconds));
      send(res, error.status, { error: error.body() });
    }
  };
}

function send(res, status, payload) {
  const body = JSON.stringify(payload);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

async function readJson(req) {
  const parts = [];
  let size = 0;
  for await (const part of req) {
    size += part.length;
    if (size > MAX_BODY) throw new ChatError("too_large", "body over the limit");
    parts.push(part);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(parts).toString("utf8"));
  } catch {
    throw new ChatError("invalid_payload", "the body is not JSON");
  }
}
