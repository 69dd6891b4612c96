// @vitest-environment happy-dom
import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { session, type Course, type MaterialStatus } from "./api";
import { CourseDetailPage, LAST_HEARTBEAT_WAIT_MS } from "./CourseDetailPage";
import { fakeApi } from "./test/fakeApi";
import { jwt } from "./test/jwt";

const COURSE: Course = {
  course_id: "c1",
  title: "Physics",
  teacher_ids: ["t1"],
  modules: [{ module_id: "m1", title: "Motion", materials: [
    { material_id: "v1", title: "Speed", type: "video", duration: 60, url: "/media/speed.webm" },
  ] }],
};

const PROGRESS = {
  course_id: "c1", progress_percentage: 0, completed_materials: [], total_materials: 1,
  modules: [{ module_id: "m1", progress_percentage: 0, watched_seconds: 0, total_seconds: 60, materials: [] }],
  videos: { total: 1, started: 0, completed: 0, total_seconds: 60, watched_seconds: 0 },
};

/** The service as the page sees it: status reads reflect every heartbeat it answered 202 for
 * (API.md, read-your-writes), the resume position being the last one's `watch_time`. */
function service(answer: (body: string) => Promise<void> = async () => {}) {
  let position = 0;
  let statusReads = 0;
  const status = (): MaterialStatus =>
    ({ material_id: "v1", course_id: "c1", watch_time: position, total_duration: 60, progress_percentage: 0,
       watched_seconds: 0, unverified_seconds: 0, completed: false, completed_at: null, last_watched: null,
       playback_rate: null }) as MaterialStatus;
  fakeApi({
    "GET /api/courses/c1": () => COURSE,
    "GET /api/progress/course/c1": () => PROGRESS,
    "POST /api/progress/videos/status": () => (statusReads++, { statuses: { v1: status() }, unknown: [] }),
    "POST /api/progress/video/v1/watch-time": async (_url, init) => {
      await answer(String(init?.body));
      position = JSON.parse(String(init?.body)).watch_time;
      const accepted = { accepted: true, watch_time: position, progress_percentage: 0, watched_seconds: 0, completed: false };
      return new Response(JSON.stringify(accepted), { status: 202 });
    },
  });
  return { statusReads: () => statusReads };
}

/** The player's <video>, its metadata loaded (happy-dom plays nothing: its fields are set). */
function loadedVideo(): HTMLVideoElement {
  const video = screen.getByTestId("video") as HTMLVideoElement;
  Object.defineProperty(video, "duration", { configurable: true, value: 60 });
  fireEvent.loadedMetadata(video);
  return video;
}

beforeEach(() => {
  session.signIn(jwt("student-1"), { user_id: "student-1", role: "student", course_id: null });
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  session.signOut();
  localStorage.clear();
});

describe("closing the player", () => {
  it("resumes where the student closed it, also when that was between two heartbeats", async () => {
    const api = service();
    render(<CourseDetailPage courseId="c1" onUnauthorized={() => {}} />);
    fireEvent.click(await screen.findByRole("button", { name: "Play" }));
    const video = loadedVideo();
    Object.defineProperty(video, "paused", { configurable: true, value: false });
    await act(async () => void video.dispatchEvent(new Event("play"))); // reported: position 0
    for (let t = 1; t <= 8; t++) {
      video.currentTime = t; // 8 s played, before the 10 s heartbeat
      video.dispatchEvent(new Event("timeupdate"));
    }
    fireEvent.click(screen.getByRole("button", { name: "Close player" }));
    await waitFor(() => expect(api.statusReads()).toBe(2)); // the page's refresh after closing

    // The button and the next player follow that refresh.
    const again = await screen.findByRole("button", { name: /Play|Resume/ });
    expect(again.textContent).toBe("Resume");
    fireEvent.click(again);
    expect(loadedVideo().currentTime).toBe(8);
  });

  it("reads the bars anyway when the last heartbeat is not answered in time", async () => {
    // The player's last heartbeat (the exit) never gets an answer: a request has no time limit.
    const api = service((body) => (JSON.parse(body).event === "exit" ? new Promise(() => {}) : Promise.resolve()));
    render(<CourseDetailPage courseId="c1" onUnauthorized={() => {}} />);
    fireEvent.click(await screen.findByRole("button", { name: "Play" }));
    loadedVideo();
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      fireEvent.click(screen.getByRole("button", { name: "Close player" }));
      await act(async () => void vi.advanceTimersByTime(LAST_HEARTBEAT_WAIT_MS - 100));
      expect(api.statusReads()).toBe(1); // still waiting for the exit's answer
      await act(async () => void vi.advanceTimersByTime(200));
      await waitFor(() => expect(api.statusReads()).toBe(2));
    } finally {
      vi.useRealTimers();
    }
  });
});
