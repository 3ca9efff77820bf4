// The chat rules, over data kept in this process's memory only: users, courses, enrollments,
// chats and every chat's messages. Nothing is persisted; a restart forgets everything.
//
// REST and Socket.IO are thin adapters over these functions, so a check exists once. Node runs
// them on one thread, which is what makes a chat's seq assignment and its fan-out ordered without
// any lock: `send` appends and hands the message to `deliver` before anything else can run.

import { ObjectId } from "bson";

import { isValidId } from "./auth.js";
import { ChatError } from "./errors.js";

// Control characters other than \n and \t (Rust's char::is_control: Cc, U+0000..1F and U+007F..9F).
const FORBIDDEN_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
// At most this many messages in a join's `missed` (CONTRACT: join_chat).
export const MAX_MISSED = 500;

export class ChatService {
  // `limits`: {maxContentChars, messageRate, messageBurst}; `isOnline(userId)`: presence from the
  // socket layer (a user is online while one of its sockets is connected).
  constructor(limits, isOnline) {
    this.limits = limits;
    this.isOnline = isOnline;
    // id → {id, name, role}
    this.users = new Map();
    // id → {id, title, tutorIds}
    this.courses = new Map();
    // `${userId}\n${courseId}` → {userId, courseId, purchasedAt}
    this.enrollments = new Map();
    // chat id → Chat (see createChat)
    this.chats = new Map();
    // `${studentId}\n${tutorId}\n${courseId}` → chat id: at most one chat per triple.
    this.chatByTriple = new Map();
    // user id → {tokens, at}: the per-user send budget (token bucket).
    this.budgets = new Map();
  }

  // What a verified token says about its user: its name, when given, updates the record, and a
  // user seen for the first time is recorded (CONTRACT: "from their own earlier sign-in").
  signIn(caller) {
    const known = this.users.get(caller.userId);
    if (!known) {
      this.users.set(caller.userId, { id: caller.userId, name: caller.name ?? caller.userId, role: caller.role });
    } else if (caller.name !== undefined && known.name !== caller.name) {
      known.name = caller.name;
    }
  }

  // --- admin API -------------------------------------------------------------------------------

  putUser(caller, id, body) {
    checkPutUser(caller, id, body);
    const user = { id, name: body.name, role: body.role };
    this.users.set(id, user);
    return user;
  }

  putCourse(caller, id, body) {
    checkPutCourse(caller, id, body);
    const course = { id, title: body.title, tutorIds: [...body.tutorIds] };
    this.courses.set(id, course);
    return course;
  }

  putEnrollment(caller, body) {
    checkPutEnrollment(caller, body);
    const key = `${body.userId}\n${body.courseId}`;
    let enrollment = this.enrollments.get(key);
    if (!enrollment) {
      enrollment = { userId: body.userId, courseId: body.courseId, purchasedAt: now() };
      this.enrollments.set(key, enrollment);
    }
    return enrollment;
  }

  // --- chats -----------------------------------------------------------------------------------

  // POST /api/chats: {chat, created}.
  createChat(caller, body) {
    const { studentId, tutorId, courseId } = chatSides(caller, body);
    this.checkAccess(studentId, tutorId, courseId);

    const triple = `${studentId}\n${tutorId}\n${courseId}`;
    const existing = this.chatByTriple.get(triple);
    if (existing) return { chat: this.view(caller.userId, this.chats.get(existing)), created: false };
    const at = now();
    const chat = {
      id: new ObjectId().toHexString(),
      courseId,
      studentId,
      tutorId,
      createdAt: at,
      updatedAt: at,
      // Every message, in seq order: messages[seq - 1].
      messages: [],
      // `${senderId}\n${clientMsgId}` → message: makes a send idempotent per (chat, sender).
      byClientMsgId: new Map(),
      // user id → read cursor (seq).
      readSeq: new Map(),
    };
    this.chats.set(chat.id, chat);
    this.chatByTriple.set(triple, chat.id);
    return { chat: this.view(caller.userId, chat), created: true };
  }

  // join_chat: the checks of a send, then the chat and what the caller missed after lastSeq.
  // The socket layer puts the socket into the chat's room.
  join(caller, body) {
    const chat = this.participantChat(caller, body?.chatId);
    this.checkAccess(chat.studentId, chat.tutorId, chat.courseId);
    const lastSeq = body.lastSeq;
    let missed = [];
    let hasMore = false;
    if (lastSeq !== undefined && lastSeq !== null) {
      checkLastSeq(lastSeq);
      missed = chat.messages.slice(lastSeq, lastSeq + MAX_MISSED);
      hasMore = chat.messages.length > lastSeq + MAX_MISSED;
    }
    return { chat: this.view(caller.userId, chat), missed, hasMore };
  }

  // send_message: every check, then the append. Returns {message, fresh, chat}: `fresh` is false
  // for a repeated clientMsgId (the first message, nothing stored, nothing delivered).
  send(caller, body) {
    checkSendBody(body, this.limits.maxContentChars);
    const { chatId, clientMsgId, content } = body;
    this.spendBudget(caller.userId);
    const chat = this.participantChat(caller, chatId);
    this.checkAccess(chat.studentId, chat.tutorId, chat.courseId);

    const key = `${caller.userId}\n${clientMsgId}`;
    const first = chat.byClientMsgId.get(key);
    if (first) return { message: first, fresh: false, chat };
    const message = {
      id: new ObjectId().toHexString(),
      chatId: chat.id,
      seq: chat.messages.length + 1,
      senderId: caller.userId,
      senderType: caller.userId === chat.tutorId ? "tutor" : "user",
      type: "text",
      content,
      clientMsgId,
      createdAt: now(),
    };
    chat.messages.push(message);
    chat.byClientMsgId.set(key, message);
    chat.updatedAt = message.createdAt;
    // Sending moves the sender's read cursor silently.
    chat.readSeq.set(caller.userId, message.seq);
    return { message, fresh: true, chat };
  }

  // --- shared checks ---------------------------------------------------------------------------

  // The chat, when the caller takes part in it; otherwise not_found (never forbidden, so a
  // chat's existence does not leak).
  participantChat(caller, chatId) {
    const chat = typeof chatId === "string" ? this.chats.get(chatId) : undefined;
    if (!chat || (chat.studentId !== caller.userId && chat.tutorId !== caller.userId)) {
      throw new ChatError("not_found", "chat not found");
    }
    return chat;
  }

  // The student holds an enrollment in the course and the tutor is one of its tutors.
  checkAccess(studentId, tutorId, courseId) {
    const course = this.courses.get(courseId);
    if (!this.enrollments.has(`${studentId}\n${courseId}`)) {
      throw new ChatError("not_enrolled", `not enrolled in ${course?.title ?? courseId}`);
    }
    if (!course || !course.tutorIds.includes(tutorId)) {
      throw new ChatError("not_tutor", `${tutorId} is not a tutor of the course ${courseId}`);
    }
  }

  // A token bucket per user: `messageRate` per second, up to `messageBurst` at once.
  spendBudget(userId) {
    const { messageRate, messageBurst } = this.limits;
    const at = performance.now() / 1000;
    let budget = this.budgets.get(userId);
    if (!budget) {
      budget = { tokens: messageBurst, at };
      this.budgets.set(userId, budget);
    }
    budget.tokens = Math.min(messageBurst, budget.tokens + (at - budget.at) * messageRate);
    budget.at = at;
    if (budget.tokens < 1) {
      const retry = Math.max(1, Math.ceil((1 - budget.tokens) / messageRate));
      throw new ChatError("rate_limited", "too many messages", retry);
    }
    budget.tokens -= 1;
  }

  // What a caller sees of a chat (CONTRACT: GET /api/chats).
  view(viewerId, chat) {
    const lastMessage = chat.messages.at(-1) ?? null;
    const lastSeq = chat.messages.length;
    const participant = (id, role) => ({
      id,
      name: this.users.get(id)?.name ?? id,
      role,
      online: this.isOnline(id),
      readSeq: Math.min(chat.readSeq.get(id) ?? 0, lastSeq),
    });
    const readSeq = Math.min(chat.readSeq.get(viewerId) ?? 0, lastSeq);
    const course = this.courses.get(chat.courseId);
    return {
      id: chat.id,
      course: { id: chat.courseId, title: course?.title ?? chat.courseId },
      participants: [participant(chat.studentId, "user"), participant(chat.tutorId, "tutor")],
      lastMessage,
      lastSeq,
      unread: lastSeq - readSeq,
      readSeq,
      createdAt: chat.createdAt,
      updatedAt: chat.updatedAt,
    };
  }
}

// The checks of a send_message body that need nothing but the body (the cluster mode shares them).
export function checkSendBody(body, maxContentChars) {
  if (body === null || typeof body !== "object") throw new ChatError("invalid_payload", "expected an object");
  const { clientMsgId, content } = body;
  if (typeof clientMsgId !== "string" || clientMsgId.length === 0 || [...clientMsgId].length > 64) {
    throw new ChatError("invalid_payload", "clientMsgId must be 1 to 64 characters");
  }
  if (body.attachmentId !== undefined) {
    // This peer has no attachment upload, so no attachment id can be the caller's.
    throw new ChatError("not_found", "attachment not found");
  }
  if (body.type !== undefined && body.type !== "text") {
    throw new ChatError("invalid_payload", "image and file messages need an attachmentId");
  }
  checkContent(content, maxContentChars);
}

// --- checks shared with the cluster mode (cluster.js) -----------------------------------------

export function checkPutUser(caller, id, body) {
  requireAdmin(caller);
  if (!isValidId(id)) throw new ChatError("invalid_payload", "invalid user id");
  checkName(body?.name);
  if (!["user", "tutor", "admin"].includes(body.role)) throw new ChatError("invalid_payload", "unknown role");
}

export function checkPutCourse(caller, id, body) {
  requireAdmin(caller);
  if (!isValidId(id)) throw new ChatError("invalid_payload", "invalid course id");
  checkName(body?.title);
  if (!Array.isArray(body.tutorIds) || !body.tutorIds.every(isValidId)) {
    throw new ChatError("invalid_payload", "tutorIds must be a list of user ids");
  }
}

export function checkPutEnrollment(caller, body) {
  requireAdmin(caller);
  if (!isValidId(body?.userId) || !isValidId(body?.courseId)) {
    throw new ChatError("invalid_payload", "userId and courseId must be valid ids");
  }
}

// POST /api/chats {participantId, courseId}: who is the student and who the tutor.
export function chatSides(caller, body) {
  const participantId = body?.participantId;
  const courseId = body?.courseId;
  if (!isValidId(participantId) || !isValidId(courseId)) {
    throw new ChatError("invalid_payload", "participantId and courseId must be valid ids");
  }
  if (participantId === caller.userId) throw new ChatError("invalid_payload", "a chat needs another participant");
  if (caller.role === "user") return { studentId: caller.userId, tutorId: participantId, courseId };
  if (caller.role === "tutor") return { studentId: participantId, tutorId: caller.userId, courseId };
  throw new ChatError("forbidden", "admins do not take part in chats");
}

export function checkLastSeq(lastSeq) {
  if (!Number.isSafeInteger(lastSeq) || lastSeq < 0) {
    throw new ChatError("invalid_payload", "lastSeq must be a non-negative integer");
  }
}

function requireAdmin(caller) {
  if (caller.role !== "admin") throw new ChatError("forbidden", "the admin API needs an admin token");
}

export function checkName(name) {
  if (typeof name !== "string") throw new ChatError("invalid_payload", "names and titles are text");
  const length = codePoints(name.trim());
  if (length === 0 || length > 200 || /[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    throw new ChatError("invalid_payload", "names and titles are 1..200 characters of text");
  }
}

// 1..max code points after trimming; no control characters but \n and \t.
export function checkContent(content, maxChars) {
  if (typeof content !== "string") throw new ChatError("invalid_payload", "content must be text");
  if (FORBIDDEN_CONTROL.test(content)) throw new ChatError("invalid_payload", "content contains a control character");
  const trimmed = content.trim();
  if (trimmed === "") throw new ChatError("invalid_payload", "content is empty");
  const chars = codePoints(trimmed);
  if (chars > maxChars) throw new ChatError("too_large", `content has ${chars} characters; the limit is ${maxChars}`);
}

// Code points of a string; UTF-16 units only when there is no surrogate pair (the common case).
function codePoints(s) {
  return /[\ud800-\udfff]/.test(s) ? [...s].length : s.length;
}

export function now() {
  return new Date().toISOString();
}
