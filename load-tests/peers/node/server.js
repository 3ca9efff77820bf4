// Start-up: settings from flags or the environment, one HTTP server carrying both the REST API
// and Socket.IO (websocket and polling transports, Socket.IO's defaults otherwise).
//
//   CHAT_JWT_SECRET=... node server.js [--port 8080] [--host 127.0.0.1]
//   CHAT_JWT_SECRET=... REDIS_URL=redis://127.0.0.1:6379 node server.js --port 8081   (one node of many)
//
// Without REDIS_URL everything is in this process's memory (chat.js). With it, this is one node
// of a cluster: the state lives in Redis (cluster.js, keys under PEER_REDIS_PREFIX, default
// `peer:`; PEER_RECENT messages per chat for join's missed, default 1000) and Socket.IO's fan-out
// between nodes is @socket.io/redis-adapter's.
//
// Prints `listening on <host:port>` when ready; exits 0 on SIGTERM / SIGINT.

import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { Server } from "socket.io";

import { Verifier } from "./auth.js";
import { ChatService } from "./chat.js";
import { RedisChatService } from "./cluster.js";
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
const onlineHere = (userId) => (io.of("/").adapter.rooms.get(userRoom(userId))?.size ?? 0) > 0;
let chats;
let adapter;
let redisClients = [];
if (env.REDIS_URL) {
  // Three connections: commands (state), and the adapter's publisher and subscriber.
  const redis = new Redis(env.REDIS_URL, { keyPrefix: env.PEER_REDIS_PREFIX ?? "peer:", lazyConnect: true });
  const pub = new Redis(env.REDIS_URL, { lazyConnect: true });
  const sub = pub.duplicate();
  redisClients = [redis, pub, sub];
  for (const c of redisClients) c.on("error", (e) => console.error(`redis: ${e.message}`));
  await Promise.all(redisClients.map((c) => c.connect()));
  // Online anywhere: this node's room first, else every node's (a request through Redis).
  const onlineAnywhere = async (userId) => {
    if (onlineHere(userId)) return true;
    try {
      return (await io.in(userRoom(userId)).fetchSockets()).length > 0;
    } catch {
      return false; // a node that did not answer in time counts as having none
    }
  };
  chats = new RedisChatService(redis, limits, onlineAnywhere, Number(env.PEER_RECENT ?? 1000));
  await chats.ready();
  adapter = createAdapter(pub, sub, { requestsTimeout: 2000 });
} else {
  chats = new ChatService(limits, onlineHere);
}
// The REST handler must be in place before Socket.IO attaches: engine.io then routes every
// request outside /socket.io/ to it.
const http = createServer(restHandler(chats, verifier));
const io = new Server(http, { serveClient: false, maxHttpBufferSize: maxFrameBytes, ...(adapter ? { adapter } : {}) });
attachSockets(io, chats, verifier, leewaySeconds);

http.listen(port, host, () => {
  const { address, port: bound } = http.address();
  console.log(`peer-node (socket.io${adapter ? ", redis cluster mode" : ""}) listening on ${address}:${bound}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    for (const c of redisClients) c.disconnect();
    http.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
