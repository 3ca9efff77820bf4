// Socket.IO: CONNECT with `auth: {token}` (a bad token gets CONNECT_ERROR with its code), each
// socket in its user's room `user:<id>` (every device of a user), `join_chat` (plus the chat's room
// `chat:<id>`), `send_message` with its fan-out to both participants' rooms except the sending
// socket, `refresh_token`, and the disconnect when a socket's token expires.

import { asChatError, ChatError } from "./errors.js";

// setTimeout's longest delay (about 24.8 days); a later expiry is re-armed when it fires.
const MAX_TIMER_MS = 2 ** 31 - 1;
// socket → its expiry timer. Not in socket.data, which the Redis adapter serializes to answer
// another node's fetchSockets (a timer does not serialize).
const expiries = new WeakMap();

export const userRoom = (userId) => `user:${userId}`;
const chatRoom = (chatId) => `chat:${chatId}`;

export function attachSockets(io, chats, verifier, leewaySeconds) {
  io.use((socket, next) => {
    const refuse = (e) => {
      const error = asChatError(e);
      const refusal = new Error(error.message);
      refusal.data = { code: error.code };
      next(refusal);
      // CONTRACT: after CONNECT_ERROR the server closes the connection (on the next turn, once the
      // refusal is written). Socket.IO itself would keep it open for another namespace.
      setImmediate(() => socket.conn.close());
    };
    try {
      const caller = verifier.verify(socket.handshake.auth?.token);
      const signedIn = chats.signIn(caller);
      socket.data.caller = caller;
      if (signedIn instanceof Promise) signedIn.then(() => next(), refuse);
      else next();
    } catch (e) {
      refuse(e);
    }
  });

  io.on("connection", (socket) => {
    socket.join(userRoom(socket.data.caller.userId));
    armExpiry(socket, leewaySeconds);
    socket.on("disconnect", () => clearTimeout(expiries.get(socket)));

    handle(socket, "join_chat", (body) =>
      after(chats.join(socket.data.caller, body), (joined) => {
        socket.join(chatRoom(joined.chat.id));
        return joined;
      }));

    handle(socket, "send_message", (body) =>
      after(chats.send(socket.data.caller, body), ({ message, fresh, chat }) => {
        if (fresh) {
          // One encode for every recipient; `socket.to` leaves out the sending socket (with the
          // Redis adapter: on every node).
          socket.to([userRoom(chat.studentId), userRoom(chat.tutorId)]).emit("message_received", { message });
        }
        return { message };
      }));

    handle(socket, "refresh_token", (body) => {
      const caller = verifier.verify(body?.token);
      if (caller.userId !== socket.data.caller.userId) {
        throw new ChatError("invalid_token", "the new token names another user");
      }
      socket.data.caller = caller;
      armExpiry(socket, leewaySeconds);
      return { exp: caller.exp };
    });
  });
}

// Runs `action` for every `event`; answers its ack with `{ok:true, ...}` or `{ok:false, error}`,
// or, without an ack, sends an `error` event when it fails.
// `action` may answer a promise (the cluster mode's rules are async).
function handle(socket, event, action) {
  socket.on(event, (body, ack) => {
    const succeed = (answer) => {
      if (typeof ack === "function") ack({ ok: true, ...answer });
    };
    const fail = (e) => {
      const error = asChatError(e);
      if (typeof ack === "function") ack({ ok: false, error: error.body() });
      else socket.emit("error", { ...error.body(), event });
    };
    try {
      const answer = action(body);
      if (answer instanceof Promise) answer.then(succeed, fail);
      else succeed(answer);
    } catch (e) {
      fail(e);
    }
  });
}

// `then(value)` at once when `value` is not a promise (in memory, everything stays synchronous),
// else once it resolves.
function after(value, then) {
  return value instanceof Promise ? value.then(then) : then(value);
}

// Ends the session when its token expires (after the clock leeway): an `error` event with code
// token_expired, then a Socket.IO DISCONNECT so the client does not reconnect by itself.
function armExpiry(socket, leewaySeconds) {
  clearTimeout(expiries.get(socket));
  const due = (socket.data.caller.exp + leewaySeconds) * 1000;
  const fire = () => {
    if (Date.now() < due) {
      expiries.set(socket, setTimeout(fire, Math.min(due - Date.now(), MAX_TIMER_MS)));
      return;
    }
    socket.emit("error", { code: "token_expired", message: "the token has expired" });
    socket.disconnect(true);
  };
  expiries.set(socket, setTimeout(fire, Math.min(Math.max(due - Date.now(), 0), MAX_TIMER_MS)));
}
