// Wires the Socket.IO service (services/socket.ts) to the store. Socket events become actions;
// actions that need the socket (open a chat, send, retry, type, refresh the token) become
// emits. This is also where the connection lifecycle lives: re-joining every joined chat with
// its lastSeq after a reconnect (looping while `hasMore`), re-sending unacked messages (safe:
// clientMsgId makes a send idempotent), marking the visible chat read, and telling a lost
// connection from an expired session.

import type { Middleware } from '@reduxjs/toolkit';
import {
  chatOpened,
  chatRefused,
  chatUpserted,
  connectionChanged,
  errorReported,
  markedRead,
  messageAcked,
  messageFailed,
  messageReceived,
  messageRetried,
  messageSent,
  messagesReceived,
  pageVisible,
  presenceChanged,
  readReceived,
  reconnectRequested,
  roomJoined,
  selectMessages,
  typingActivity,
  typingChanged,
  typingStopped,
  type ChatState,
} from '../features/chat/chatSlice';
import { fetchChats, fetchContacts, loadLatest, startChat } from '../features/chat/chatThunks';
import { ChatError, errorCode } from '../features/chat/errors';
import { maxSeq } from '../features/chat/messages';
import { isChatRefusal } from '../features/chat/permissions';
import type {
  JoinAck,
  Message,
  MessageReadEvent,
  SendAck,
  TypingIndicatorEvent,
  WireError,
} from '../features/chat/types';
import {
  sessionExpired,
  sessionRefused,
  signedIn,
  signedOut,
  tokenRefreshed,
  type SessionState,
} from '../features/session/sessionSlice';
import { requestHostToken } from '../services/hostToken';
import { createSocketService, type ServerEvent, type SocketHandlers, type SocketService } from '../services/socket';
import { getToken } from '../services/token';

type State = { chat: ChatState; session: SessionState };

/** Page visibility, injectable so the middleware runs under unit tests without a DOM. */
export interface PageEnv {
  isVisible(): boolean;
  /** Calls back when the page becomes visible or focused; returns the unsubscribe function. */
  onVisible(cb: () => void): () => void;
  /** `?chat=<id>` deep link, opened once the chat list is in. */
  initialChatId(): string | null;
}

export const browserEnv: PageEnv = {
  isVisible: () => typeof document === 'undefined' || document.visibilityState === 'visible',
  onVisible(cb) {
    if (typeof document === 'undefined') return () => {};
    const onChange = () => {
      if (document.visibilityState === 'visible') cb();
    };
    document.addEventListener('visibilitychange', onChange);
    window.addEventListener('focus', cb);
    return () => {
      document.removeEventListener('visibilitychange', onChange);
      window.removeEventListener('focus', cb);
    };
  },
  initialChatId: () =>
    typeof window === 'undefined' ? null : new URLSearchParams(window.location.search).get('chat'),
};

/** Timeouts for acks: a send waits for durability on the server, so it gets longer. */
const JOIN_TIMEOUT_MS = 10_000;
const SEND_TIMEOUT_MS = 15_000;
/** A typing_start is renewed this often while the user keeps typing (the server expires it at 6 s). */
const TYPING_RENEW_MS = 4_000;
/** typing_stop after this long without a keystroke. */
const TYPING_IDLE_MS = 3_000;
/** Safety bound on the join loop (500 missed messages per round). */
const MAX_JOIN_ROUNDS = 200;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** For values typed by the contract but coming off the network: present and an object. */
function present<T>(v: T): v is NonNullable<T> {
  return typeof v === 'object' && v !== null;
}

export function createSocketMiddleware(
  service: SocketService = createSocketService(),
  env: PageEnv = browserEnv,
): Middleware<object, State> {
  return (store) => {
    const dispatch = store.dispatch as (action: unknown) => unknown;
    const getState = store.getState;

    /** Chats opened this session: the rooms to be in, on this and every later connection. */
    const wanted = new Set<string>();
    /** Chats joined on the current connection. */
    const joinedHere = new Set<string>();
    const joining = new Set<string>();
    /** clientMsgIds whose send_message is waiting for its ack. */
    const inFlight = new Set<string>();
    /** The seq of the mark_read in flight per chat, so each seq is sent once. */
    const markInFlight = new Map<string, number>();
    const typing = new Map<string, { startedAt: number; idle: ReturnType<typeof setTimeout> }>();
    /** An `error` event said token_expired; the server's DISCONNECT follows. */
    let expiring = false;
    let expiryFallback: ReturnType<typeof setTimeout> | null = null;
    /** Manual reconnects after a server DISCONNECT that was not an expiry, to avoid a loop. */
    let serverKicks: number[] = [];
    let retryTimer: ReturnType<typeof setTimeout> | null = null;
    let chatsRefetch: ReturnType<typeof setTimeout> | null = null;
    let unsubscribeVisible: (() => void) | null = null;
    /** Host mode: asks the platform for a fresh token a minute before this one expires. */
    let tokenRequestTimer: ReturnType<typeof setTimeout> | null = null;
    let deepLink: string | null = null;
    let running = false;

    const chatState = () => getState().chat;
    const connected = () => chatState().connection.connected && service.isConnected();

    // -- session lifecycle ---------------------------------------------------------------------

    function start() {
      stop();
      running = true;
      const { session } = getState();
      deepLink = env.initialChatId();
      dispatch(connectionChanged('connecting'));
      service.connect(getToken, handlers);
      dispatch(fetchChats());
      if (session.user) dispatch(fetchContacts(session.user.role));
      unsubscribeVisible = env.onVisible(() => dispatch(pageVisible()));
      scheduleTokenRequest();
    }

    function scheduleTokenRequest() {
      if (tokenRequestTimer) clearTimeout(tokenRequestTimer);
      tokenRequestTimer = null;
      const { mode, exp } = getState().session;
      if (mode !== 'host' || !exp) return;
      const delay = exp * 1000 - Date.now() - 60_000;
      if (delay > 2 ** 31 - 1) return; // beyond setTimeout's range; a later refresh reschedules
      tokenRequestTimer = setTimeout(() => {
        tokenRequestTimer = null;
        if (running) requestHostToken('refresh');
      }, Math.max(delay, 0));
    }

    function stop() {
      running = false;
      service.disconnect();
      wanted.clear();
      joinedHere.clear();
      joining.clear();
      inFlight.clear();
      markInFlight.clear();
      for (const t of typing.values()) clearTimeout(t.idle);
      typing.clear();
      expiring = false;
      for (const timer of [expiryFallback, retryTimer, chatsRefetch, tokenRequestTimer]) {
        if (timer) clearTimeout(timer);
      }
      expiryFallback = retryTimer = chatsRefetch = tokenRequestTimer = null;
      unsubscribeVisible?.();
      unsubscribeVisible = null;
    }

    function expire() {
      const mode = getState().session.mode;
      stop();
      dispatch(sessionExpired());
      if (mode === 'host') requestHostToken('expired');
    }

    // -- socket events -------------------------------------------------------------------------

    const handlers: SocketHandlers = {
      onConnect(recovered) {
        if (!running) return;
        expiring = false;
        joinedHere.clear();
        dispatch(connectionChanged('connected'));
        if (recovered) {
          // The list's last messages, unread counts and presence moved while we were away.
          dispatch(fetchChats());
          const user = getState().session.user;
          if (user) dispatch(fetchContacts(user.role));
        }
        const rooms = new Set([...chatState().connection.joinedRooms, ...wanted]);
        void Promise.all([...rooms].map((chatId) => join(chatId))).then(() => resendAll());
      },

      onDisconnect(reason, willReconnect) {
        joinedHere.clear();
        for (const t of typing.values()) clearTimeout(t.idle);
        typing.clear();
        if (!running || reason === 'io client disconnect') return;
        if (reason === 'io server disconnect') {
          if (expiring) {
            expire();
            return;
          }
          // The server ended the session without saying why: try again, a few times at most.
          const now = Date.now();
          serverKicks = serverKicks.filter((t) => now - t < 60_000);
          serverKicks.push(now);
          if (serverKicks.length > 3) {
            dispatch(connectionChanged('disconnected'));
            return;
          }
          dispatch(connectionChanged('reconnecting'));
          service.reconnect();
          return;
        }
        dispatch(connectionChanged(willReconnect ? 'reconnecting' : 'disconnected'));
      },

      onConnectError(code, willReconnect) {
        if (!running) return;
        if (code === 'token_expired') {
          expire();
          return;
        }
        if (code === 'invalid_token' || code === 'unauthorized') {
          stop();
          dispatch(sessionRefused());
          if (getState().session.mode === 'host') requestHostToken('invalid');
          return;
        }
        const status = chatState().connection.status;
        if (willReconnect) {
          dispatch(connectionChanged(status === 'connecting' ? 'connecting' : 'reconnecting'));
          return;
        }
        // Refused for another reason (e.g. the server is draining): retry by hand, later.
        dispatch(connectionChanged('reconnecting'));
        retryTimer = setTimeout(() => {
          retryTimer = null;
          if (running) service.reconnect();
        }, 3_000);
      },

      onEvent(event: ServerEvent, payload: unknown) {
        if (!running || !isObject(payload)) return;
        switch (event) {
          case 'message_received': {
            const message = payload.message as Message | undefined;
            if (!isObject(message) || typeof message.chatId !== 'string') return;
            dispatch(messageReceived(message));
            if (!chatState().chats.entities[message.chatId]) refetchChatsSoon();
            return;
          }
          case 'message_read':
            dispatch(readReceived(payload as unknown as MessageReadEvent));
            return;
          case 'typing_indicator':
            dispatch(typingChanged(payload as unknown as TypingIndicatorEvent));
            return;
          case 'user_online':
            if (typeof payload.userId === 'string') dispatch(presenceChanged({ userId: payload.userId, online: true }));
            return;
          case 'user_offline':
            if (typeof payload.userId === 'string') dispatch(presenceChanged({ userId: payload.userId, online: false }));
            return;
          case 'error': {
            const err = payload as unknown as WireError;
            if (err.code === 'token_expired') {
              expiring = true;
              // Should the DISCONNECT never come, the session is over all the same.
              expiryFallback ??= setTimeout(() => {
                expiryFallback = null;
                if (expiring && running) expire();
              }, 5_000);
              return;
            }
            // Typing is best-effort; its refusals (e.g. rate limits) are not worth a toast.
            if (err.event === 'typing_start' || err.event === 'typing_stop') return;
            dispatch(errorReported(err.code));
            return;
          }
        }
      },
    };

    function refetchChatsSoon() {
      if (chatsRefetch) return;
      chatsRefetch = setTimeout(() => {
        chatsRefetch = null;
        if (running) dispatch(fetchChats());
      }, 200);
    }

    // -- joining -------------------------------------------------------------------------------

    /** join_chat with the highest seq held, looping while the server says `hasMore`. */
    async function join(chatId: string): Promise<void> {
      if (joining.has(chatId) || joinedHere.has(chatId) || !connected()) return;
      joining.add(chatId);
      try {
        let lastSeq = maxSeq(selectMessages(getState(), chatId));
        for (let round = 0; round < MAX_JOIN_ROUNDS; round++) {
          const payload = lastSeq > 0 ? { chatId, lastSeq } : { chatId };
          const ack = await service.request<JoinAck>('join_chat', payload, JOIN_TIMEOUT_MS);
          if (!running) return;
          if (!present(ack)) throw new ChatError('unknown', 'malformed ack');
          if (!ack.ok) {
            const code = ack.error?.code ?? 'unknown';
            if (isChatRefusal(code) || code === 'not_found') {
              wanted.delete(chatId);
              dispatch(chatRefused({ chatId, code }));
            } else {
              dispatch(errorReported(code));
            }
            return;
          }
          if (present(ack.chat)) dispatch(chatUpserted(ack.chat));
          const missed = Array.isArray(ack.missed) ? ack.missed : [];
          if (missed.length > 0) dispatch(messagesReceived({ chatId, messages: missed }));
          joinedHere.add(chatId);
          dispatch(roomJoined(chatId));
          if (!ack.hasMore || missed.length === 0) break;
          lastSeq = Math.max(lastSeq, maxSeq(missed));
        }
        const history = chatState().historyByChat[chatId];
        if (!history?.loaded) dispatch(loadLatest(chatId));
      } catch (e) {
        // Lost connection: the next connect joins again. Anything else is worth saying.
        if (errorCode(e) !== 'disconnected' && running) dispatch(errorReported(errorCode(e)));
      } finally {
        joining.delete(chatId);
      }
    }

    function openChat(chatId: string) {
      wanted.add(chatId);
      if (chatState().refusals[chatId]) return;
      if (connected()) void join(chatId).then(() => resendChat(chatId));
      // History does not depend on the socket: start it now.
      if (!chatState().historyByChat[chatId]?.loaded) dispatch(loadLatest(chatId));
    }

    // -- sending -------------------------------------------------------------------------------

    function send(chatId: string, clientMsgId: string) {
      const pending = chatState().pendingByChat[chatId]?.find((p) => p.clientMsgId === clientMsgId);
      if (!pending || pending.status !== 'sending' || inFlight.has(clientMsgId)) return;
      // Offline: it stays "sending" and goes out right after the next connect's joins.
      if (!connected()) return;
      inFlight.add(clientMsgId);
      service
        .request<SendAck>(
          'send_message',
          { chatId, clientMsgId, content: pending.content, type: 'text' },
          SEND_TIMEOUT_MS,
        )
        .then((ack) => {
          if (present(ack) && ack.ok && present(ack.message)) {
            dispatch(messageAcked({ chatId, clientMsgId, message: ack.message }));
          } else {
            const code = present(ack) && !ack.ok ? (ack.error?.code ?? 'unknown') : 'unknown';
            dispatch(messageFailed({ chatId, clientMsgId, code }));
          }
        })
        .catch((e) => {
          if (errorCode(e) === 'disconnected') return; // re-sent after reconnect, same clientMsgId
          dispatch(messageFailed({ chatId, clientMsgId, code: errorCode(e) }));
        })
        .finally(() => inFlight.delete(clientMsgId));
    }

    function resendChat(chatId: string) {
      for (const p of chatState().pendingByChat[chatId] ?? []) {
        if (p.status === 'sending') send(chatId, p.clientMsgId);
      }
    }

    function resendAll() {
      if (!running) return;
      for (const chatId of Object.keys(chatState().pendingByChat)) {
        if (!chatState().refusals[chatId]) resendChat(chatId);
      }
    }

    // -- typing --------------------------------------------------------------------------------

    function typed(chatId: string) {
      if (!connected() || chatState().refusals[chatId]) return;
      const now = Date.now();
      const t = typing.get(chatId);
      if (t) clearTimeout(t.idle);
      const renew = !t || now - t.startedAt > TYPING_RENEW_MS;
      if (renew) service.notify('typing_start', { chatId });
      const startedAt = renew ? now : t.startedAt;
      typing.set(chatId, { startedAt, idle: setTimeout(() => stopTyping(chatId), TYPING_IDLE_MS) });
    }

    function stopTyping(chatId: string) {
      const t = typing.get(chatId);
      if (!t) return;
      clearTimeout(t.idle);
      typing.delete(chatId);
      service.notify('typing_stop', { chatId });
    }

    // -- read cursor ---------------------------------------------------------------------------

    /** Marks the active chat read up to its last seq when the user can actually see it. */
    function markVisibleChatRead() {
      const chat = chatState();
      const chatId = chat.activeChatId;
      if (!chatId || !running || !connected() || !env.isVisible()) return;
      if (chat.refusals[chatId] || !joinedHere.has(chatId)) return;
      const summary = chat.chats.entities[chatId];
      if (!summary) return;
      const seq = Math.max(summary.lastSeq, maxSeq(selectMessages(getState(), chatId)));
      if (seq <= summary.readSeq || (markInFlight.get(chatId) ?? 0) >= seq) return;
      markInFlight.set(chatId, seq);
      service
        .request<object>('mark_read', { chatId, seq })
        .then((ack) => {
          if (present(ack) && ack.ok) dispatch(markedRead({ chatId, seq }));
        })
        .catch(() => undefined)
        .finally(() => {
          if (markInFlight.get(chatId) === seq) markInFlight.delete(chatId);
        });
    }

    function refreshToken() {
      const token = getToken();
      if (!token || !connected()) return;
      service
        .request<{ exp: number }>('refresh_token', { token })
        .then((ack) => {
          if (present(ack) && ack.ok) expiring = false;
        })
        .catch(() => undefined);
    }

    // -- actions -------------------------------------------------------------------------------

    return (next) => (action) => {
      const result = next(action);
      if (signedIn.match(action)) {
        start();
      } else if (signedOut.match(action) || sessionExpired.match(action) || sessionRefused.match(action)) {
        stop();
      } else if (tokenRefreshed.match(action)) {
        refreshToken();
        scheduleTokenRequest();
      } else if (chatOpened.match(action)) {
        openChat(action.payload);
      } else if (startChat.fulfilled.match(action)) {
        openChat(action.payload.id);
      } else if (messageSent.match(action)) {
        stopTyping(action.payload.chatId);
        send(action.payload.chatId, action.payload.clientMsgId);
      } else if (messageRetried.match(action)) {
        send(action.payload.chatId, action.payload.clientMsgId);
      } else if (typingActivity.match(action)) {
        typed(action.payload);
      } else if (typingStopped.match(action)) {
        stopTyping(action.payload);
      } else if (reconnectRequested.match(action) && running) {
        serverKicks = [];
        dispatch(connectionChanged('reconnecting'));
        service.reconnect();
      } else if (fetchChats.fulfilled.match(action) && deepLink) {
        const id = deepLink;
        deepLink = null;
        if (chatState().chats.entities[id] && !chatState().activeChatId) dispatch(chatOpened(id));
      }
      if (running) markVisibleChatRead();
      return result;
    };
  };
}
