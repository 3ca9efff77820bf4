// The caller's JWT, held in this module's memory only: never in localStorage, sessionStorage,
// cookies or the URL, so no other origin (and no later visitor of this browser) can read it.
// The claims are decoded for display only; the server verifies the signature.

import type { Role } from '../features/chat/types';

let current: string | null = null;

export function setToken(token: string): void {
  current = token;
}

export function getToken(): string | null {
  return current;
}

export function clearToken(): void {
  current = null;
}

export interface TokenClaims {
  sub: string;
  role: Role;
  name?: string;
  exp: number;
}

/** Reads the payload of a JWT without verifying it; null when it is not a usable token. */
export function decodeClaims(token: string): TokenClaims | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    const { sub, role, name, exp } = claims;
    if (typeof sub !== 'string' || typeof exp !== 'number') return null;
    if (role !== 'user' && role !== 'tutor' && role !== 'admin') return null;
    return { sub, role, exp, name: typeof name === 'string' ? name : undefined };
  } catch {
    return null;
  }
}
