// Display formatting shared by the list and the message view.

import { dayKey } from '../features/chat/messages';

/** Time for today's messages, a short date otherwise. */
export function listTime(iso: string | undefined, now = new Date()): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (dayKey(iso) === dayKey(now.toISOString())) {
    return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  }
  return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}
