// The one Socket.IO connection of this page, kept outside the Redux store (a socket is not
// serializable state). The store talks to it only through app/socketMiddleware.ts, which turns
// socket events into actions and actions into emits.

import { io, type Socket } from 'socket.io-client';
import { ChatError } from '../features/chat/errors';
import type { Ack } from '../features/chat/types';

/** Server-to-client events of the contract. */
export const SERVER_EVENTS = [
  'message_received',
  'message_read',
  'typing_indicator',
  'user_online',
  'user_offline',
  'error',
] as const;
export type ServerEvent = (typeof SERVER_EVENTS)[number];

export interface SocketHandlers {
  /** `recovered` is false on the first connect of a session, true after a reconnect. */
  onConnect(recovered: boolean): void;
  /** socket.io's reason: 'io server disconnect', 'transport close', 'ping timeout', ... */
  onDisconnect(reason: string, willReconnect: boolean): void;
  /** A refused CONNECT (`code` from the CONNECT_ERROR data) or a failed transport (no code). */
  onConnectError(code: string | undefined, willReconnect: boolean): void;
  onEvent(event: ServerEvent, payload: unknown): void;
}

export interface SocketService {
  connect(getToken: () => string | null, handlers: SocketHandlers): void;
  /** Reconnects after the server ended the session (the library does not do it by itself then). */
  reconnect(): void;
  disconnect(): void;
  isConnected(): boolean;
  /**
   * Emits with an ack. Resolves with the ack (`ok` true or false); rejects with ChatError
   * `disconnected` (not connected, or the connection dropped before the ack) or `timeout`.
   */
  request<T>(event: string, payload: unknown, timeoutMs?: number): Promise<Ack<T>>;
  /** Emits without an ack (typing); dropped when not connected rather than buffered. */
  notify(event: string, payload: unknown): void;
}

/** The browser implementation over socket.io-client v4, WebSocket transport only. */
export function createSocketService(url?: string): SocketService {
  let socket: Socket | null = null;
  let everConnected = false;

  return {
    connect(getToken, handlers) {
      socket?.disconnect();
      everConnected = false;
      const options = {
        path: '/socket.io/',
        transports: ['websocket'],
        // A function, so every reconnect presents the newest token (refreshed by the host).
        auth: (cb: (data: object) => void) => cb({ token: getToken() ?? '' }),
        reconnectionDelay: 500,
        reconnectionDelayMax: 5000,
      };
      const s = url ? io(url, options) : io(options);
      socket = s;
      s.on('connect', () => {
        handlers.onConnect(everConnected);
        everConnected = true;
      });
      s.on('disconnect', (reason) => handlers.onDisconnect(reason, s.active));
      s.on('connect_error', (err: Error & { data?: { code?: string } }) =>
        handlers.onConnectError(err.data?.code, s.active),
      );
      for (const event of SERVER_EVENTS) {
        s.on(event, (payload: unknown) => handlers.onEvent(event, payload));
      }
    },

    reconnect() {
      if (socket && !socket.connected) socket.connect();
    },

    disconnect() {
      socket?.removeAllListeners();
      socket?.disconnect();
      socket = null;
    },

    isConnected() {
      return Boolean(socket?.connected);
    },

    request<T>(event: string, payload: unknown, timeoutMs = 10_000): Promise<Ack<T>> {
      const s = socket;
      if (!s || !s.connected) return Promise.reject(new ChatError('disconnected', 'not connected'));
      return new Promise((resolve, reject) => {
        let settled = false;
        const onDrop = () => finish(() => reject(new ChatError('disconnected', 'connection lost')));
        const finish = (f: () => void) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          s.off('disconnect', onDrop);
          f();
        };
        const timer = setTimeout(
          () => finish(() => reject(new ChatError('timeout', 'no ack'))),
          timeoutMs,
        );
        s.once('disconnect', onDrop);
        s.emit(event, payload, (ack: Ack<T>) => finish(() => resolve(ack)));
      });
    },

    notify(event, payload) {
      if (socket?.connected) socket.emit(event, payload);
    },
  };
}
