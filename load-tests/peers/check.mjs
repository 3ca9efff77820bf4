// Checks, against a running server, the contract behaviours the peers claim beyond what the load
// generator's happy path shows: refusals, each check's error code, idempotency, multi-device
// fan-out without the sending socket, seq, join with lastSeq. Runs against coursechat too.
//
//   CHAT_JWT_SECRET=secret node load-tests/peers/check.mjs http://127.0.0.1:8080
//   CHAT_JWT_SECRET=secret node load-tests/peers/check.mjs http://127.0.0.1:8081 http://127.0.0.1:8082
//
// With a second URL (another node of the same cluster) the second socket of each user, the
// repeated POST /api/chats and every other send of the burst go to it, so the fan-out, the shared
// directory, dedupe and the rate limit are checked across nodes.
//
// Uses the Node peer's node_modules (ws, jsonwebtoken): run `npm ci` in peers/node first.
// Prints one line per check and `N passed, N failed`; exits 1 on a failure.

import { createRequire } from "node:module";

const require = createRequire(new URL("./node/package.json", import.meta.url));
const WebSocket = require("ws");
const jwt = require("jsonwebtoken");

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const other = process.argv[3] ?? base;
const secret = process.env.CHAT_JWT_SECRET ?? "secret";
const run = `ck${Math.random().toString(36).slice(2, 8)}`;
const exp = Math.floor(Date.now() / 1000) + 600;
const token = (sub, role) => jwt.sign({ sub, role, exp }, secret, { algorithm: "HS256" });

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : `  ${detail}`}`);
}

async function rest(method, path, tok, body, at = base) {
  const res = await fetch(at + path, {
    method,
    headers: { "content-type": "application/json", ...(tok ? { authorization: `Bearer ${tok}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

// A raw Engine.IO/Socket.IO websocket client: `connect()` resolves with the CONNECT answer.
class Client {
  constructor(tok, at = base) {
    this.events = [];
    this.acks = new Map();
    this.nextAck = 1;
    this.ws = new WebSocket(`${at.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`);
    this.closed = new Promise((resolve) => this.ws.on("close", resolve));
    this.answer = new Promise((resolve) => {
      this.ws.on("message", (raw) => {
        const text = raw.toString();
        if (text[0] === "0") this.ws.send(`40${JSON.stringify({ token: tok })}`);
        else if (text === "2") this.ws.send("3");
        else if (text.startsWith("40") || text.startsWith("44")) resolve(text);
        else if (text.startsWith("42")) this.events.push(JSON.parse(text.slice(text.indexOf("["))));
        else if (text.startsWith("43")) {
          const at = text.indexOf("[");
          this.acks.get(Number(text.slice(2, at)))?.(JSON.parse(text.slice(at))[0]);
        }
      });
    });
  }

  emit(event, payload) {
    const id = this.nextAck++;
    const answered = new Promise((resolve) => this.acks.set(id, resolve));
    this.ws.send(`42${id}${JSON.stringify([event, payload])}`);
    return Promise.race([answered, sleep(3000).then(() => ({ timeout: true }))]);
  }

  received(event) {
    return this.events.filter(([name]) => name === event).map(([, arg]) => arg);
  }

  close() {
    this.ws.close();
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const admin = token(`${run}-admin`, "admin");
const [student, tutor, outsider] = [`${run}-s`, `${run}-t`, `${run}-x`];
const course = `${run}-c`;

let r = await rest("PUT", `/api/admin/users/${student}`, admin, { name: "S", role: "user" });
check("admin PUT user answers 200 {user}", r.status === 200 && r.json.user?.id === student, JSON.stringify(r));
r = await rest("PUT", `/api/admin/users/${student}`, token(student, "user"), { name: "S", role: "user" });
check("admin call with a user token is 403 forbidden", r.status === 403 && r.json.error?.code === "forbidden", JSON.stringify(r));
r = await rest("PUT", `/api/admin/users/${student}`, undefined, { name: "S", role: "user" });
check("no token is 401 unauthorized", r.status === 401 && r.json.error?.code === "unauthorized", JSON.stringify(r));
r = await rest("PUT", `/api/admin/users/${student}`, jwt.sign({ sub: "a", role: "admin", exp }, "wrong"), {});
check("a token with another secret is 401 invalid_token", r.status === 401 && r.json.error?.code === "invalid_token", JSON.stringify(r));
await rest("PUT", `/api/admin/users/${tutor}`, admin, { name: "T", role: "tutor" });
await rest("PUT", `/api/admin/users/${outsider}`, admin, { name: "X", role: "user" });
r = await rest("PUT", `/api/admin/courses/${course}`, admin, { title: "C", tutorIds: [tutor] });
check("admin PUT course answers 200 {course}", r.status === 200 && r.json.course?.tutorIds?.[0] === tutor, JSON.stringify(r));
r = await rest("POST", "/api/chats", token(student, "user"), { participantId: tutor, courseId: course });
check("POST /api/chats without an enrollment is 403 not_enrolled", r.status === 403 && r.json.error?.code === "not_enrolled", JSON.stringify(r));
r = await rest("PUT", "/api/admin/enrollments", admin, { userId: student, courseId: course });
check("admin PUT enrollment answers 200 {enrollment}", r.status === 200 && r.json.enrollment?.userId === student, JSON.stringify(r));
r = await rest("POST", "/api/chats", token(student, "user"), { participantId: outsider, courseId: course });
check("POST /api/chats with a non-tutor is 403 not_tutor", r.status === 403 && r.json.error?.code === "not_tutor", JSON.stringify(r));
r = await rest("POST", "/api/chats", token(student, "user"), { participantId: tutor, courseId: course });
check("POST /api/chats creates: 201 {chat}", r.status === 201 && /^[0-9a-f]{24}$/.test(r.json.chat?.id ?? ""), JSON.stringify(r));
const chatId = r.json.chat.id;
r = await rest("POST", "/api/chats", token(student, "user"), { participantId: tutor, courseId: course }, other);
check("POST /api/chats again: 200, the same chat", r.status === 200 && r.json.chat?.id === chatId, JSON.stringify(r));

const refused = new Client("not-a-token");
const refusal = await refused.answer;
check("CONNECT with a bad token gets CONNECT_ERROR", refusal.startsWith("44"), refusal);
check("  ... with data.code invalid_token", JSON.parse(refusal.slice(2)).data?.code === "invalid_token", refusal);
const closedInTime = await Promise.race([refused.closed.then(() => true), sleep(2000).then(() => false)]);
check("  ... and the server closes the connection", closedInTime);
refused.close();

const s1 = new Client(token(student, "user"));
const s2 = new Client(token(student, "user"), other);
const t1 = new Client(token(tutor, "tutor"));
const t2 = new Client(token(tutor, "tutor"), other);
const x1 = new Client(token(outsider, "user"));
await Promise.all([s1.answer, s2.answer, t1.answer, t2.answer, x1.answer]);

r = await x1.emit("join_chat", { chatId });
check("join_chat by a non-participant is not_found", r.ok === false && r.error?.code === "not_found", JSON.stringify(r));
r = await s1.emit("join_chat", { chatId });
check("join_chat answers {ok, chat, missed: [], hasMore}", r.ok === true && r.chat?.id === chatId && r.missed?.length === 0, JSON.stringify(r));
r = await s1.emit("send_message", { chatId, clientMsgId: "m1", content: "x".repeat(4001) });
check("content over 4000 code points is too_large", r.error?.code === "too_large", JSON.stringify(r));
r = await s1.emit("send_message", { chatId, clientMsgId: "m1", content: "  \n " });
check("blank content is invalid_payload", r.error?.code === "invalid_payload", JSON.stringify(r));
r = await s1.emit("send_message", { chatId, clientMsgId: "m1", content: "a\u0007b" });
check("a control character is invalid_payload", r.error?.code === "invalid_payload", JSON.stringify(r));
r = await x1.emit("send_message", { chatId, clientMsgId: "m1", content: "hi" });
check("send by a non-participant is not_found", r.error?.code === "not_found", JSON.stringify(r));

const first = await s1.emit("send_message", { chatId, clientMsgId: "m1", content: "hello" });
const m = first.message ?? {};
check("send answers {ok, message} with seq 1", first.ok === true && m.seq === 1, JSON.stringify(first));
const fields = ["id", "chatId", "seq", "senderId", "senderType", "type", "content", "clientMsgId", "createdAt"];
check("message has the contract's fields", fields.every((f) => f in m) && m.senderType === "user" && m.type === "text"
  && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(m.createdAt), JSON.stringify(m));
const again = await s1.emit("send_message", { chatId, clientMsgId: "m1", content: "hello" });
check("a repeated clientMsgId returns the first message", again.message?.id === m.id && again.message?.seq === 1, JSON.stringify(again));
const second = await t1.emit("send_message", { chatId, clientMsgId: "m1", content: "from the tutor" });
check("the same clientMsgId from the other sender is a new message (seq 2)", second.message?.seq === 2
  && second.message?.senderType === "tutor", JSON.stringify(second));
await sleep(300);
const ids = (c) => c.received("message_received").map((e) => e.message.seq).join(",");
check("the student's other socket gets both, once each", ids(s2) === "1,2", ids(s2));
check("the sending student socket gets only the tutor's", ids(s1) === "2", ids(s1));
check("the tutor's other socket gets both", ids(t2) === "1,2", ids(t2));
check("the sending tutor socket gets only the student's", ids(t1) === "1", ids(t1));
check("the outsider gets nothing", ids(x1) === "", ids(x1));
r = await s2.emit("join_chat", { chatId, lastSeq: 1 });
check("join_chat {lastSeq: 1} returns the message after it", r.missed?.map((x) => x.seq).join(",") === "2" && r.hasMore === false, JSON.stringify(r));

let limited = 0;
for (let i = 0; i < 30; i++) {
  const a = await (i % 2 ? s1 : s2).emit("send_message", { chatId, clientMsgId: `burst${i}`, content: "burst" });
  if (a.error?.code === "rate_limited") limited++;
}
check("30 sends at once from one user: some are rate_limited (10/s, burst 20)", limited >= 5 && limited <= 15, `${limited} limited`);

for (const c of [s1, s2, t1, t2, x1]) c.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
