import { useEffect, useRef, useState } from "react";
import { session, type HeartbeatItem } from "./api";
import { clock } from "./format";
import { pageStorage } from "./tracker/storage";
import { clearOutbox, flushOutbox, readOutbox, tokenSubject } from "./tracker/tracker";

interface Props {
  /** Signing out may go on: the outbox is sent or deleted (the token is the caller's). */
  onSignedOut: () => void;
  onCancel: () => void;
}

const flush = () =>
  flushOutbox({ fetch: (...a) => fetch(...a), storage: pageStorage, getToken: session.token, isOnline: () => navigator.onLine });

/** Each material with unsent heartbeats, and the seconds they report as played. */
function summary(items: HeartbeatItem[]): [string, number][] {
  const played = new Map<string, number>();
  for (const item of items) {
    const seconds = (item.played ?? []).reduce((sum, [a, b]) => sum + Math.max(0, b - a), 0);
    played.set(item.material_id, (played.get(item.material_id) ?? 0) + seconds);
  }
  return [...played];
}

/**
 * Signing out deletes the user's outbox. Rendered once the pages (and any open player, whose
 * last heartbeat joins the outbox) are gone, it first tries to send what waits; if anything is
 * left, a modal dialog says what would be lost and lets the user send it, delete it or stay.
 */
export function SignOutDialog({ onSignedOut, onCancel }: Props) {
  const owner = tokenSubject(session.token());
  const [left, setLeft] = useState<HeartbeatItem[] | null>(null);
  const [note, setNote] = useState("");
  const dialog = useRef<HTMLDialogElement>(null);

  /** Try to send the outbox; what is still in it after. */
  async function trySending(): Promise<HeartbeatItem[]> {
    await flush();
    return owner ? readOutbox(pageStorage, owner) : [];
  }

  async function sendNow(): Promise<void> {
    setNote("Sending…");
    const items = await trySending();
    if (items.length === 0) return onSignedOut();
    setLeft(items);
    setNote(navigator.onLine ? "The server has not taken them yet: try again in a moment." : "You are offline: nothing could be sent.");
  }

  useEffect(() => {
    void trySending().then((items) => (items.length ? setLeft(items) : onSignedOut()));
    // once, when signing out begins
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  useEffect(() => {
    if (left && !dialog.current?.open) dialog.current?.showModal(); // modal: focus moves in, Escape cancels
  }, [left]);

  if (!left || !owner) return null;
  const seconds = summary(left);
  return (
    <dialog
      ref={dialog}
      className="modal"
      aria-labelledby="signout-title"
      aria-describedby="signout-what"
      data-testid="signout-dialog"
      onCancel={(e) => {
        e.preventDefault(); // Escape: the same as Cancel
        onCancel();
      }}
    >
      <h2 id="signout-title">Unsent watching</h2>
      <div id="signout-what">
        <p>Some of your watching has not reached the server yet ({left.length} progress {left.length === 1 ? "report" : "reports"}):</p>
        <ul data-testid="signout-unsent">
          {seconds.map(([material, played]) => (
            <li key={material}>
              {material}: {clock(played)} watched
            </li>
          ))}
        </ul>
        <p>Signing out now deletes them from this browser.</p>
      </div>
      <p role="status" data-testid="signout-note">
        {note}
      </p>
      <div className="dialog-actions">
        <button onClick={() => void sendNow()}>
          Send them now
        </button>
        <button
          className="danger"
          onClick={() => {
            clearOutbox(pageStorage, owner);
            onSignedOut();
          }}
        >
          Sign out and delete them
        </button>
        <button className="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </dialog>
  );
}
