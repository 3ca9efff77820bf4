// REST calls of the contract, same origin as the page. Every call carries the in-memory token;
// every failure becomes a ChatError with the contract's code, so callers never parse bodies.

import { ChatError } from '../features/chat/errors';
import type { Chat, Contact, Message, Role } from '../features/chat/types';
import { getToken } from './token';

export interface DemoUser {
  id: string;
  name: string;
  role: Role;
}

async function call<T>(method: string, path: string, body?: unknown, auth = true): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const token = getToken();
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ChatError('network', 'network error');
  }
  if (res.status === 204) return undefined as T;
  let json: unknown = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ChatError(err?.code ?? statusCode(res.status), err?.message ?? res.statusText, res.status);
  }
  return json as T;
}

function statusCode(status: number): string {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 429) return 'rate_limited';
  if (status >= 500) return 'unavailable';
  return 'unknown';
}

export const api = {
  listChats: () => call<{ chats: Chat[] }>('GET', '/api/chats'),

  /** The newest `limit` messages with seq < before (no before: the newest), ascending. */
  listMessages: (chatId: string, before: number | undefined, limit: number) => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before !== undefined) q.set('before', String(before));
    return call<{ messages: Message[]; hasMore: boolean }>(
      'GET',
      `/api/chats/${encodeURIComponent(chatId)}/messages?${q}`,
    );
  },

  createChat: (participantId: string, courseId: string) =>
    call<{ chat: Chat }>('POST', '/api/chats', { participantId, courseId }),

  markRead: (chatId: string, seq?: number) =>
    call<void>('PUT', `/api/chats/${encodeURIComponent(chatId)}/read`, seq === undefined ? {} : { seq }),

  availableTutors: () => call<{ tutors: Contact[] }>('GET', '/api/users/available-tutors'),

  myStudents: () => call<{ students: Contact[] }>('GET', '/api/tutors/students'),

  /** Present only when the server runs with --demo; a ChatError otherwise. */
  demoUsers: () => call<{ users: DemoUser[] }>('GET', '/api/dev/users', undefined, false),

  demoToken: (userId: string) =>
    call<{ token: string; exp: number }>('POST', '/api/dev/token', { userId }, false),
};

export type Api = typeof api;
