// Start-up: settings from flags or the environment, one HTTP server carrying both the REST API
// and Socket.IO (websocket and polling transports, Socket.IO's defaults otherwise).
//
//   CHAT_JWT_SECRET=... node server.js [--port 8080] [--host 127.0.0.1]
//
// Prints `listening on <host:port>` when ready; exits 0 on SIGTERM / SIGINT.

import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { Server } from "socket.io";

import { Verifier } from "./auth.js";
import { ChatService } from "./chat.js";
import { restHandler } from "./http.js";
import { attachSockets, userRoom } from "./sockets.js";

const { values: flags } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" } } });
const env = process.env;
const port = Number(flags.port ?? env.PORT ?? 8080);
const host = flags.host ?? env.HOST ?? "127.0.0.1";
const secret = env.CHAT_JWT_SECRET;
if (!secret) {
  console.error("set CHAT_JWT_SECRET");
  process.exit(2);
}
// The same defaults, and the same variables, as coursechat.
const leewaySeconds = Number(env.CHAT_JWT_LEEWAY ?? 5);
const limits = {
  maxContentChars: Number(env.CHAT_MAX_CONTENT_CHARS ?? 4000),
  messageRate: Number(env.CHAT_MESSAGE_RATE ?? 10),
  messageBurst: Number(env.CHAT_MESSAGE_BURST ?? 20),
};
const maxFrameBytes = Number(env.CHAT_MAX_FRAME_BYTES ?? 65536);

const verifier = new Verifier(secret, leewaySeconds);
// A user is online while its room has a socket (`io` is bound below, before any call).
const chats = new ChatService(limits, (userId) => (io.of("/").adapter.rooms.get(userRoom(userId))?.size ?? 0) > 0);
// The REST handler must be in place before Socket.IO attaches: engine.io then routes every
// request outside /socket.io/ to it.
const http = createServer(restHandler(chats, verifier));
const io = new Server(http, { serveClient: false, maxHttpBufferSize: maxFrameBytes });
attachSockets(io, chats, verifier, leewaySeconds);

http.listen(port, host, () => {
  const { address, port: bound } = http.address();
  console.log(`peer-node (socket.io) listening on ${address}:${bound}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    http.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
