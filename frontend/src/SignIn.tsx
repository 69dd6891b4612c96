import { useEffect, useState } from "react";
import { api, ApiError, session, type DemoUser } from "./api";

/** Pick a demo user. Exists only with the embedded default (development settings); in
 * production the school's identity provider issues the tokens. */
export function SignIn({ onSignedIn }: { onSignedIn: (user: DemoUser) => void }) {
  const [users, setUsers] = useState<DemoUser[] | null>(null);
  const [unavailable, setUnavailable] = useState(false);

  useEffect(() => {
    api.devUsers().then(setUsers, (e) => {
      if (e instanceof ApiError && e.status === 404) setUnavailable(true);
    });
  }, []);

  async function pick(user: DemoUser) {
    const { token } = await api.devToken(user);
    session.signIn(token, user);
    onSignedIn(user);
  }

  if (unavailable) return <p>Sign in through your school's portal to see your courses.</p>;
  if (!users) return <p>Loading…</p>;
  return (
    <main className="signin">
      <h1>Demo sign-in</h1>
      <p className="muted">The embedded default's demo users. This page does not exist in production.</p>
      <ul>
        {users.map((u) => (
          <li key={u.user_id}>
            <button onClick={() => void pick(u)} data-testid={`signin-${u.user_id}`}>
              {u.user_id} ({u.role})
            </button>
          </li>
        ))}
      </ul>
    </main>
  );
}
