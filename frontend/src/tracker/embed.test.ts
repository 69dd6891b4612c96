// @vitest-environment happy-dom
import { afterEach, describe, expect, it, vi } from "vitest";
import { jwt } from "../test/jwt";
import { track } from "./embed";

const TOKEN = jwt("student-7");
const OUTBOX = "videoprogress.outbox.student-7";

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
  localStorage.clear();
});

function fakeVideo() {
  return Object.assign(new EventTarget(), { currentTime: 0, duration: 60, paused: true, seeking: false, playbackRate: 1 });
}

function reply(status: number, body: unknown = {}) {
  return new Response(JSON.stringify(body), { status });
}

describe("track (the embeddable tracker)", () => {
  it("sends heartbeats for a plain video to apiBase with the token, and stop() sends the last one", async () => {
    const fetch = vi.fn(async () => reply(202, { accepted: true, watch_time: 5, progress_percentage: 8.3, watched_seconds: 5, completed: false }));
    vi.stubGlobal("fetch", fetch);
    const video = fakeVideo();
    const onProgress = vi.fn();
    const handle = track(video, { apiBase: "https://progress.example/", videoId: "vid 1", getToken: () => TOKEN, onProgress });
    video.paused = false;
    video.dispatchEvent(new Event("play"));
    video.currentTime = 2;
    video.dispatchEvent(new Event("timeupdate"));
    video.currentTime = 5;
    video.dispatchEvent(new Event("timeupdate"));
    video.paused = true;
    video.dispatchEvent(new Event("pause"));
    await vi.waitFor(() => expect(onProgress).toHaveBeenCalled());
    const [url, init] = fetch.mock.calls.at(-1) as unknown as [string, RequestInit];
    expect(url).toBe("https://progress.example/api/progress/video/vid%201/watch-time");
    expect((init.headers as Record<string, string>).Authorization).toBe(`Bearer ${TOKEN}`);
    const body = JSON.parse(String(init.body));
    expect(body.watch_time).toBe(5);
    expect(body.played).toEqual([[0, 5]]);
    expect(body.session_id).toBe(handle.sessionId);

    const before = fetch.mock.calls.length;
    handle.stop();
    expect(fetch.mock.calls.length).toBe(before + 1);
    expect((fetch.mock.calls.at(-1) as unknown as [string, RequestInit])[1].keepalive).toBe(true);
  });

  it("hands a 401 to onUnauthorized and keeps the heartbeat in the outbox", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => reply(401, { error: { code: "unauthenticated", message: "expired" } })));
    const video = fakeVideo();
    const onUnauthorized = vi.fn();
    const handle = track(video, { videoId: "v1", getToken: () => TOKEN, onUnauthorized });
    await handle.heartbeat();
    expect(onUnauthorized).toHaveBeenCalledOnce();
    expect(JSON.parse(localStorage.getItem(OUTBOX) ?? "[]")).toHaveLength(1);
    handle.stop();
  });

  it("refuses to start without a video id or a token getter", () => {
    const video = fakeVideo();
    expect(() => track(video, { videoId: "", getToken: () => null })).toThrow(/videoId/);
    expect(() => track(video, { videoId: "v", getToken: undefined as never })).toThrow(/getToken/);
  });
});

describe("flush (the embeddable outbox sender)", () => {
  it("sends what an earlier page left through the batch route of apiBase", async () => {
    const { flush } = await import("./embed");
    localStorage.setItem(
      OUTBOX,
      JSON.stringify([{ material_id: "v1", watch_time: 3, total_duration: 60, client_ts: "2026-12-01T00:00:00Z", session_id: "s", seq: 0, played: [[0, 3]], playback_rate: 1 }]),
    );
    const fetch = vi.fn(async () => reply(202, { results: [{ index: 0, accepted: true }] }));
    vi.stubGlobal("fetch", fetch);
    await flush({ apiBase: "https://progress.example", getToken: () => TOKEN });
    expect((fetch.mock.calls[0] as unknown as [string])[0]).toBe("https://progress.example/api/progress/heartbeats");
    expect(localStorage.getItem(OUTBOX)).toBeNull(); // an emptied outbox leaves no key
  });
});
