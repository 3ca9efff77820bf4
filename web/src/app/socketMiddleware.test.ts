// The middleware against a scripted in-memory socket service: the reconnect, resend, expiry
// and read-receipt behaviour that the e2e suite then checks against the real server.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CHAT_ID, STUDENT, TUTOR, chat, message } from '../test/fixtures';
import {
  chatOpened,
  messageSent,
  selectMessages,
  selectPending,
  typingActivity,
} from '../features/chat/chatSlice';
import type { Ack, Message } from '../features/chat/types';
import { ChatError } from '../features/chat/errors';
import { demoModeDetected, hostModeDetected, signedIn } from '../features/session/sessionSlice';
import type { ServerEvent, SocketHandlers, SocketService } from '../services/socket';
import { makeStore } from './store';

type Responder = (payload: Record<string, unknown>) => Ack<object> | Promise<Ack<object>>;

class FakeSocket implements SocketService {
  handlers!: SocketHandlers;
  connected = false;
  everConnected = false;
  emitted: { event: string; payload: Record<string, unknown> }[] = [];
  responders: Record<string, Responder> = {};

  connect(_getToken: () => string | null, handlers: SocketHandlers) {
    this.handlers = handlers;
  }
  reconnect() {}
  disconnect() {
    this.connected = false;
  }
  isConnected() {
    return this.connected;
  }
  async request<T>(event: string, payload: unknown): Promise<Ack<T>> {
    this.emitted.push({ event, payload: payload as Record<string, unknown> });
    if (!this.connected) throw new ChatError('disconnected', 'not connected');
    const responder = this.responders[event] ?? (() => ({ ok: true }));
    return (await responder(payload as Record<string, unknown>)) as Ack<T>;
  }
  notify(event: string, payload: unknown) {
    this.emitted.push({ event, payload: payload as Record<string, unknown> });
  }
  // -- test controls --
  open() {
    this.connected = true;
    this.handlers.onConnect(this.everConnected);
    this.everConnected = true;
  }
  drop(reason = 'transport close') {
    this.connected = false;
    this.handlers.onDisconnect(reason, reason !== 'io server disconnect');
  }
  push(event: ServerEvent, payload: unknown) {
    this.handlers.onEvent(event, payload);
  }
  sent(event: string) {
    return this.emitted.filter((e) => e.event === event).map((e) => e.payload);
  }
}

const flush = () => new Promise((r) => setTimeout(r, 0));

function jsonResponse(body: unknown) {
  return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
}

let chatsAnswer = [chat({ lastSeq: 0 })];

beforeEach(() => {
  chatsAnswer = [chat({ lastSeq: 0 })];
  vi.stubGlobal('fetch', async (url: string) => {
    if (url.startsWith('/api/chats/') && url.includes('/messages')) return jsonResponse({ messages: [], hasMore: false });
    if (url === '/api/chats') return jsonResponse({ chats: chatsAnswer });
    if (url === '/api/users/available-tutors') return jsonResponse({ tutors: [] });
    if (url === '/api/tutors/students') return jsonResponse({ students: [] });
    return new Response('{}', { status: 404 });
  });
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

async function signedInStore(mode: 'demo' | 'host' = 'demo', visible = true) {
  const socket = new FakeSocket();
  const store = makeStore(socket, { isVisible: () => visible, onVisible: () => () => {}, initialChatId: () => null });
  store.dispatch(mode === 'demo' ? demoModeDetected([STUDENT, TUTOR]) : hostModeDetected());
  store.dispatch(signedIn({ user: STUDENT, exp: 9e9 }));
  await flush();
  return { socket, store };
}

describe('socket middleware', () => {
  it('joins an opened chat, then on reconnect re-joins it with its lastSeq, looping while hasMore', async () => {
    const { socket, store } = await signedInStore();
    socket.responders.join_chat = () => ({ ok: true, chat: chat(), missed: [], hasMore: false });
    socket.open();
    store.dispatch(chatOpened(CHAT_ID));
    await flush();
    expect(socket.sent('join_chat')).toEqual([{ chatId: CHAT_ID }]);
    expect(store.getState().chat.connection.joinedRooms).toEqual([CHAT_ID]);

    // Live messages 1..2, then the connection drops while 3..5 are sent.
    socket.push('message_received', { message: message(1) });
    socket.push('message_received', { message: message(2) });
    socket.drop();
    expect(store.getState().chat.connection.reconnecting).toBe(true);

    const pages: Record<number, { missed: Message[]; hasMore: boolean }> = {
      2: { missed: [message(2), message(3), message(4)], hasMore: true }, // 2 again: deduplicated
      4: { missed: [message(5)], hasMore: false },
    };
    socket.responders.join_chat = (p) => ({ ok: true, chat: chat(), ...pages[p.lastSeq as number] });
    socket.emitted = [];
    socket.open();
    await flush();
    await flush();
    expect(socket.sent('join_chat')).toEqual([
      { chatId: CHAT_ID, lastSeq: 2 },
      { chatId: CHAT_ID, lastSeq: 4 },
    ]);
    expect(selectMessages(store.getState(), CHAT_ID).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(store.getState().chat.connection.connected).toBe(true);
  });

  it('keeps a message written offline pending and sends it after reconnect with the same clientMsgId', async () => {
    const { socket, store } = await signedInStore();
    socket.responders.join_chat = () => ({ ok: true, chat: chat(), missed: [], hasMore: false });
    store.dispatch(chatOpened(CHAT_ID));
    const action = store.dispatch(messageSent({ chatId: CHAT_ID, content: 'offline hello', senderId: STUDENT.id }));
    await flush();
    expect(socket.sent('send_message')).toEqual([]);
    expect(selectPending(store.getState(), CHAT_ID)[0].status).toBe('sending');

    socket.responders.send_message = (p) => ({
      ok: true,
      message: message(1, { senderId: STUDENT.id, clientMsgId: p.clientMsgId as string, content: 'offline hello' }),
    });
    socket.open();
    await flush();
    await flush();
    expect(socket.sent('send_message')).toEqual([
      { chatId: CHAT_ID, clientMsgId: action.payload.clientMsgId, content: 'offline hello', type: 'text' },
    ]);
    expect(selectPending(store.getState(), CHAT_ID)).toEqual([]);
    expect(selectMessages(store.getState(), CHAT_ID).map((m) => m.content)).toEqual(['offline hello']);
  });

  it('shows a failed send with a readable error when the server refuses it', async () => {
    const { socket, store } = await signedInStore();
    socket.responders.send_message = () => ({ ok: false, error: { code: 'too_large', message: 'x' } });
    socket.open();
    store.dispatch(messageSent({ chatId: CHAT_ID, content: 'hi', senderId: STUDENT.id }));
    await flush();
    const [p] = selectPending(store.getState(), CHAT_ID);
    expect(p.status).toBe('failed');
    expect(p.error).toMatch(/too long/);
  });

  it('turns a not_enrolled join into the upgrade refusal and stops re-joining that chat', async () => {
    const { socket, store } = await signedInStore();
    socket.responders.join_chat = () => ({ ok: false, error: { code: 'not_enrolled', message: 'no' } });
    socket.open();
    await flush();
    store.dispatch(chatOpened(CHAT_ID));
    await flush();
    expect(store.getState().chat.refusals[CHAT_ID]).toMatchObject({ code: 'not_enrolled' });
    socket.drop();
    socket.emitted = [];
    socket.open();
    await flush();
    expect(socket.sent('join_chat')).toEqual([]);
  });

  it('an error token_expired then a server disconnect ends the session (demo: back to sign-in)', async () => {
    const { socket, store } = await signedInStore('demo');
    socket.open();
    socket.push('error', { code: 'token_expired', message: 'expired' });
    socket.drop('io server disconnect');
    expect(store.getState().session.status).toBe('choosing');
    expect(store.getState().session.notice).toMatch(/expired/);
  });

  it('CONNECT_ERROR token_expired shows the session expired notice in host mode', async () => {
    const { socket, store } = await signedInStore('host');
    socket.handlers.onConnectError('token_expired', false);
    expect(store.getState().session.status).toBe('expired');
  });

  it('a transport error keeps reconnecting instead of ending the session', async () => {
    const { socket, store } = await signedInStore();
    socket.open();
    socket.drop('transport close');
    socket.handlers.onConnectError(undefined, true);
    expect(store.getState().session.status).toBe('signedIn');
    expect(store.getState().chat.connection.status).toBe('reconnecting');
  });

  it('marks the visible active chat read up to its last seq, once', async () => {
    const { socket, store } = await signedInStore();
    socket.responders.join_chat = () => ({ ok: true, chat: chat(), missed: [], hasMore: false });
    socket.open();
    store.dispatch(chatOpened(CHAT_ID));
    await flush();
    socket.push('message_received', { message: message(1) });
    socket.push('message_received', { message: message(2) });
    await flush();
    expect(socket.sent('mark_read')).toEqual([
      { chatId: CHAT_ID, seq: 1 },
      { chatId: CHAT_ID, seq: 2 },
    ]);
    expect(store.getState().chat.chats.entities[CHAT_ID].unread).toBe(0);
  });

  it('does not mark read while the page is hidden', async () => {
    const { socket, store } = await signedInStore('demo', false);
    socket.responders.join_chat = () => ({ ok: true, chat: chat(), missed: [], hasMore: false });
    socket.open();
    store.dispatch(chatOpened(CHAT_ID));
    await flush();
    socket.push('message_received', { message: message(1) });
    await flush();
    expect(socket.sent('mark_read')).toEqual([]);
    expect(store.getState().chat.chats.entities[CHAT_ID].unread).toBe(1);
  });

  it('sends typing_start once while typing and typing_stop when the message goes out', async () => {
    const { socket, store } = await signedInStore();
    socket.open();
    store.dispatch(typingActivity(CHAT_ID));
    store.dispatch(typingActivity(CHAT_ID));
    store.dispatch(messageSent({ chatId: CHAT_ID, content: 'x', senderId: STUDENT.id }));
    expect(socket.emitted.map((e) => e.event).filter((e) => e.startsWith('typing'))).toEqual([
      'typing_start',
      'typing_stop',
    ]);
  });

  it('refetches the chat list when a message arrives for a chat it does not know', async () => {
    const { socket, store } = await signedInStore();
    socket.open();
    chatsAnswer = [chat(), chat({ id: 'cccccccccccccccccccccccc' })];
    socket.push('message_received', { message: message(1, { chatId: 'cccccccccccccccccccccccc' }) });
    await new Promise((r) => setTimeout(r, 300));
    expect(store.getState().chat.chats.ids).toContain('cccccccccccccccccccccccc');
  });
});
