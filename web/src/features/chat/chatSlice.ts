// The chat feature's state: the chat list, the active chat, messages by chat id (an entity
// adapter per chat keyed by seq, so (chatId, seq) is unique by construction), this client's
// optimistic sends, read cursors, presence, typing and the socket connection. Reducers are
// pure; the socket is driven from app/socketMiddleware.ts, REST from chatThunks.ts.
// Selectors are at the bottom of this file.

import {
  createAction,
  createEntityAdapter,
  createSelector,
  createSlice,
  nanoid,
  type EntityState,
  type PayloadAction,
} from '@reduxjs/toolkit';
import { signedIn, signedOut, sessionExpired, sessionRefused } from '../session/sessionSlice';
import { fetchChats, fetchContacts, loadLatest, loadOlder, startChat } from './chatThunks';
import { readableError } from './errors';
import { buildTimeline, otherReadSeq, seenSeq, unreadAfter } from './messages';
import { counterpart, isChatRefusal } from './permissions';
import type {
  Chat,
  Contact,
  CourseRef,
  Message,
  MessageReadEvent,
  PendingMessage,
  TypingIndicatorEvent,
} from './types';

// ---------------------------------------------------------------------------------------------
// State

const recency = (c: Chat) => Date.parse(c.lastMessage?.createdAt ?? c.updatedAt) || 0;

export const chatsAdapter = createEntityAdapter<Chat>({
  // Most recent first; ties broken by id so the order is stable.
  sortComparer: (a, b) => recency(b) - recency(a) || (a.id < b.id ? -1 : 1),
});

export const messagesAdapter = createEntityAdapter<Message, number>({
  selectId: (m) => m.seq,
  sortComparer: (a, b) => a.seq - b.seq,
});

export interface HistoryState {
  /** The newest page has been fetched (older pages come on scroll). */
  loaded: boolean;
  loading: boolean;
  /** Older messages exist on the server. */
  hasMore: boolean;
}

/** Why a chat (or a chat about to be created) cannot be written to: drives the upgrade prompt. */
export interface Refusal {
  code: string;
  course: CourseRef | null;
  message: string;
}

export type ConnectionStatus = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

export interface ConnectionState {
  status: ConnectionStatus;
  connected: boolean;
  reconnecting: boolean;
  /** Chats this client has joined; all of them are re-joined with their lastSeq on reconnect. */
  joinedRooms: string[];
}

export interface ChatState {
  /** The signed-in user's id, so reducers can tell own messages from the other side's. */
  meId: string | null;
  chats: EntityState<Chat, string>;
  chatsLoaded: boolean;
  activeChatId: string | null;
  messagesByChat: Record<string, EntityState<Message, number>>;
  /** This client's sends awaiting an ack (or failed), in the order they were written. */
  pendingByChat: Record<string, PendingMessage[]>;
  historyByChat: Record<string, HistoryState>;
  /** Read cursors announced by message_read, by chat then user. */
  readByChat: Record<string, Record<string, number>>;
  /** Live presence from user_online / user_offline, over the `online` flags of REST answers. */
  onlineUsers: Record<string, boolean>;
  typingByChat: Record<string, string[]>;
  contacts: Contact[];
  contactsLoaded: boolean;
  refusals: Record<string, Refusal>;
  /** A chat creation the server refused (e.g. the student does not own the course). */
  startRefusal: Refusal | null;
  loading: { chats: boolean; contacts: boolean; startChat: boolean };
  /** A readable error for the toast; never a raw code. */
  error: string | null;
  connection: ConnectionState;
}

export const initialState: ChatState = {
  meId: null,
  chats: chatsAdapter.getInitialState(),
  chatsLoaded: false,
  activeChatId: null,
  messagesByChat: {},
  pendingByChat: {},
  historyByChat: {},
  readByChat: {},
  onlineUsers: {},
  typingByChat: {},
  contacts: [],
  contactsLoaded: false,
  refusals: {},
  startRefusal: null,
  loading: { chats: false, contacts: false, startChat: false },
  error: null,
  connection: { status: 'idle', connected: false, reconnecting: false, joinedRooms: [] },
};

// ---------------------------------------------------------------------------------------------
// Reducer helpers (mutate the draft)

function historyOf(state: ChatState, chatId: string): HistoryState {
  return (state.historyByChat[chatId] ??= { loaded: false, loading: false, hasMore: false });
}

function loadedMessages(state: ChatState, chatId: string): Message[] {
  const m = state.messagesByChat[chatId];
  return m ? messagesAdapter.getSelectors().selectAll(m) : [];
}

/** Merges a fresh chat summary without letting a stale REST answer move anything backwards. */
function upsertChat(state: ChatState, incoming: Chat) {
  const existing = state.chats.entities[incoming.id];
  const merged: Chat = { ...incoming };
  if (existing && existing.lastSeq > incoming.lastSeq) {
    merged.lastSeq = existing.lastSeq;
    merged.lastMessage = existing.lastMessage;
    merged.updatedAt = existing.updatedAt;
    merged.unread = existing.unread;
  }
  if (existing && existing.readSeq > merged.readSeq) merged.readSeq = existing.readSeq;
  if (merged.readSeq >= merged.lastSeq) merged.unread = 0;
  chatsAdapter.setOne(state.chats, merged);
  const cursors = (state.readByChat[incoming.id] ??= {});
  for (const p of incoming.participants) {
    if (!(p.id in state.onlineUsers)) state.onlineUsers[p.id] = p.online;
    if (typeof p.readSeq === 'number') cursors[p.id] = Math.max(cursors[p.id] ?? 0, p.readSeq);
  }
}

/**
 * Adds confirmed messages of one chat: dedup by seq, reconcile own pending sends by
 * clientMsgId, advance the chat summary (last message, lastSeq, unread, own read cursor).
 */
function addMessages(state: ChatState, chatId: string, incoming: readonly Message[]) {
  if (incoming.length === 0) return;
  const sorted = [...incoming].filter((m) => m.chatId === chatId).sort((a, b) => a.seq - b.seq);
  // Assign the result: an adapter updater mutates a draft in place but returns a new object
  // when given a plain one (the fresh initial state of a chat seen for the first time).
  state.messagesByChat[chatId] = messagesAdapter.upsertMany(
    state.messagesByChat[chatId] ?? messagesAdapter.getInitialState(),
    sorted,
  );

  const me = state.meId;
  const pending = state.pendingByChat[chatId];
  if (pending && me) {
    const acked = new Set(sorted.filter((m) => m.senderId === me).map((m) => m.clientMsgId));
    state.pendingByChat[chatId] = pending.filter((p) => !acked.has(p.clientMsgId));
  }

  const chat = state.chats.entities[chatId];
  if (chat) {
    for (const m of sorted) {
      if (m.seq <= chat.lastSeq) continue;
      chat.lastSeq = m.seq;
      chat.lastMessage = m;
      chat.updatedAt = m.createdAt;
      if (m.senderId === me) {
        // Sending moves the sender's read cursor to the new seq (silently, on every device).
        chat.readSeq = Math.max(chat.readSeq, m.seq);
        chat.unread = 0;
      } else if (m.seq > chat.readSeq) {
        chat.unread += 1;
      }
    }
    // Re-sort: setOne with the same object keeps the adapter's sorted ids in order.
    chatsAdapter.setOne(state.chats, { ...chat });
  }

  // A message from someone ends their typing indicator.
  const typing = state.typingByChat[chatId];
  if (typing) {
    const senders = new Set(sorted.map((m) => m.senderId));
    state.typingByChat[chatId] = typing.filter((u) => !senders.has(u));
  }
}

function applyRead(state: ChatState, chatId: string, userId: string, seq: number) {
  const cursors = (state.readByChat[chatId] ??= {});
  cursors[userId] = Math.max(cursors[userId] ?? 0, seq);
  const chat = state.chats.entities[chatId];
  if (chat && userId === state.meId && seq > chat.readSeq) {
    chat.unread = unreadAfter(loadedMessages(state, chatId), userId, seq, chat.lastSeq, chat.unread);
    chat.readSeq = seq;
  }
}

function refuse(state: ChatState, chatId: string, code: string) {
  const chat = state.chats.entities[chatId];
  state.refusals[chatId] = { code, course: chat?.course ?? null, message: readableError(code) };
  state.connection.joinedRooms = state.connection.joinedRooms.filter((id) => id !== chatId);
}

// ---------------------------------------------------------------------------------------------
// Commands handled only by the socket middleware (no state change of their own)

/** The user typed in the composer of this chat. */
export const typingActivity = createAction<string>('chat/typingActivity');
/** The composer lost focus or was cleared. */
export const typingStopped = createAction<string>('chat/typingStopped');
/** The page became visible or focused again: a chance to mark the active chat read. */
export const pageVisible = createAction('chat/pageVisible');
/** The user asked to reconnect after the connection gave up. */
export const reconnectRequested = createAction('chat/reconnectRequested');

// ---------------------------------------------------------------------------------------------
// Slice

const chatSlice = createSlice({
  name: 'chat',
  initialState,
  reducers: {
    chatOpened(state, action: PayloadAction<string>) {
      state.activeChatId = action.payload;
      state.startRefusal = null;
    },
    chatClosed(state) {
      state.activeChatId = null;
      state.startRefusal = null;
    },
    chatUpserted(state, action: PayloadAction<Chat>) {
      upsertChat(state, action.payload);
    },

    /** message_received: one message, live. */
    messageReceived(state, action: PayloadAction<Message>) {
      addMessages(state, action.payload.chatId, [action.payload]);
    },
    /** `missed` of a join ack, or any batch of confirmed messages of one chat. */
    messagesReceived(state, action: PayloadAction<{ chatId: string; messages: Message[] }>) {
      addMessages(state, action.payload.chatId, action.payload.messages);
    },

    messageSent: {
      reducer(state, action: PayloadAction<PendingMessage>) {
        const p = action.payload;
        (state.pendingByChat[p.chatId] ??= []).push(p);
      },
      prepare(args: { chatId: string; content: string; senderId: string }) {
        const clientMsgId =
          typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function'
            ? crypto.randomUUID()
            : nanoid();
        return {
          payload: {
            clientMsgId,
            chatId: args.chatId,
            senderId: args.senderId,
            content: args.content,
            createdAt: new Date().toISOString(),
            status: 'sending' as const,
          },
        };
      },
    },
    messageRetried(state, action: PayloadAction<{ chatId: string; clientMsgId: string }>) {
      const p = state.pendingByChat[action.payload.chatId]?.find(
        (x) => x.clientMsgId === action.payload.clientMsgId,
      );
      if (p) {
        p.status = 'sending';
        delete p.error;
      }
    },
    messageAcked(state, action: PayloadAction<{ chatId: string; clientMsgId: string; message: Message }>) {
      const { chatId, clientMsgId, message } = action.payload;
      const pending = state.pendingByChat[chatId];
      if (pending) state.pendingByChat[chatId] = pending.filter((p) => p.clientMsgId !== clientMsgId);
      addMessages(state, chatId, [message]);
    },
    messageFailed(state, action: PayloadAction<{ chatId: string; clientMsgId: string; code: string }>) {
      const { chatId, clientMsgId, code } = action.payload;
      const p = state.pendingByChat[chatId]?.find((x) => x.clientMsgId === clientMsgId);
      if (p) {
        p.status = 'failed';
        p.error = readableError(code);
      }
      if (isChatRefusal(code)) refuse(state, chatId, code);
    },
    /** A failed send the user gave up on. */
    messageDiscarded(state, action: PayloadAction<{ chatId: string; clientMsgId: string }>) {
      const { chatId, clientMsgId } = action.payload;
      const pending = state.pendingByChat[chatId];
      if (pending) state.pendingByChat[chatId] = pending.filter((p) => p.clientMsgId !== clientMsgId);
    },

    /** message_read from the server (the other side, or this user on another device). */
    readReceived(state, action: PayloadAction<MessageReadEvent>) {
      const { chatId, userId, seq } = action.payload;
      applyRead(state, chatId, userId, seq);
    },
    /** This client marked the chat read (optimistic; the server echoes message_read). */
    markedRead(state, action: PayloadAction<{ chatId: string; seq: number }>) {
      if (state.meId) applyRead(state, action.payload.chatId, state.meId, action.payload.seq);
    },

    typingChanged(state, action: PayloadAction<TypingIndicatorEvent>) {
      const { chatId, userId, isTyping } = action.payload;
      if (userId === state.meId) return;
      const list = (state.typingByChat[chatId] ??= []).filter((u) => u !== userId);
      if (isTyping) list.push(userId);
      state.typingByChat[chatId] = list;
    },
    presenceChanged(state, action: PayloadAction<{ userId: string; online: boolean }>) {
      const { userId, online } = action.payload;
      state.onlineUsers[userId] = online;
      if (!online) {
        for (const chatId of Object.keys(state.typingByChat)) {
          state.typingByChat[chatId] = state.typingByChat[chatId].filter((u) => u !== userId);
        }
      }
    },

    connectionChanged(state, action: PayloadAction<ConnectionStatus>) {
      const status = action.payload;
      state.connection.status = status;
      state.connection.connected = status === 'connected';
      state.connection.reconnecting = status === 'reconnecting';
      // Typing states do not survive a lost connection (the server expires them anyway).
      if (status !== 'connected') state.typingByChat = {};
    },
    roomJoined(state, action: PayloadAction<string>) {
      const id = action.payload;
      if (!state.connection.joinedRooms.includes(id)) state.connection.joinedRooms.push(id);
      delete state.refusals[id];
    },
    roomLeft(state, action: PayloadAction<string>) {
      state.connection.joinedRooms = state.connection.joinedRooms.filter((id) => id !== action.payload);
    },
    chatRefused(state, action: PayloadAction<{ chatId: string; code: string }>) {
      refuse(state, action.payload.chatId, action.payload.code);
    },

    errorReported(state, action: PayloadAction<string>) {
      state.error = readableError(action.payload);
    },
    errorDismissed(state) {
      state.error = null;
    },
  },
  extraReducers: (builder) => {
    builder
      .addCase(signedIn, (_state, action) => ({ ...initialState, meId: action.payload.user.id }))
      .addCase(signedOut, () => initialState)
      .addCase(sessionExpired, () => initialState)
      .addCase(sessionRefused, () => initialState)

      .addCase(fetchChats.pending, (state) => {
        state.loading.chats = true;
      })
      .addCase(fetchChats.fulfilled, (state, action) => {
        state.loading.chats = false;
        state.chatsLoaded = true;
        for (const chat of action.payload) upsertChat(state, chat);
        // Live presence is newer than nothing, but a fresh list is the best snapshot we have.
        for (const chat of action.payload) {
          for (const p of chat.participants) state.onlineUsers[p.id] = p.online;
        }
      })
      .addCase(fetchChats.rejected, (state, action) => {
        state.loading.chats = false;
        state.error = readableError(action.payload?.code ?? 'network');
      })

      .addCase(fetchContacts.pending, (state) => {
        state.loading.contacts = true;
      })
      .addCase(fetchContacts.fulfilled, (state, action) => {
        state.loading.contacts = false;
        state.contactsLoaded = true;
        state.contacts = action.payload;
        for (const c of action.payload) state.onlineUsers[c.id] = c.online;
      })
      .addCase(fetchContacts.rejected, (state, action) => {
        state.loading.contacts = false;
        state.contactsLoaded = true;
        state.error = readableError(action.payload?.code ?? 'network');
      })

      .addCase(loadLatest.pending, (state, action) => {
        historyOf(state, action.meta.arg).loading = true;
      })
      .addCase(loadLatest.fulfilled, (state, action) => {
        const h = historyOf(state, action.meta.arg);
        h.loading = false;
        h.loaded = true;
        h.hasMore = action.payload.hasMore;
        addMessages(state, action.meta.arg, action.payload.messages);
      })
      .addCase(loadLatest.rejected, (state, action) => {
        historyOf(state, action.meta.arg).loading = false;
        const code = action.payload?.code ?? 'network';
        if (isChatRefusal(code)) refuse(state, action.meta.arg, code);
        else state.error = readableError(code);
      })
      .addCase(loadOlder.pending, (state, action) => {
        historyOf(state, action.meta.arg).loading = true;
      })
      .addCase(loadOlder.fulfilled, (state, action) => {
        const h = historyOf(state, action.meta.arg);
        h.loading = false;
        h.hasMore = action.payload.hasMore;
        addMessages(state, action.meta.arg, action.payload.messages);
      })
      .addCase(loadOlder.rejected, (state, action) => {
        historyOf(state, action.meta.arg).loading = false;
        state.error = readableError(action.payload?.code ?? 'network');
      })

      .addCase(startChat.pending, (state) => {
        state.loading.startChat = true;
        state.startRefusal = null;
      })
      .addCase(startChat.fulfilled, (state, action) => {
        state.loading.startChat = false;
        upsertChat(state, action.payload);
        state.activeChatId = action.payload.id;
      })
      .addCase(startChat.rejected, (state, action) => {
        state.loading.startChat = false;
        const code = action.payload?.code ?? 'network';
        if (isChatRefusal(code)) {
          state.activeChatId = null;
          state.startRefusal = { code, course: action.meta.arg.course, message: readableError(code) };
        } else {
          state.error = readableError(code);
        }
      });
  },
});

export const {
  chatOpened,
  chatClosed,
  chatUpserted,
  messageReceived,
  messagesReceived,
  messageSent,
  messageRetried,
  messageAcked,
  messageFailed,
  messageDiscarded,
  readReceived,
  markedRead,
  typingChanged,
  presenceChanged,
  connectionChanged,
  roomJoined,
  roomLeft,
  chatRefused,
  errorReported,
  errorDismissed,
} = chatSlice.actions;

export default chatSlice.reducer;

// ---------------------------------------------------------------------------------------------
// Selectors

type ChatRoot = { chat: ChatState };

const chatSelectors = chatsAdapter.getSelectors((s: ChatRoot) => s.chat.chats);
const messageSelectors = messagesAdapter.getSelectors();
const EMPTY_MESSAGES: Message[] = [];
const EMPTY_PENDING: PendingMessage[] = [];
const EMPTY_IDS: string[] = [];

export const selectChatState = (s: ChatRoot) => s.chat;
export const selectMeId = (s: ChatRoot) => s.chat.meId;
/** The chat list, most recent first. */
export const selectChats = chatSelectors.selectAll;
export const selectChatById = (s: ChatRoot, chatId: string) => chatSelectors.selectById(s, chatId);
export const selectActiveChatId = (s: ChatRoot) => s.chat.activeChatId;
export const selectActiveChat = (s: ChatRoot) =>
  s.chat.activeChatId ? chatSelectors.selectById(s, s.chat.activeChatId) : undefined;
export const selectContacts = (s: ChatRoot) => s.chat.contacts;
export const selectLoading = (s: ChatRoot) => s.chat.loading;
export const selectError = (s: ChatRoot) => s.chat.error;
export const selectConnection = (s: ChatRoot) => s.chat.connection;
const NO_ONE: Record<string, boolean> = {};
/** Who is online; nobody is shown online while this client itself is disconnected (unknown). */
export const selectOnlineUsers = (s: ChatRoot) => (s.chat.connection.connected ? s.chat.onlineUsers : NO_ONE);
export const selectIsOnline = (s: ChatRoot, userId: string | undefined) =>
  Boolean(userId && selectOnlineUsers(s)[userId]);
export const selectHistory = (s: ChatRoot, chatId: string): HistoryState | undefined =>
  s.chat.historyByChat[chatId];
export const selectRefusal = (s: ChatRoot, chatId: string | null | undefined): Refusal | undefined =>
  chatId ? s.chat.refusals[chatId] : undefined;
export const selectStartRefusal = (s: ChatRoot) => s.chat.startRefusal;

export const selectMessages = (s: ChatRoot, chatId: string): Message[] => {
  const m = s.chat.messagesByChat[chatId];
  return m ? messageSelectors.selectAll(m) : EMPTY_MESSAGES;
};
export const selectPending = (s: ChatRoot, chatId: string): PendingMessage[] =>
  s.chat.pendingByChat[chatId] ?? EMPTY_PENDING;

/** Total unread over all chats (for the document title). */
export const selectUnreadTotal = createSelector([selectChats], (chats) =>
  chats.reduce((n, c) => n + c.unread, 0),
);

/** The other side's read cursor in a chat, as far as this client knows. */
export const selectOtherReadSeq = (s: ChatRoot, chatId: string): number => {
  const me = s.chat.meId ?? '';
  const cursors = s.chat.readByChat[chatId] ?? {};
  let announced = 0;
  for (const [userId, seq] of Object.entries(cursors)) if (userId !== me && seq > announced) announced = seq;
  return otherReadSeq(selectMessages(s, chatId), me, announced);
};

/** The seq of my last own message if the other side has read it ("Seen"), else null. */
export const selectSeenSeq = (s: ChatRoot, chatId: string): number | null =>
  seenSeq(selectMessages(s, chatId), s.chat.meId ?? '', selectOtherReadSeq(s, chatId));

/** Rows of the message view: day separators, messages with their receipt, pending sends. */
export const selectTimeline = createSelector(
  [
    (s: ChatRoot, chatId: string) => selectMessages(s, chatId),
    (s: ChatRoot, chatId: string) => selectPending(s, chatId),
    (s: ChatRoot, chatId: string) => selectSeenSeq(s, chatId),
  ],
  (messages, pending, seen) => buildTimeline(messages, pending, seen, new Date()),
);

/** Names of the people typing in a chat (never the user themself). */
export const selectTypingNames = createSelector(
  [
    (s: ChatRoot, chatId: string) => s.chat.typingByChat[chatId] ?? EMPTY_IDS,
    (s: ChatRoot, chatId: string) => chatSelectors.selectById(s, chatId),
  ],
  (userIds, chat) =>
    userIds.map((id) => chat?.participants.find((p) => p.id === id)?.name ?? 'Someone'),
);

/** The other participant of a chat. */
export const selectCounterpart = (s: ChatRoot, chatId: string) => {
  const chat = chatSelectors.selectById(s, chatId);
  return chat ? counterpart(chat, s.chat.meId ?? '') : undefined;
};
