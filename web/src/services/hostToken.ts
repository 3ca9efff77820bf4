// The hand-off of a token from the host course platform, outside demo mode:
//   1. `?token=<jwt>` in the page URL, removed from the address bar (and history) at once;
//   2. `window.postMessage({type: 'coursechat:token', token}, '<chat origin>')` from the parent
//      frame (or the opener window), at start-up and whenever the platform has a fresher token.
// The client asks for one with `{type: 'coursechat:token-request', reason}` posted to the parent.
// Documented for platform developers in web/README.md.

export const TOKEN_MESSAGE = 'coursechat:token';
export const TOKEN_REQUEST_MESSAGE = 'coursechat:token-request';

/** Reads `?token=` and strips it from the URL with history.replaceState. */
export function takeTokenFromUrl(): string | null {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (token === null) return null;
  url.searchParams.delete('token');
  window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
  return token.trim() || null;
}

/**
 * Origins allowed to hand over a token by postMessage. Empty (the default build) accepts any
 * origin but only from the parent frame or the opener; set VITE_TOKEN_ORIGINS (comma list) at
 * build time to pin the platform's origins.
 */
function allowedOrigins(): string[] {
  const raw = (import.meta.env.VITE_TOKEN_ORIGINS as string | undefined) ?? '';
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Calls `onToken` for every token posted by the host; returns the unsubscribe function. */
export function listenForHostToken(onToken: (token: string) => void): () => void {
  const origins = allowedOrigins();
  const handler = (event: MessageEvent) => {
    const fromHost =
      (window.parent !== window && event.source === window.parent) ||
      (window.opener !== null && event.source === window.opener);
    if (!fromHost) return;
    if (origins.length > 0 && !origins.includes(event.origin)) return;
    const data = event.data as { type?: unknown; token?: unknown } | null;
    if (!data || data.type !== TOKEN_MESSAGE || typeof data.token !== 'string' || !data.token) return;
    onToken(data.token);
  };
  window.addEventListener('message', handler);
  return () => window.removeEventListener('message', handler);
}

/** Asks the host for a (fresh) token. The message carries no secret, so any origin may see it. */
export function requestHostToken(reason: 'start' | 'expired' | 'invalid' | 'refresh'): void {
  if (typeof window === 'undefined') return;
  const target = window.parent !== window ? window.parent : window.opener;
  if (!target) return;
  try {
    (target as Window).postMessage({ type: TOKEN_REQUEST_MESSAGE, reason }, '*');
  } catch {
    // A closed opener: nothing to ask.
  }
}
