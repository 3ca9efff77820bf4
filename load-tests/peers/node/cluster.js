// Cluster mode (REDIS_URL set): the same chat rules as chat.js, over state every node shares
// through Redis, so any number of nodes behave as one server. Socket.IO's fan-out between nodes is
// @socket.io/redis-adapter's (server.js); this module keeps what the rules need:
//
//   user:<id>                       hash {name, role}
//   course:<id>                     hash {title, tutorIds (JSON)}; course:<id>:tutors a set
//   enrollments:<userId>            hash courseId → purchasedAt
//   chat-of:<student>:<tutor>:<course>  the chat id of a triple (at most one chat per triple)
//   chat:{<id>}                     hash {courseId, studentId, tutorId, createdAt, updatedAt, read:<user>}
//   chat:{<id>}:seq                 the chat's last seq (INCR)
//   chat:{<id>}:recent              stream of the last RECENT messages, entry id <seq>-0, for join's missed
//   chat:{<id>}:idem:<sender>:<clientMsgId>  the first message sent with that id (24 h)
//   rate:<userId>                   GCRA theoretical arrival time, µs of Redis's clock
//
// every key under PEER_REDIS_PREFIX (default `peer:`). A chat's keys share the hash tag {<id>},
// so the send script touches one slot. A send is two round trips: the rate limit script pipelined
// with the enrollment and tutor checks, then the send script (dedupe, INCR, append, cursor), which
// is atomic, so seqs are gapless and a clientMsgId races to one message across nodes. A chat's
// fixed fields (id, course, student, tutor) never change and are cached in process; courses,
// enrollments and names are read from Redis where they are used.
//
// Order: every command of this node goes over one connection, whose replies come back in order,
// and every send takes the same awaits, so this node emits a chat's messages in seq order. Two
// nodes sending into one chat at once can publish in either order (clients order by seq).

import { readFileSync } from "node:fs";

import { ObjectId } from "bson";

import {
  MAX_MISSED,
  chatSides,
  checkLastSeq,
  checkPutCourse,
  checkPutEnrollment,
  checkPutUser,
  checkSendBody,
  now,
} from "./chat.js";
import { ChatError } from "./errors.js";

// How long a clientMsgId is remembered (coursechat's CHAT_IDEMPOTENCY_HOURS default).
const IDEMPOTENCY_MS = 24 * 3600 * 1000;
// Chats whose fixed fields are cached in process; past it the oldest is forgotten.
const CHAT_CACHE = 100_000;
const OBJECT_ID = /^[0-9a-f]{24}$/;




// The scripts both peers' cluster modes run (../lua/, shared with the socketioxide peer).
const lua = (name) => readFileSync(new URL(`../lua/${name}`, import.meta.url), 'utf8');
const SCRIPTS = {
  gcra: { numberOfKeys: 1, lua: lua('rate.lua') },
  appendMessage: { numberOfKeys: 4, lua: lua('send.lua') },
  createChat: { numberOfKeys: 2, lua: lua('create_chat.lua') },
};

const chatKey = (id) => `chat:{${id}}`;

export class RedisChatService {
  // `redis`: an ioredis client (with keyPrefix); `limits` as ChatService's; `isOnline(userId)`:
  // a promise of whether the user has a socket on any node; `recent`: messages kept per chat.
  constructor(redis, limits, isOnline, recent) {
    this.redis = redis;
    this.limits = limits;
    this.isOnline = isOnline;
    this.recent = recent;
    // chat id → {id, courseId, studentId, tutorId, createdAt}: fixed at creation.
    this.chats = new Map();
    // Users this node has recorded from a token without a name (HSETNX only: nothing to redo).
    this.signedIn = new Set();
    for (const [name, script] of Object.entries(SCRIPTS)) redis.defineCommand(name, script);
  }

  // Loads the scripts, so the first sends run EVALSHA like every later one.
  async ready() {
    await Promise.all(Object.values(SCRIPTS).map(({ lua }) => this.redis.script("LOAD", lua)));
  }

  // A token's name updates the user record; a user seen for the first time is recorded.
  async signIn(caller) {
    const key = `user:${caller.userId}`;
    if (caller.name === undefined) {
      if (this.signedIn.has(caller.userId)) return;
      await this.redis.multi().hsetnx(key, "name", caller.userId).hsetnx(key, "role", caller.role).exec();
      this.signedIn.add(caller.userId);
      return;
    }
    await this.redis.multi().hset(key, "name", caller.name).hsetnx(key, "role", caller.role).exec();
  }

  // --- admin API -------------------------------------------------------------------------------

  async putUser(caller, id, body) {
    checkPutUser(caller, id, body);
    const user = { id, name: body.name, role: body.role };
    await this.redis.hset(`user:${id}`, "name", user.name, "role", user.role);
    return user;
  }

  async putCourse(caller, id, body) {
    checkPutCourse(caller, id, body);
    const course = { id, title: body.title, tutorIds: [...body.tutorIds] };
    const tutors = `course:${id}:tutors`;
    const tx = this.redis.multi().hset(`course:${id}`, "title", course.title, "tutorIds", JSON.stringify(course.tutorIds));
    tx.del(tutors);
    if (course.tutorIds.length > 0) tx.sadd(tutors, ...course.tutorIds);
    await tx.exec();
    return course;
  }

  async putEnrollment(caller, body) {
    checkPutEnrollment(caller, body);
    const key = `enrollments:${body.userId}`;
    const [, [, purchasedAt]] = await this.redis.multi().hsetnx(key, body.courseId, now()).hget(key, body.courseId).exec();
    return { userId: body.userId, courseId: body.courseId, purchasedAt };
  }

  // --- chats -----------------------------------------------------------------------------------

  async createChat(caller, body) {
    const { studentId, tutorId, courseId } = chatSides(caller, body);
    throwAccess(await this.access(this.redis.pipeline(), studentId, tutorId, courseId).exec(), courseId, tutorId);
    const id = new ObjectId().toHexString();
    const [created, chatId] = await this.redis.createChat(
      `chat-of:${studentId}:${tutorId}:${courseId}`, chatKey(id), id, courseId, studentId, tutorId, now());
    const chat = await this.chat(chatId);
    return { chat: await this.view(caller.userId, chat), created: created === 1 };
  }

  async join(caller, body) {
    const chat = await this.participantChat(caller, body?.chatId);
    const lastSeq = body.lastSeq;
    const wantsMissed = lastSeq !== undefined && lastSeq !== null;
    if (wantsMissed) checkLastSeq(lastSeq);
    // One round trip: the checks, the view's reads and the missed messages.
    const batch = this.access(this.redis.pipeline(), chat.studentId, chat.tutorId, chat.courseId);
    this.viewReads(batch, chat);
    if (wantsMissed) batch.xrange(`${chatKey(chat.id)}:recent`, `${lastSeq + 1}-0`, "+", "COUNT", MAX_MISSED + 1);
    const replies = await batch.exec();
    throwAccess(replies.slice(0, 2), chat.courseId, chat.tutorId);
    let missed = [];
    let hasMore = false;
    if (wantsMissed) {
      const entries = reply(replies[replies.length - 1]);
      hasMore = entries.length > MAX_MISSED;
      missed = entries.slice(0, MAX_MISSED).map(([, fields]) => JSON.parse(fields[1]));
    }
    return { chat: await this.viewFrom(caller.userId, chat, replies.slice(2, 2 + VIEW_READS)), missed, hasMore };
  }

  async send(caller, body) {
    checkSendBody(body, this.limits.maxContentChars);
    const { chatId, clientMsgId, content } = body;
    const chat = await this.participantChat(caller, chatId);
    const { messageRate, messageBurst } = this.limits;
    const batch = this.redis.pipeline().gcra(`rate:${caller.userId}`, Math.round(1e6 / messageRate), messageBurst);
    const replies = await this.access(batch, chat.studentId, chat.tutorId, chat.courseId).exec();
    const wait = reply(replies[0]);
    if (wait > 0) throw new ChatError("rate_limited", "too many messages", Math.max(1, Math.ceil(wait / 1e6)));
    throwAccess(replies.slice(1), chat.courseId, chat.tutorId);

    const createdAt = now();
    const fields = {
      id: new ObjectId().toHexString(),
      chatId: chat.id,
      senderId: caller.userId,
      senderType: caller.userId === chat.tutorId ? "tutor" : "user",
      type: "text",
      content,
      clientMsgId,
      createdAt,
    };
    const key = chatKey(chat.id);
    const [fresh, json] = await this.redis.appendMessage(
      `${key}:idem:${caller.userId}:${clientMsgId}`, `${key}:seq`, `${key}:recent`, key,
      JSON.stringify(fields).slice(1), IDEMPOTENCY_MS, this.recent, createdAt, caller.userId);
    if (fresh !== 1) return { message: JSON.parse(json), fresh: false, chat };
    const seq = Number(json.slice(7, json.indexOf(",")));
    return { message: { seq, ...fields }, fresh: true, chat };
  }

  // --- shared checks ---------------------------------------------------------------------------

  // The chat's fixed fields, from the cache or Redis; undefined when there is no such chat.
  async chat(chatId) {
    let chat = this.chats.get(chatId);
    if (chat) return chat;
    const [courseId, studentId, tutorId, createdAt] = await this.redis.hmget(
      chatKey(chatId), "courseId", "studentId", "tutorId", "createdAt");
    if (studentId === null) return undefined;
    chat = { id: chatId, courseId, studentId, tutorId, createdAt };
    if (this.chats.size >= CHAT_CACHE) this.chats.delete(this.chats.keys().next().value);
    this.chats.set(chatId, chat);
    return chat;
  }

  async participantChat(caller, chatId) {
    const chat = typeof chatId === "string" && OBJECT_ID.test(chatId) ? await this.chat(chatId) : undefined;
    if (!chat || (chat.studentId !== caller.userId && chat.tutorId !== caller.userId)) {
      throw new ChatError("not_found", "chat not found");
    }
    return chat;
  }

  // Adds the enrollment and tutor reads to `batch` (see throwAccess).
  access(batch, studentId, tutorId, courseId) {
    return batch.hexists(`enrollments:${studentId}`, courseId).sismember(`course:${courseId}:tutors`, tutorId);
  }

  // The view's reads, added to `batch`: VIEW_READS replies, for viewFrom.
  viewReads(batch, chat) {
    const key = chatKey(chat.id);
    return batch
      .get(`${key}:seq`)
      .xrevrange(`${key}:recent`, "+", "-", "COUNT", 1)
      .hmget(key, "updatedAt", `read:${chat.studentId}`, `read:${chat.tutorId}`)
      .hmget(`user:${chat.studentId}`, "name")
      .hmget(`user:${chat.tutorId}`, "name")
      .hget(`course:${chat.courseId}`, "title");
  }

  async view(viewerId, chat) {
    return this.viewFrom(viewerId, chat, await this.viewReads(this.redis.pipeline(), chat).exec());
  }

  // What a caller sees of a chat (CONTRACT: GET /api/chats), from viewReads' replies.
  async viewFrom(viewerId, chat, replies) {
    const [seq, last, [updatedAt, studentRead, tutorRead], [studentName], [tutorName], title] = replies.map(reply);
    const lastSeq = Number(seq ?? 0);
    const [studentOnline, tutorOnline] = await Promise.all([this.isOnline(chat.studentId), this.isOnline(chat.tutorId)]);
    const reads = { [chat.studentId]: Number(studentRead ?? 0), [chat.tutorId]: Number(tutorRead ?? 0) };
    const participant = (id, role, name, online) => ({
      id, name: name ?? id, role, online, readSeq: Math.min(reads[id], lastSeq),
    });
    const readSeq = Math.min(reads[viewerId] ?? 0, lastSeq);
    return {
      id: chat.id,
      course: { id: chat.courseId, title: title ?? chat.courseId },
      participants: [
        participant(chat.studentId, "user", studentName, studentOnline),
        participant(chat.tutorId, "tutor", tutorName, tutorOnline),
      ],
      lastMessage: last.length > 0 ? JSON.parse(last[0][1][1]) : null,
      lastSeq,
      unread: lastSeq - readSeq,
      readSeq,
      createdAt: chat.createdAt,
      updatedAt: updatedAt ?? chat.createdAt,
    };
  }
}

const VIEW_READS = 6;

// A pipeline reply's value, or its error thrown.
function reply([error, value]) {
  if (error) throw error;
  return value;
}

// The access replies [enrolled, isTutor] as the contract's refusals (chat.js's checkAccess).
function throwAccess([enrolled, tutor], courseId, tutorId) {
  if (!reply(enrolled)) throw new ChatError("not_enrolled", `not enrolled in ${courseId}`);
  if (!reply(tutor)) throw new ChatError("not_tutor", `${tutorId} is not a tutor of the course ${courseId}`);
}
