// Outside demo mode, before a usable token arrives: waiting for the host platform, or the
// session expired / was refused. A fresh token posted by the host signs in again by itself.

import { useAppSelector } from '../app/hooks';
import { selectSession } from '../features/session/sessionSlice';

export default function HostNotice() {
  const { status, notice } = useAppSelector(selectSession);
  const title =
    status === 'expired' ? 'Session expired' : status === 'invalid' ? 'Cannot sign in' : 'Connecting to your course';
  const text =
    notice ??
    'Waiting for your course platform to sign you in. If nothing happens, open the chat again from your course page.';
  return (
    <main className="signin">
      <div className="signin-card" role={status === 'waiting' ? undefined : 'alert'}>
        <h1>{title}</h1>
        <p>{text}</p>
      </div>
    </main>
  );
}
