// The message box: Enter sends, Shift+Enter adds a line; typing_start/stop go out through
// the middleware; the draft is checked against the server's content rules before sending.

import { useState, type FormEvent, type KeyboardEvent } from 'react';
import { useAppDispatch, useAppSelector } from '../app/hooks';
import { messageSent, selectMeId, typingActivity, typingStopped } from '../features/chat/chatSlice';
import { checkContent, codePointLength, MAX_CONTENT_CODE_POINTS } from '../features/chat/messages';

const HINTS = {
  empty: '',
  too_long: `Messages can be at most ${MAX_CONTENT_CODE_POINTS} characters.`,
  control_character: 'The message contains characters that cannot be sent.',
} as const;

export default function Composer({ chatId }: { chatId: string }) {
  const dispatch = useAppDispatch();
  const meId = useAppSelector(selectMeId);
  const [draft, setDraft] = useState('');
  const [problem, setProblem] = useState('');

  const length = codePointLength(draft.trim());
  const nearLimit = length > MAX_CONTENT_CODE_POINTS - 200;

  const submit = () => {
    const check = checkContent(draft);
    if (!check.ok) {
      setProblem(HINTS[check.reason]);
      return;
    }
    if (!meId) return;
    dispatch(messageSent({ chatId, content: check.content, senderId: meId }));
    setDraft('');
    setProblem('');
  };

  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    submit();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  return (
    <form className="composer" onSubmit={onSubmit}>
      <label htmlFor="composer-input" className="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        className="composer-input"
        rows={1}
        value={draft}
        placeholder="Write a message…"
        aria-describedby="composer-hint"
        aria-invalid={problem ? true : undefined}
        onChange={(e) => {
          setDraft(e.target.value);
          if (problem) setProblem('');
          dispatch(e.target.value.trim() ? typingActivity(chatId) : typingStopped(chatId));
        }}
        onKeyDown={onKeyDown}
        onBlur={() => dispatch(typingStopped(chatId))}
      />
      <button type="submit" className="send-button" disabled={draft.trim().length === 0}>
        Send
      </button>
      <p id="composer-hint" className={`composer-hint small ${problem ? 'error-text' : 'muted'}`} aria-live="polite">
        {problem ||
          (nearLimit
            ? `${length} / ${MAX_CONTENT_CODE_POINTS} characters`
            : 'Enter to send, Shift+Enter for a new line')}
      </p>
    </form>
  );
}
