import { useCallback, useEffect, useReducer, useState } from "react";
import { api, session } from "./api";
import { CourseDetailPage } from "./CourseDetailPage";
import { HomePage } from "./HomePage";
import { fromLaunchPage, keepRenewed, readLaunch } from "./launch";
import { MatrixPage } from "./MatrixPage";
import { SignIn } from "./SignIn";
import { SignOutDialog } from "./SignOutDialog";
import { pageStorage } from "./tracker/storage";
import { StudentProgressPage } from "./StudentProgressPage";
import { TeacherDashboard } from "./TeacherDashboard";
import { flushOutbox } from "./tracker/tracker";

/** Heartbeats a closed player could not send wait in the signed-in user's outbox: send them
 * at sign-in, on every page load and whenever the network comes back, player open or not. */
function useOutboxFlusher(userId: string | undefined, onUnauthorized: () => void): void {
  useEffect(() => {
    if (!userId) return;
    const flush = () =>
      void flushOutbox({ fetch: (...a) => fetch(...a), storage: pageStorage, getToken: session.token,
                         isOnline: () => navigator.onLine, onUnauthorized });
    flush();
    window.addEventListener("online", flush);
    return () => window.removeEventListener("online", flush);
  }, [userId, onUnauthorized]);
}

/** A launch's session renewed while the page is open (launch.ts); a 401 ends it. */
function useLaunchRenewal(userId: string | undefined, onExpired: () => void): void {
  useEffect(() => {
    if (!userId || !session.isLaunch()) return;
    // One schedule per session: renewals replace the token without restarting it.
    return keepRenewed({
      getToken: session.token,
      renew: async () => (await api.renewSession()).token,
      setToken: session.renewed,
      onExpired,
    });
  }, [userId, onExpired]);
}

/** A launch route (`#/launch/<token>/<role>/<route>`, from the tool's launch page) becomes the
 * session, in memory; the address keeps only the route, so the token is in no history entry.
 * Only when the page loads from the tool's own launch page (`fromLaunchPage`): a launch link
 * someone else made (their own token, on a forum, or a hash a framing page sets) would make
 * whoever opens it watch for that someone. Any other launch route just loses its token. */
function adoptLaunch(onLoad: boolean): void {
  const launch = readLaunch(window.location.hash);
  if (!launch) return;
  if (onLoad && fromLaunchPage(document.referrer, window.location.origin)) {
    session.launch(launch.token, launch.user);
  }
  window.history.replaceState(null, "", launch.hash);
}

/** Hash routes: #/ home (sign-in when signed out), #/course/<id>, #/course/<id>/play/<material
 * id> (its player open), #/teacher/<course id>, #/teacher/<course id>/student/<student id>,
 * #/teacher/<course id>/matrix; #/launch/... (adoptLaunch). */
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
  const read = (onLoad: boolean) => {
    adoptLaunch(onLoad);
    return parseHash(window.location.hash);
  };
  const [parts, setParts] = useState(() => read(true));
  useEffect(() => {
    const update = () => setParts(read(false));
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return [parts, (path: string) => (window.location.hash = path)];
}

export function App() {
  const [[page, id, sub, subId], go] = useHashRoute();
  const [, signedIn] = useReducer((n: number) => n + 1, 0);
  const [signingOut, setSigningOut] = useState(false);
  const [launchEnded, setLaunchEnded] = useState(false);
  const user = session.user();
  // The session ends (signed out, or a 401: the token expired). The user's outbox is not
  // touched here: after a 401 it waits for their next sign-in, never sent with another's token.
  const endSession = useCallback(() => {
    if (session.isLaunch()) setLaunchEnded(true);
    session.signOut();
    setSigningOut(false);
    signedIn();
    window.location.hash = "/";
  }, []);
  useOutboxFlusher(user?.user_id, endSession);
  useLaunchRenewal(user?.user_id, endSession);

  let content;
  if (user && signingOut)
    // The pages go first, so that an open player's last heartbeat is in the outbox the
    // dialog sends or deletes.
    content = <SignOutDialog onSignedOut={endSession} onCancel={() => setSigningOut(false)} />;
  else if (!user && launchEnded)
    content = <main><p>Your session has ended. Open the video again from your course in the LMS.</p></main>;
  else if (!user)
    content = (
      <SignIn
        onSignedIn={() => {
          if (!page) go("/");
          signedIn(); // a deep link stays where it was: show it now
        }}
      />
    );
  else if (!page) content = <HomePage key={user.user_id} user={user} onUnauthorized={endSession} />;
  else if (page === "course" && id && !sub) content = <CourseDetailPage courseId={id} onUnauthorized={endSession} />;
  else if (page === "course" && id && sub === "play" && subId)
    content = <CourseDetailPage courseId={id} play={subId} onUnauthorized={endSession} />;
  else if (page === "teacher" && id && !sub) content = <TeacherDashboard courseId={id} onUnauthorized={endSession} />;
  else if (page === "teacher" && id && sub === "matrix") content = <MatrixPage courseId={id} onUnauthorized={endSession} />;
  else if (page === "teacher" && id && sub === "student" && subId)
    content = <StudentProgressPage courseId={id} studentId={subId} onUnauthorized={endSession} />;
  else content = <main><p>Nothing here. <a href="#/">Start again</a></p></main>;

  return (
    <>
      <nav className="topbar">
        <a className="brand" href="#/">Course progress</a>
        {user && (
          <span>
            {user.user_id} ({user.role}) · <button className="link" onClick={() => setSigningOut(true)}>Sign out</button>
          </span>
        )}
      </nav>
      {content}
    </>
  );
}
