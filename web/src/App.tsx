// The screens of the client, chosen by the session state alone.

import { useAppSelector } from './app/hooks';
import ChatPage from './components/ChatPage';
import DemoSignIn from './components/DemoSignIn';
import HostNotice from './components/HostNotice';
import { selectSession } from './features/session/sessionSlice';

export default function App() {
  const { status } = useAppSelector(selectSession);
  switch (status) {
    case 'booting':
    case 'signingIn':
      return (
        <div className="splash" aria-busy="true">
          <p>{status === 'booting' ? 'Loading…' : 'Signing in…'}</p>
        </div>
      );
    case 'choosing':
      return <DemoSignIn />;
    case 'waiting':
    case 'expired':
    case 'invalid':
      return <HostNotice />;
    case 'signedIn':
      return <ChatPage />;
  }
}
