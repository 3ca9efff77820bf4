// Shown instead of the composer when the server refuses a chat. A student refused with
// `not_enrolled` gets an upgrade prompt naming the course; a tutor learns the student is no
// longer enrolled; other refusals show their readable reason.

import { useAppSelector } from '../app/hooks';
import type { Refusal } from '../features/chat/chatSlice';
import { isStudent } from '../features/chat/permissions';
import { selectMe } from '../features/session/sessionSlice';

interface Props {
  refusal: Refusal;
  /** The other participant's name, when known. */
  withName?: string;
}

export default function UpgradePrompt({ refusal, withName }: Props) {
  const me = useAppSelector(selectMe);
  const title = refusal.course?.title ?? 'this course';

  if (refusal.code === 'not_enrolled' && isStudent(me?.role)) {
    return (
      <section className="upgrade" role="alert" aria-labelledby="upgrade-title">
        <h3 id="upgrade-title">Upgrade to keep chatting</h3>
        <p>
          You no longer have access to <strong>{title}</strong>
          {withName ? <> so you can't message {withName} about it</> : null}. Purchase or renew{' '}
          <strong>{title}</strong> on your course platform to continue.
        </p>
      </section>
    );
  }
  if (refusal.code === 'not_enrolled') {
    return (
      <div className="refusal" role="alert">
        <p>
          {withName ?? 'This student'} is no longer enrolled in <strong>{title}</strong>. You can read this chat
          but not send messages.
        </p>
      </div>
    );
  }
  return (
    <div className="refusal" role="alert">
      <p>{refusal.message} You can read this chat but not send messages.</p>
    </div>
  );
}
