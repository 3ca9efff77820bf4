// The project's required compatibility test, with the OFFICIAL socket.io-client v4:
// "two students on two devices each and a tutor exchange messages, typing, read receipts,
//  and an expired token gets its CONNECT_ERROR code".

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, setupCourse, createChat, connect, connectExpectError, emitAck, mint,
  waitFor, mark, eventsSince, sleep, shape, hasKeys, reportExtraFields, HEX24, RFC3339_MS_Z,
} from './helpers.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { reportExtraFields(); await srv?.stop(); });

const QUIET_MS = 400; // how long we listen for events that must NOT arrive

function assertMessageShape(m, { chatId, seq, senderId, senderType, content, clientMsgId }) {
  assert.equal(typeof m, 'object');
  assert.match(m.id, HEX24, 'message id is a 24-char lowercase hex ObjectId');
  assert.equal(m.chatId, chatId);
  assert.equal(m.seq, seq);
  assert.equal(m.senderId, senderId);
  assert.equal(m.senderType, senderType);
  assert.equal(m.type, 'text');
  assert.equal(m.content, content);
  assert.equal(m.clientMsgId, clientMsgId);
  assert.match(m.createdAt, RFC3339_MS_Z, 'createdAt is RFC 3339 UTC with milliseconds');
}

test('two students on two devices each and a tutor: messages, typing, read receipts, CONNECT_ERROR codes', async (t) => {
  const w = await setupCourse(srv, { students: 2, tutors: 1 });
  const [A, B] = w.students;
  const [T] = w.tutors;

  const { chat: chatAT } = await createChat(srv, A.token, T.id, w.courseId);
  const { chat: chatBT } = await createChat(srv, B.token, T.id, w.courseId);
  assert.match(chatAT.id, HEX24);
  assert.match(chatBT.id, HEX24);
  assert.notEqual(chatAT.id, chatBT.id);

  const A1 = await connect(srv, A.token);
  const A2 = await connect(srv, A.token);
  const B1 = await connect(srv, B.token);
  const B2 = await connect(srv, B.token);
  const T1 = await connect(srv, T.token);
  const all = { A1, A2, B1, B2, T1 };

  // Everyone joins the chats they are in.
  for (const [sock, chatId] of [[A1, chatAT.id], [A2, chatAT.id], [B1, chatBT.id], [B2, chatBT.id], [T1, chatAT.id], [T1, chatBT.id]]) {
    const ack = await emitAck(sock, 'join_chat', { chatId });
    assert.equal(ack.ok, true, `join_chat ack: ${JSON.stringify(ack)}`);
    assert.equal(ack.chat.id, chatId);
    assert.deepEqual(ack.missed, []);
    assert.equal(ack.hasMore, false);
  }

  // One exchange: `from` sends in chatId; `expect` (names) get message_received, all others nothing.
  async function exchange(step, fromName, chatId, sender, seq, receivers) {
    const from = all[fromName];
    const marks = Object.fromEntries(Object.entries(all).map(([k, s]) => [k, mark(s)]));
    const clientMsgId = `compat-${step}`;
    const content = `message ${step} from ${sender.id}`;
    const ack = await emitAck(from, 'send_message', { chatId, clientMsgId, content });
    assert.equal(ack.ok, true, `[${step}] ack ok: ${JSON.stringify(ack)}`);
    assertMessageShape(ack.message, {
      chatId, seq, senderId: sender.id, senderType: sender.role === 'tutor' ? 'tutor' : 'user', content, clientMsgId,
    });
    for (const name of receivers) {
      const got = await waitFor(all[name], 'message_received', (d) => d?.message?.clientMsgId === clientMsgId && d.message.chatId === chatId, 3000, { from: marks[name] });
      assert.deepEqual(got.message, ack.message, `[${step}] ${name} receives the same message as the ack`);
    }
    await sleep(QUIET_MS);
    for (const [name, s] of Object.entries(all)) {
      const n = eventsSince(s, marks[name], 'message_received').length;
      const expected = receivers.includes(name) ? 1 : 0;
      assert.equal(n, expected, `[${step}] ${name} got message_received ${n} times, expected ${expected} (sender: ${fromName})`);
    }
    return ack.message;
  }

  await t.test('messages each way carry seq 1,2,3 and reach every socket of both participants except the sender', async () => {
    await exchange('a1-to-t', 'A1', chatAT.id, A, 1, ['A2', 'T1']);
    await exchange('t-to-a', 'T1', chatAT.id, T, 2, ['A1', 'A2']);
    await exchange('a2-to-t', 'A2', chatAT.id, A, 3, ['A1', 'T1']);
    await exchange('b1-to-t', 'B1', chatBT.id, B, 1, ['B2', 'T1']);
    await exchange('t-to-b', 'T1', chatBT.id, T, 2, ['B1', 'B2']);
    await exchange('b2-to-t', 'B2', chatBT.id, B, 3, ['B1', 'T1']);
  });

  await t.test('typing_start / typing_stop reach the other sockets in the room as typing_indicator', async () => {
    for (const [fromName, chatId, user, others, outsiders] of [
      ['A1', chatAT.id, A, ['A2', 'T1'], ['B1', 'B2']],
      ['T1', chatBT.id, T, ['B1', 'B2'], ['A1', 'A2']],
    ]) {
      for (const [event, isTyping] of [['typing_start', true], ['typing_stop', false]]) {
        const marks = Object.fromEntries(Object.entries(all).map(([k, s]) => [k, mark(s)]));
        all[fromName].emit(event, { chatId });
        for (const name of others) {
          const got = await waitFor(all[name], 'typing_indicator', (d) => d?.chatId === chatId && d.userId === user.id, 3000, { from: marks[name] });
          shape(got, { chatId, userId: user.id, isTyping }, 'typing_indicator');
        }
        await sleep(QUIET_MS);
        assert.deepEqual(eventsSince(all[fromName], marks[fromName], 'typing_indicator'), [], `${fromName} must not get its own ${event}`);
        for (const name of outsiders) {
          assert.deepEqual(eventsSince(all[name], marks[name], 'typing_indicator'), [], `${name} is not in the chat and must not see ${event}`);
        }
      }
    }
  });

  await t.test('mark_read produces message_read on every socket of both participants', async () => {
    for (const [fromName, chatId, user, seq, participants, outsiders] of [
      ['T1', chatAT.id, T, 3, ['A1', 'A2', 'T1'], ['B1', 'B2']],
      ['B2', chatBT.id, B, 3, ['B1', 'B2', 'T1'], ['A1', 'A2']],
    ]) {
      // T marks chatAT up to 3. B's cursor in chatBT is already at 3 (B2 sent seq 3, and sending moves
      // the sender's cursor), so T first sends seq 4 there and B2 marks that read.
      let target = seq;
      if (fromName === 'B2') {
        const ack = await emitAck(T1, 'send_message', { chatId, clientMsgId: 'compat-t-to-b-2', content: 'one more' });
        assert.equal(ack.ok, true);
        target = ack.message.seq; // 4
        await waitFor(B2, 'message_received', (d) => d?.message?.clientMsgId === 'compat-t-to-b-2', 3000, { from: 0 });
      }
      const marks = Object.fromEntries(Object.entries(all).map(([k, s]) => [k, mark(s)]));
      const ack = await emitAck(all[fromName], 'mark_read', { chatId, seq: target });
      shape(ack, { ok: true }, 'mark_read ack');
      for (const name of participants) {
        const got = await waitFor(all[name], 'message_read', (d) => d?.chatId === chatId && d.userId === user.id, 3000, { from: marks[name] });
        assert.equal(got.chatId, chatId);
        assert.equal(got.userId, user.id);
        assert.equal(got.seq, target);
        assert.match(got.readAt, RFC3339_MS_Z, 'readAt is RFC 3339 UTC with milliseconds');
        hasKeys(got, ['chatId', 'userId', 'seq', 'readAt'], 'message_read');
      }
      await sleep(QUIET_MS);
      for (const name of participants) {
        assert.equal(eventsSince(all[name], marks[name], 'message_read').length, 1, `${name} gets message_read exactly once`);
      }
      for (const name of outsiders) {
        assert.deepEqual(eventsSince(all[name], marks[name], 'message_read'), [], `${name} is not in the chat`);
      }
    }
  });

  await t.test('an expired token gets CONNECT_ERROR token_expired; a garbage token invalid_token', async () => {
    const expired = mint(srv, A.id, 'user', { exp: Math.floor(Date.now() / 1000) - 3600 });
    const r1 = await connectExpectError(srv, expired);
    assert.equal(r1.err.data?.code, 'token_expired', `connect_error data: ${JSON.stringify(r1.err.data)} message: ${r1.err.message}`);
    assert.equal(typeof r1.err.message, 'string');
    assert.ok(r1.err.message.length > 0);

    const r2 = await connectExpectError(srv, 'this-is-not-a-jwt');
    assert.equal(r2.err.data?.code, 'invalid_token', `connect_error data: ${JSON.stringify(r2.err.data)} message: ${r2.err.message}`);
    assert.ok(r2.err.message.length > 0);
  });
});
