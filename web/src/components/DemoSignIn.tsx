// Demo mode sign-in: one button per seeded demo user (from GET /api/dev/users).

import { useAppDispatch, useAppSelector } from '../app/hooks';
import { roleLabel } from '../features/chat/permissions';
import { selectSession, signInDemo } from '../features/session/sessionSlice';
import Avatar from './Avatar';

export default function DemoSignIn() {
  const dispatch = useAppDispatch();
  const { demoUsers, notice } = useAppSelector(selectSession);
  const groups = [
    { title: 'Students', users: demoUsers.filter((u) => u.role === 'user') },
    { title: 'Tutors', users: demoUsers.filter((u) => u.role === 'tutor') },
    { title: 'Others', users: demoUsers.filter((u) => u.role !== 'user' && u.role !== 'tutor') },
  ].filter((g) => g.users.length > 0);

  return (
    <main className="signin">
      <div className="signin-card">
        <h1>Course chat</h1>
        <p className="muted">Demo mode. Choose who you want to be.</p>
        {notice && (
          <p className="notice" role="alert">
            {notice}
          </p>
        )}
        {groups.map((g) => (
          <section key={g.title} aria-labelledby={`signin-${g.title}`}>
            <h2 id={`signin-${g.title}`} className="section-title">
              {g.title}
            </h2>
            <ul className="plain-list">
              {g.users.map((u) => (
                <li key={u.id}>
                  <button type="button" className="person-button" onClick={() => dispatch(signInDemo(u.id))}>
                    <Avatar name={u.name} />
                    <span className="person-text">
                      <span className="person-name">{u.name}</span>
                      <span className="muted small">{roleLabel(u.role)}</span>
                    </span>
                    <span className="action-hint">Sign in</span>
                  </button>
                </li>
              ))}
            </ul>
          </section>
        ))}
        {demoUsers.length === 0 && <p className="muted">No demo users are available.</p>}
      </div>
    </main>
  );
}
