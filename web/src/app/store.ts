// The Redux store: the session and chat slices, plus the socket middleware that connects
// the store to the Socket.IO service without putting the socket inside it.

import { combineReducers, configureStore } from '@reduxjs/toolkit';
import chatReducer from '../features/chat/chatSlice';
import sessionReducer from '../features/session/sessionSlice';
import type { SocketService } from '../services/socket';
import { createSocketMiddleware, type PageEnv } from './socketMiddleware';

const rootReducer = combineReducers({ session: sessionReducer, chat: chatReducer });

export type RootState = ReturnType<typeof rootReducer>;

export function makeStore(socket?: SocketService, env?: PageEnv) {
  return configureStore({
    reducer: rootReducer,
    middleware: (getDefault) => getDefault().concat(createSocketMiddleware(socket, env)),
  });
}

export type AppStore = ReturnType<typeof makeStore>;
export type AppDispatch = AppStore['dispatch'];
