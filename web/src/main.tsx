// Entry point: one store, one socket service, the app.

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { Provider } from 'react-redux';
import App from './App';
import { makeStore } from './app/store';
import { bootstrap } from './features/session/sessionSlice';
import './styles.css';

const store = makeStore();
void store.dispatch(bootstrap());

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <Provider store={store}>
      <App />
    </Provider>
  </StrictMode>,
);
