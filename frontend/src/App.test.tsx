// @vitest-environment happy-dom
import { act, cleanup, configure, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Course, CourseProgress, MaterialStatus } from "./api";
import { session } from "./api";
import { App } from "./App";
import { tokenWith as token } from "./test/jwt";
import { fakeApi } from "./test/fakeApi";

configure({ asyncUtilTimeout: 8000 });

const COURSE: Course = {
  course_id: "c/1",
  title: "Physics",
  teacher_ids: ["t1"],
  modules: [
    {
      module_id: "m1",
      title: "Motion",
      materials: [
        { material_id: "v0", title: "Intro", type: "video", duration: 30, url: "/media/intro.webm" },
        { material_id: "v1", title: "Speed", type: "video", duration: 20, url: "/media/speed.webm" },
      ],
    },
  ],
};

const status = (id: string, watch: number): MaterialStatus =>
  ({
    material_id: id, course_id: "c/1", watch_time: watch, total_duration: 20, progress_percentage: 25,
    completed: false, completed_at: null, last_watched: null, playback_rate: null, unverified_seconds: 0,
    watched_seconds: watch,
  }) as MaterialStatus; // fmt: the fields the pages read

const PROGRESS = {
  course_id: "c/1", progress_percentage: 10, completed_materials: [], total_materials: 2,
  modules: [{ module_id: "m1", title: "Motion", progress_percentage: 10, watched_seconds: 5, materials: [] }],
  videos: { total: 2, started: 1, completed: 0, total_seconds: 50, watched_seconds: 5 },
} as unknown as CourseProgress;

const refused = () => new DOMException("Access is denied for this document.", "SecurityError");
/** Storage as a third-party frame sees it here: reaching either area throws SecurityError. */
function refuseStorage(): () => void {
  const saved = ["localStorage", "sessionStorage"].map((name) => [name, Object.getOwnPropertyDescriptor(globalThis, name)] as const);
  for (const [name] of saved)
    Object.defineProperty(globalThis, name, { configurable: true, get: () => { throw refused(); } });
  return () => {
    for (const [name, descriptor] of saved)
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
      else delete (globalThis as Record<string, unknown>)[name];
  };
}

/** The API of a launched learner; `renewed` answers POST /lti/session. */
function learnerApi(renewed?: string) {
  const sent: { path: string; authorization: string }[] = []; // what the API was asked, with which token
  const seen = (url: URL, init: RequestInit | undefined) =>
    sent.push({ path: url.pathname, authorization: new Headers(init?.headers).get("Authorization") ?? "" });
  const api = fakeApi({
    "GET /api/courses/c%2F1": (u, init) => (seen(u, init), COURSE),
    "POST /api/progress/videos/status": (u, init) => (seen(u, init), { statuses: { v0: status("v0", 0), v1: status("v1", 7) } }),
    "GET /api/progress/course/c%2F1": (u, init) => (seen(u, init), PROGRESS),
    "POST /lti/session": (u, init) => (seen(u, init), { token: renewed, expires_at: 0 }),
    "POST /api/progress/video/v1/watch-time": (u, init) => (
      seen(u, init), { progress_percentage: 30, completed: false, watch_time: 8, duration: 20 }
    ),
  });
  return { ...api, sent };
}

/** The tool's launch page opens `route` (its referrer: that page). */
function launchAt(t: string, route: string, referrer = `${window.location.origin}/lti/launch`) {
  Object.defineProperty(document, "referrer", { configurable: true, value: referrer });
  window.history.replaceState(null, "", `/#/launch/${t}/${route}`);
}

const NOW_S = 2_000_000_000;
let restore: () => void = () => {};

beforeEach(() => {
  vi.spyOn(Date, "now").mockReturnValue(NOW_S * 1000);
});

afterEach(() => {
  cleanup();
  restore();
  restore = () => {};
  session.signOut();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
  window.history.replaceState(null, "", "/");
});

describe("an LTI launch", () => {
  it("opens the launched video's player at once, resuming, with the token only in memory", async () => {
    restore = refuseStorage();
    const t = token({ sub: "lti-abc", role: "student", iat: NOW_S, exp: NOW_S + 900 });
    const { sent } = learnerApi();
    launchAt(t, "student/course/c%2F1/play/v1");
    render(<App />);
    const dialog = await screen.findByRole("dialog", { name: "Speed" });
    const video = dialog.querySelector("video")!;
    expect(video.getAttribute("src")).toBe("/media/speed.webm");
    expect(window.location.hash).toBe("#/course/c%2F1/play/v1"); // the token left the address
    expect(window.location.href).not.toContain(t);
    expect(session.token()).toBe(t);
    expect(sent.map((s) => s.path).sort()).toEqual(["/api/courses/c%2F1", "/api/progress/course/c%2F1", "/api/progress/videos/status"]);
    expect(new Set(sent.map((s) => s.authorization))).toEqual(new Set([`Bearer ${t}`]));
    expect(screen.getByText(/lti-abc \(student\)/)).toBeTruthy();

    // Resuming where they stopped: 7 s of 20, once the metadata is there.
    Object.defineProperty(video, "duration", { configurable: true, value: 20 });
    fireEvent.loadedMetadata(video);
    expect(video.currentTime).toBe(7);
  });

  it("tracks with the in-memory token where storage is refused, and renews it while open", async () => {
    restore = refuseStorage();
    // Issued 600 s ago: two thirds of its 900 s are gone, its renewal is due now.
    const t = token({ sub: "lti-abc", role: "student", iat: NOW_S - 600, exp: NOW_S + 300 });
    const next = token({ sub: "lti-abc", role: "student", iat: NOW_S, exp: NOW_S + 900 });
    const { sent } = learnerApi(next);
    launchAt(t, "student/course/c%2F1/play/v1");
    render(<App />);
    const dialog = await screen.findByRole("dialog", { name: "Speed" });
    await waitFor(() => expect(session.token()).toBe(next));
    const renewal = sent.find((s) => s.path === "/lti/session");
    expect(renewal?.authorization).toBe(`Bearer ${t}`); // renewed with the current token

    const video = dialog.querySelector("video")!;
    Object.defineProperty(video, "duration", { configurable: true, value: 20 });
    Object.defineProperty(video, "paused", { configurable: true, value: false });
    video.currentTime = 8;
    await act(async () => void video.dispatchEvent(new Event("play")));
    await waitFor(() => expect(sent.some((s) => s.path.endsWith("/watch-time"))).toBe(true));
    const beat = sent.find((s) => s.path.endsWith("/watch-time"));
    expect(beat?.authorization).toBe(`Bearer ${next}`);
  });

  it("never writes the launch's token to storage that works", async () => {
    const t = token({ sub: "lti-def", role: "teacher", iat: NOW_S, exp: NOW_S + 900 });
    fakeApi({});
    localStorage.clear();
    sessionStorage.clear();
    launchAt(t, "teacher/teacher/c%2F1");
    render(<App />);
    expect(window.location.hash).toBe("#/teacher/c%2F1");
    expect(session.user()).toEqual({ user_id: "lti-def", role: "teacher", course_id: null });
    const stored = [localStorage, sessionStorage].flatMap((area) =>
      Array.from({ length: area.length }, (_, i) => area.getItem(area.key(i)!) ?? ""),
    );
    expect(stored.some((value) => value.includes(t))).toBe(false);
    expect(document.cookie).not.toContain(t);
  });

  it("takes no session from a launch link the tool's launch page did not open", async () => {
    const mine = token({ sub: "lti-me", role: "student", iat: NOW_S, exp: NOW_S + 900 });
    const theirs = token({ sub: "lti-them", role: "student", iat: NOW_S, exp: NOW_S + 900 });
    fakeApi({ "GET /api/courses/c%2F1": () => COURSE });
    launchAt(theirs, "student/course/c%2F1", "https://forum.example/thread/1"); // a posted link
    render(<App />);
    expect(session.token()).toBeNull();
    expect(window.location.href).not.toContain(theirs); // the token left the address anyway
    cleanup();

    launchAt(mine, "student/course/c%2F1"); // a real launch...
    render(<App />);
    expect(session.token()).toBe(mine);
    await act(async () => {
      // ...then a page framing the tool sets another launch hash: not adopted either.
      window.history.replaceState(null, "", `/#/launch/${theirs}/student/course/c%2F1`);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    });
    expect(session.token()).toBe(mine);
    expect(window.location.href).not.toContain(theirs);
  });

  it("ends with a message when the renewal is refused", async () => {
    restore = refuseStorage();
    const t = token({ sub: "lti-abc", role: "student", iat: NOW_S - 600, exp: NOW_S + 300 });
    fakeApi({
      ...{ "GET /api/courses/c%2F1": () => COURSE },
      "POST /lti/session": () => new Response(JSON.stringify({ error: { code: "unauthenticated", message: "expired" } }), { status: 401 }),
    });
    launchAt(t, "student/course/c%2F1");
    render(<App />);
    expect(await screen.findByText(/Open the video again from your course in the LMS/)).toBeTruthy();
    expect(session.token()).toBeNull();
  });
});
