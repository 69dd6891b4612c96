import { useCallback, useEffect, useReducer, useState } from "react";
import { session } from "./api";
import { CourseDetailPage } from "./CourseDetailPage";
import { HomePage } from "./HomePage";
import { MatrixPage } from "./MatrixPage";
import { SignIn } from "./SignIn";
import { StudentProgressPage } from "./StudentProgressPage";
import { TeacherDashboard } from "./TeacherDashboard";
import { flushOutbox } from "./tracker";

/** Heartbeats a closed player could not send wait in the outbox: send them on every page
 * load and whenever the network comes back, whether or not a player is open. */
function useOutboxFlusher(onUnauthorized: () => void): void {
  useEffect(() => {
    const flush = () =>
      void flushOutbox({ fetch: (...a) => fetch(...a), storage: localStorage, getToken: session.token,
                         isOnline: () => navigator.onLine, onUnauthorized });
    flush();
    window.addEventListener("online", flush);
    return () => window.removeEventListener("online", flush);
  }, [onUnauthorized]);
}

/** Hash routes: #/ home (sign-in when signed out), #/course/<id>, #/teacher/<course id>,
 * #/teacher/<course id>/student/<student id>, #/teacher/<course id>/matrix. */
export function parseHash(hash: string): string[] {
  return hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
}

function useHashRoute(): [string[], (path: string) => void] {
  const read = () => parseHash(window.location.hash);
  const [parts, setParts] = useState(read);
  useEffect(() => {
    const update = () => setParts(read());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return [parts, (path: string) => (window.location.hash = path)];
}

export function App() {
  const [[page, id, sub, subId], go] = useHashRoute();
  const [, signedIn] = useReducer((n: number) => n + 1, 0);
  const user = session.user();
  const signOut = useCallback(() => {
    session.signOut();
    window.location.hash = "/";
  }, []);
  useOutboxFlusher(signOut);

  let content;
  if (!user)
    content = (
      <SignIn
        onSignedIn={() => {
          if (!page) go("/");
          signedIn(); // a deep link stays where it was: show it now
        }}
      />
    );
  else if (!page) content = <HomePage key={user.user_id} user={user} onUnauthorized={signOut} />;
  else if (page === "course" && id && !sub) content = <CourseDetailPage courseId={id} onUnauthorized={signOut} />;
  else if (page === "teacher" && id && !sub) content = <TeacherDashboard courseId={id} onUnauthorized={signOut} />;
  else if (page === "teacher" && id && sub === "matrix") content = <MatrixPage courseId={id} onUnauthorized={signOut} />;
  else if (page === "teacher" && id && sub === "student" && subId)
    content = <StudentProgressPage courseId={id} studentId={subId} onUnauthorized={signOut} />;
  else content = <main><p>Nothing here. <a href="#/">Start again</a></p></main>;

  return (
    <>
      <nav className="topbar">
        <a className="brand" href="#/">Course progress</a>
        {user && (
          <span>
            {user.user_id} ({user.role}) · <button className="link" onClick={signOut}>Sign out</button>
          </span>
        )}
      </nav>
      {content}
    </>
  );
}
