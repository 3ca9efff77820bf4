// The REST side of the chat feature as thunks: the chat list, the people one can start a chat
// with, history pages and chat creation. The socket side lives in app/socketMiddleware.ts.

import { createAsyncThunk } from '@reduxjs/toolkit';
import { api } from '../../services/api';
import { errorCode } from './errors';
import { contactKind } from './permissions';
import type { Chat, Contact, CourseRef, Message, Role } from './types';

/** Page size for history requests (the contract allows 1..100). */
export const HISTORY_PAGE = 50;

interface Rejected {
  code: string;
}

type HistoryView = {
  chat: {
    historyByChat: Record<string, { loading: boolean; loaded: boolean; hasMore: boolean } | undefined>;
    messagesByChat: Record<string, { ids: number[] } | undefined>;
  };
};

export const fetchChats = createAsyncThunk<Chat[], void, { rejectValue: Rejected }>(
  'chat/fetchChats',
  async (_, { rejectWithValue }) => {
    try {
      return (await api.listChats()).chats;
    } catch (e) {
      return rejectWithValue({ code: errorCode(e) });
    }
  },
);

export const fetchContacts = createAsyncThunk<Contact[], Role, { rejectValue: Rejected }>(
  'chat/fetchContacts',
  async (role, { rejectWithValue }) => {
    try {
      const kind = contactKind(role);
      if (kind === 'tutors') return (await api.availableTutors()).tutors;
      if (kind === 'students') return (await api.myStudents()).students;
      return [];
    } catch (e) {
      return rejectWithValue({ code: errorCode(e) });
    }
  },
);

/** The newest page of a chat, loaded the first time the chat is opened. */
export const loadLatest = createAsyncThunk<
  { messages: Message[]; hasMore: boolean },
  string,
  { rejectValue: Rejected; state: HistoryView }
>(
  'chat/loadLatest',
  async (chatId, { rejectWithValue }) => {
    try {
      return await api.listMessages(chatId, undefined, HISTORY_PAGE);
    } catch (e) {
      return rejectWithValue({ code: errorCode(e) });
    }
  },
  {
    condition: (chatId, { getState }) => {
      const h = getState().chat.historyByChat[chatId];
      return !h || (!h.loaded && !h.loading);
    },
  },
);

/** The page before the oldest loaded message, when the user scrolls to the top. */
export const loadOlder = createAsyncThunk<
  { messages: Message[]; hasMore: boolean },
  string,
  { rejectValue: Rejected; state: HistoryView }
>(
  'chat/loadOlder',
  async (chatId, { getState, rejectWithValue }) => {
    const ids = getState().chat.messagesByChat[chatId]?.ids ?? [];
    const before = ids.length > 0 ? Math.min(...ids) : undefined;
    try {
      return await api.listMessages(chatId, before, HISTORY_PAGE);
    } catch (e) {
      return rejectWithValue({ code: errorCode(e) });
    }
  },
  {
    condition: (chatId, { getState }) => {
      const h = getState().chat.historyByChat[chatId];
      const ids = getState().chat.messagesByChat[chatId]?.ids ?? [];
      return Boolean(h && h.loaded && h.hasMore && !h.loading && ids.length > 0 && Math.min(...ids) > 1);
    },
  },
);

export interface StartChatArgs {
  participantId: string;
  courseId: string;
  /** For the upgrade prompt when the server answers `not_enrolled`. */
  course: CourseRef;
}

/** Opens the chat with this person about this course, creating it if needed (idempotent server-side). */
export const startChat = createAsyncThunk<Chat, StartChatArgs, { rejectValue: Rejected }>(
  'chat/startChat',
  async ({ participantId, courseId }, { rejectWithValue }) => {
    try {
      return (await api.createChat(participantId, courseId)).chat;
    } catch (e) {
      return rejectWithValue({ code: errorCode(e) });
    }
  },
);
