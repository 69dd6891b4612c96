import { useCallback, useEffect, useState } from "react";
import { session, type DemoUser } from "./api";
import { CourseDetailPage } from "./CourseDetailPage";
import { SignIn } from "./SignIn";
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

/** Hash routes: #/ sign-in, #/course/<id>, #/teacher/<course id>. */
function useHashRoute(): [string[], (path: string) => void] {
  const read = () => window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const [parts, setParts] = useState(read);
  useEffect(() => {
    const update = () => setParts(read());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return [parts, (path: string) => (window.location.hash = path)];
}

function home(user: DemoUser): string {
  const course = user.course_id ?? "";
  return user.role === "student" ? `/course/${course}` : `/teacher/${course}`;
}

export function App() {
  const [[page, id], go] = useHashRoute();
  const user = session.user();
  const signOut = useCallback(() => {
    session.signOut();
    window.location.hash = "/";
  }, []);
  useOutboxFlusher(signOut);

  let content;
  if (!user || !page) content = <SignIn onSignedIn={(u) => go(home(u))} />;
  else if (page === "course" && id) content = <CourseDetailPage courseId={id} onUnauthorized={signOut} />;
  else if (page === "teacher" && id) content = <TeacherDashboard courseId={id} onUnauthorized={signOut} />;
  else content = <p>Nothing here. <a href="#/">Start again</a></p>;

  return (
    <>
      <nav className="topbar">
        <span className="brand">Course progress</span>
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
