// Initials in a circle, with an optional presence dot (its meaning is also given as text).

interface Props {
  name: string;
  online?: boolean;
}

function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? '?').slice(0, 2);
  return letters.toUpperCase();
}

export default function Avatar({ name, online }: Props) {
  return (
    <span className="avatar" aria-hidden="true">
      {initials(name)}
      {online !== undefined && <span className={`presence-dot ${online ? 'online' : 'offline'}`} />}
    </span>
  );
}
