// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { session } from "./api";
import { SignOutDialog } from "./SignOutDialog";
import { fakeApi } from "./test/fakeApi";
import { jwt } from "./test/jwt";
import { OUTBOX_KEY, readOutbox } from "./tracker/tracker";
import { pageStorage } from "./tracker/storage";

const ALICE = `${OUTBOX_KEY}.student-1`;
const BOB = `${OUTBOX_KEY}.student-2`;

function item(material_id: string, seq: number, played: [number, number][]) {
  return { material_id, watch_time: 0, total_duration: 60, client_ts: "2026-12-06T10:00:00.000Z",
           session_id: "s1", seq, played, playback_rate: 1 };
}
const WAITING = [item("video-a", 0, [[0, 4]]), item("video-a", 1, [[4, 9.5]]), item("video-b", 2, [[10, 40]])];

let online = true;
beforeEach(() => {
  online = true;
  vi.spyOn(navigator, "onLine", "get").mockImplementation(() => online);
  session.signIn(jwt("student-1"), { user_id: "student-1", role: "student", course_id: null });
  localStorage.setItem(ALICE, JSON.stringify(WAITING));
  localStorage.setItem(BOB, JSON.stringify([item("video-a", 0, [[0, 1]])]));
});
afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
  localStorage.clear();
});

/** The batch route answering `accept` for every item (true: taken). */
function batchRoute(accept: boolean) {
  return fakeApi({
    "POST /api/progress/heartbeats": (_url, init) => {
      const { heartbeats } = JSON.parse(String(init?.body));
      const results = heartbeats.map((_: unknown, index: number) =>
        accept ? { index, accepted: true } : { index, accepted: false, error: { code: "unavailable", message: "later" } });
      return new Response(JSON.stringify({ results }), { status: 202 });
    },
  });
}

function renderDialog() {
  const onSignedOut = vi.fn();
  const onCancel = vi.fn();
  render(<SignOutDialog onSignedOut={onSignedOut} onCancel={onCancel} />);
  return { onSignedOut, onCancel };
}

describe("SignOutDialog", () => {
  it("sends what waits and signs out without asking when the server takes it", async () => {
    const { fetch } = batchRoute(true);
    const { onSignedOut } = renderDialog();
    await waitFor(() => expect(onSignedOut).toHaveBeenCalledOnce());
    expect(screen.queryByRole("dialog")).toBeNull();
    const [, init] = fetch.mock.calls[0] as [string, RequestInit];
    expect((init.headers as Record<string, string>).Authorization).toBe(`Bearer ${jwt("student-1")}`);
    expect(JSON.parse(String(init.body)).heartbeats).toEqual(WAITING);
    expect(localStorage.getItem(ALICE)).toBeNull();
    expect(localStorage.getItem(BOB)).not.toBeNull(); // another user's is not this sign-out's
  });

  it("offline, says what would be lost and deletes only when asked", async () => {
    online = false;
    const { fetch } = batchRoute(true);
    const { onSignedOut, onCancel } = renderDialog();
    const dialog = await screen.findByRole("dialog", { name: "Unsent watching" });
    expect(dialog.hasAttribute("open")).toBe(true);
    expect(within(dialog).getByText(/3 progress reports/)).toBeTruthy();
    const lines = within(screen.getByTestId("signout-unsent")).getAllByRole("listitem").map((li) => li.textContent);
    expect(lines).toEqual(["video-a: 0:09 watched", "video-b: 0:30 watched"]); // 4 + 5.5 s, 30 s
    expect(within(dialog).getByText(/deletes them from this browser/)).toBeTruthy();

    fireEvent.click(within(dialog).getByRole("button", { name: "Send them now" }));
    await waitFor(() => expect(screen.getByTestId("signout-note").textContent).toMatch(/offline/));
    expect(fetch).not.toHaveBeenCalled();
    expect(onSignedOut).not.toHaveBeenCalled();
    expect(readOutbox(pageStorage, "student-1")).toEqual(WAITING);

    fireEvent.click(within(dialog).getByRole("button", { name: "Sign out and delete them" }));
    expect(onSignedOut).toHaveBeenCalledOnce();
    expect(onCancel).not.toHaveBeenCalled();
    expect(localStorage.getItem(ALICE)).toBeNull();
    expect(localStorage.getItem(BOB)).not.toBeNull();
  });

  it("sends them when asked once the network is back, then signs out", async () => {
    online = false;
    const { fetch } = batchRoute(true);
    const { onSignedOut } = renderDialog();
    const send = await screen.findByRole("button", { name: "Send them now" });
    online = true;
    fireEvent.click(send);
    await waitFor(() => expect(onSignedOut).toHaveBeenCalledOnce());
    expect(JSON.parse(String((fetch.mock.calls[0] as [string, RequestInit])[1].body)).heartbeats).toEqual(WAITING);
    expect(localStorage.getItem(ALICE)).toBeNull();
  });

  it("keeps the dialog when the server asks to wait, and Cancel keeps everything", async () => {
    batchRoute(false);
    const { onSignedOut, onCancel } = renderDialog();
    const dialog = await screen.findByRole("dialog", { name: "Unsent watching" });
    fireEvent.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(onCancel).toHaveBeenCalledOnce();
    expect(onSignedOut).not.toHaveBeenCalled();
    expect(readOutbox(pageStorage, "student-1")).toEqual(WAITING);
  });

  it("treats Escape as Cancel", async () => {
    online = false;
    const { onSignedOut, onCancel } = renderDialog();
    const dialog = await screen.findByRole("dialog", { name: "Unsent watching" });
    fireEvent(dialog, new Event("cancel", { cancelable: true }));
    expect(onCancel).toHaveBeenCalledOnce();
    expect(onSignedOut).not.toHaveBeenCalled();
    expect(localStorage.getItem(ALICE)).not.toBeNull();
  });
});
