// The latest readable error, dismissable, gone by itself after a while.

import { useEffect } from 'react';
import { useAppDispatch, useAppSelector } from '../app/hooks';
import { errorDismissed, selectError } from '../features/chat/chatSlice';

export default function ErrorToast() {
  const dispatch = useAppDispatch();
  const error = useAppSelector(selectError);
  useEffect(() => {
    if (!error) return;
    const t = setTimeout(() => dispatch(errorDismissed()), 8000);
    return () => clearTimeout(t);
  }, [error, dispatch]);
  if (!error) return null;
  return (
    <div className="toast" role="alert">
      <span>{error}</span>
      <button type="button" className="icon-button" aria-label="Dismiss" onClick={() => dispatch(errorDismissed())}>
        ×
      </button>
    </div>
  );
}
