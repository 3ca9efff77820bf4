// The connection banner (role status): shown while connecting, reconnecting or disconnected.

import { useAppDispatch, useAppSelector } from '../app/hooks';
import { reconnectRequested, selectConnection } from '../features/chat/chatSlice';

export default function ConnectionBanner() {
  const dispatch = useAppDispatch();
  const { status } = useAppSelector(selectConnection);
  if (status === 'connected' || status === 'idle') return null;
  return (
    <div role="status" className={`banner banner-${status}`}>
      {status === 'connecting' && 'Connecting…'}
      {status === 'reconnecting' && 'Connection lost. Reconnecting… Messages you send will go out when it is back.'}
      {status === 'disconnected' && (
        <>
          Disconnected from the chat service.{' '}
          <button type="button" className="link-button" onClick={() => dispatch(reconnectRequested())}>
            Reconnect
          </button>
        </>
      )}
    </div>
  );
}
