// Who is signed in and how: demo mode (a sign-in screen over /api/dev/*) or a token handed over
// by the host platform. The token itself is never in the store (services/token.ts holds it);
// the store keeps only the identity read from it, for display and for "is this mine?".

import { createAsyncThunk, createSlice, type PayloadAction } from '@reduxjs/toolkit';
import { readableError, errorCode } from '../chat/errors';
import type { Role } from '../chat/types';
import { api, type DemoUser } from '../../services/api';
import { clearToken, decodeClaims, setToken } from '../../services/token';
import { listenForHostToken, requestHostToken, takeTokenFromUrl } from '../../services/hostToken';

export interface SessionUser {
  id: string;
  name: string;
  role: Role;
}

export type SessionStatus =
  | 'booting' // probing demo mode / reading the URL
  | 'choosing' // demo: the sign-in screen
  | 'waiting' // host mode: no token yet
  | 'signingIn'
  | 'signedIn'
  | 'expired' // host mode: the token expired, waiting for a fresh one
  | 'invalid'; // host mode: the token was refused

export interface SessionState {
  mode: 'unknown' | 'demo' | 'host';
  status: SessionStatus;
  user: SessionUser | null;
  /** Token expiry, seconds since the epoch. */
  exp: number | null;
  demoUsers: DemoUser[];
  /** A readable notice for the sign-in or waiting screen (e.g. "Your session expired"). */
  notice: string | null;
}

const initialState: SessionState = {
  mode: 'unknown',
  status: 'booting',
  user: null,
  exp: null,
  demoUsers: [],
  notice: null,
};

/** sessionStorage key for the demo user choice (the only thing this client ever persists). */
export const DEMO_USER_KEY = 'coursechat.demoUser';

const sessionSlice = createSlice({
  name: 'session',
  initialState,
  reducers: {
    demoModeDetected(state, action: PayloadAction<DemoUser[]>) {
      state.mode = 'demo';
      state.demoUsers = action.payload;
      if (state.status === 'booting') state.status = 'choosing';
    },
    hostModeDetected(state) {
      state.mode = 'host';
      if (state.status === 'booting') state.status = 'waiting';
    },
    signingIn(state) {
      state.status = 'signingIn';
      state.notice = null;
    },
    signedIn(state, action: PayloadAction<{ user: SessionUser; exp: number }>) {
      state.status = 'signedIn';
      state.user = action.payload.user;
      state.exp = action.payload.exp;
      state.notice = null;
    },
    signInFailed(state, action: PayloadAction<string>) {
      state.status = state.mode === 'demo' ? 'choosing' : 'invalid';
      state.user = null;
      state.notice = action.payload;
    },
    /** Same user, fresher token (host postMessage or refresh): the socket re-authenticates. */
    tokenRefreshed(state, action: PayloadAction<{ exp: number }>) {
      state.exp = action.payload.exp;
    },
    signedOut(state) {
      state.status = state.mode === 'demo' ? 'choosing' : 'waiting';
      state.user = null;
      state.exp = null;
      state.notice = null;
    },
    sessionExpired(state) {
      state.status = state.mode === 'demo' ? 'choosing' : 'expired';
      state.user = null;
      state.exp = null;
      state.notice =
        state.mode === 'demo'
          ? 'Your session expired. Choose a user to sign in again.'
          : 'Your session has expired. Reopen the chat from your course platform to continue.';
    },
    sessionRefused(state) {
      state.status = state.mode === 'demo' ? 'choosing' : 'invalid';
      state.user = null;
      state.exp = null;
      state.notice = readableError('invalid_token');
    },
  },
});

export const {
  demoModeDetected,
  hostModeDetected,
  signingIn,
  signedIn,
  signInFailed,
  tokenRefreshed,
  signedOut,
  sessionExpired,
  sessionRefused,
} = sessionSlice.actions;
export default sessionSlice.reducer;

type SessionRoot = { session: SessionState };

/** Signs in with a token from the host platform (or replaces the current one). */
export const signInWithToken = createAsyncThunk<void, string, { state: SessionRoot }>(
  'session/signInWithToken',
  async (token, { dispatch, getState }) => {
    const claims = decodeClaims(token);
    if (!claims) {
      dispatch(signInFailed(readableError('invalid_token')));
      return;
    }
    if (claims.exp * 1000 <= Date.now()) {
      dispatch(sessionExpired());
      requestHostToken('expired');
      return;
    }
    const { session } = getState();
    setToken(token);
    if (session.status === 'signedIn' && session.user?.id === claims.sub) {
      dispatch(tokenRefreshed({ exp: claims.exp }));
      return;
    }
    if (session.status === 'signedIn') dispatch(signedOut());
    dispatch(
      signedIn({ user: { id: claims.sub, name: claims.name ?? claims.sub, role: claims.role }, exp: claims.exp }),
    );
  },
);

/** Demo mode: fetches a token for the chosen demo user. */
export const signInDemo = createAsyncThunk<void, string, { state: SessionRoot }>(
  'session/signInDemo',
  async (userId, { dispatch, getState }) => {
    const user = getState().session.demoUsers.find((u) => u.id === userId);
    if (!user) return;
    dispatch(signingIn());
    try {
      const { token, exp } = await api.demoToken(userId);
      setToken(token);
      try {
        sessionStorage.setItem(DEMO_USER_KEY, userId);
      } catch {
        // Storage disabled: the choice is simply not remembered.
      }
      dispatch(signedIn({ user: { id: user.id, name: user.name, role: user.role }, exp }));
    } catch (e) {
      dispatch(signInFailed(readableError(errorCode(e))));
    }
  },
);

/** Demo mode: back to the sign-in screen. */
export const signOutDemo = createAsyncThunk('session/signOutDemo', async (_: void, { dispatch }) => {
  try {
    sessionStorage.removeItem(DEMO_USER_KEY);
  } catch {
    // Nothing stored.
  }
  clearToken();
  dispatch(signedOut());
});

/**
 * Start-up: a token in the URL wins; otherwise demo mode if /api/dev/users answers 200;
 * otherwise wait for the host platform to post a token.
 */
export const bootstrap = createAsyncThunk<void, void, { state: SessionRoot }>(
  'session/bootstrap',
  async (_, { dispatch, getState }) => {
    const urlToken = takeTokenFromUrl();
    listenForHostToken((token) => void dispatch(signInWithToken(token)));
    if (urlToken) {
      dispatch(hostModeDetected());
      await dispatch(signInWithToken(urlToken));
      return;
    }
    let users: DemoUser[] | null = null;
    try {
      users = (await api.demoUsers()).users;
    } catch {
      users = null;
    }
    // A token posted by the host while we probed has already signed in: nothing to choose.
    if (getState().session.status !== 'booting') return;
    if (!users) {
      dispatch(hostModeDetected());
      requestHostToken('start');
      return;
    }
    dispatch(demoModeDetected(users));
    let remembered: string | null = null;
    try {
      remembered = sessionStorage.getItem(DEMO_USER_KEY);
    } catch {
      remembered = null;
    }
    if (remembered && users.some((u) => u.id === remembered)) {
      await dispatch(signInDemo(remembered));
    }
  },
);

export const selectSession = (state: SessionRoot) => state.session;
export const selectMe = (state: SessionRoot) => state.session.user;
