import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { OUTBOX_KEY, WatchTracker, backoffDelay, readOutbox, type StorageLike } from "./tracker";

class FakeVideo extends EventTarget {
  currentTime = 0;
  duration = 120;
  paused = true;
  seeking = false;
  playbackRate = 1;

  play(): void {
    this.paused = false;
    this.dispatchEvent(new Event("play"));
  }
  pause(): void {
    this.paused = true;
    this.dispatchEvent(new Event("pause"));
  }
  /** Advance playback by `seconds` in 0.25 s timeupdate steps. */
  advance(seconds: number): void {
    for (let i = 0; i < seconds * 4; i++) {
      this.currentTime += 0.25;
      this.dispatchEvent(new Event("timeupdate"));
    }
  }
  seek(to: number): void {
    this.seeking = true;
    this.dispatchEvent(new Event("seeking"));
    this.currentTime = to;
    this.seeking = false;
    this.dispatchEvent(new Event("seeked"));
  }
}

class MemoryStorage implements StorageLike {
  data = new Map<string, string>();
  getItem(key: string) {
    return this.data.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.data.set(key, value);
  }
}

type Call = { url: string; init: RequestInit; body: any };

function reply(status: number, body: unknown = {}, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(body), { status, headers });
}

const OK = { accepted: true, watch_time: 1, progress_percentage: 1, watched_seconds: 1, completed: false };

function setup(responses: Array<Response | Error> = [], options: Record<string, unknown> = {}) {
  const video = new FakeVideo();
  const storage = new MemoryStorage();
  const calls: Call[] = [];
  const queue = [...responses];
  const fetch = vi.fn(async (url: string, init: RequestInit) => {
    calls.push({ url, init, body: JSON.parse(init.body as string) });
    const next = queue.shift() ?? reply(202, OK);
    if (next instanceof Error) throw next;
    return next;
  });
  const events = new EventTarget();
  const tracker = new WatchTracker({
    video,
    materialId: "v1",
    getToken: () => "tok",
    fetch: fetch as unknown as typeof globalThis.fetch,
    storage,
    events,
    random: () => 0.5,
    sessionId: "sess",
    ...options,
  });
  return { video, storage, calls, fetch, tracker, events };
}

const watchCalls = (calls: Call[]) => calls.filter((c) => c.url.endsWith("/watch-time"));

/** Play: the tracker reports the start at once (the server's verified watching counts time from
 * it). Checked here, then set aside so that each test sees only the heartbeats it is about. */
async function startPlaying(video: FakeVideo, calls: Call[]): Promise<void> {
  const before = watchCalls(calls).length;
  video.play();
  await vi.advanceTimersByTimeAsync(0);
  const started = watchCalls(calls).slice(before);
  expect(started).toHaveLength(1);
  expect(started[0].body).toMatchObject({ watch_time: video.currentTime, played: [] });
  calls.splice(calls.indexOf(started[0]), 1);
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date("2026-11-28T10:00:00Z"));
});
afterEach(() => {
  vi.useRealTimers();
});

describe("interval", () => {
  it("sends at once on play, every 10 s while playing and nothing while paused", async () => {
    const { video, calls, tracker } = setup();
    tracker.start();
    video.play();
    await vi.advanceTimersByTimeAsync(0);
    expect(watchCalls(calls)).toHaveLength(1); // the start of playing
    await vi.advanceTimersByTimeAsync(9_999);
    expect(watchCalls(calls)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(watchCalls(calls)).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(watchCalls(calls)).toHaveLength(3);
    video.pause(); // the pause itself is reported once...
    await vi.advanceTimersByTimeAsync(0);
    expect(watchCalls(calls)).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(60_000); // ...then silence
    expect(watchCalls(calls)).toHaveLength(4);
  });

  it("sends the contract's fields with an increasing seq", async () => {
    const { video, calls, tracker } = setup();
    tracker.start();
    await startPlaying(video, calls); // seq 0
    video.advance(4);
    await tracker.heartbeat();
    await tracker.heartbeat();
    const [first, second] = watchCalls(calls);
    expect(first.url).toBe("/api/progress/video/v1/watch-time");
    expect((first.init.headers as Record<string, string>).Authorization).toBe("Bearer tok");
    expect(first.body).toEqual({
      watch_time: 4,
      total_duration: 120,
      client_ts: "2026-11-28T10:00:00.000Z",
      session_id: "sess",
      seq: 1,
      played: [[0, 4]],
      playback_rate: 1,
    });
    expect(second.body.seq).toBe(2);
    expect(second.body.played).toEqual([]);
  });

  it("names the player event each heartbeat reports", async () => {
    const { video, calls, tracker, events } = setup();
    tracker.start();
    video.play(); // reported at once
    video.advance(10);
    await vi.advanceTimersByTimeAsync(10_000); // the periodic heartbeat names none
    video.advance(2);
    video.seek(60);
    video.advance(1);
    video.pause();
    video.play();
    video.currentTime = 120;
    video.dispatchEvent(new Event("ended"));
    await vi.advanceTimersByTimeAsync(0);
    events.dispatchEvent(new Event("pagehide"));
    await vi.advanceTimersByTimeAsync(0);
    const sent = watchCalls(calls).map((c) => [c.body.event, c.body.played]);
    expect(sent).toEqual([
      ["play", []],
      [undefined, [[0, 10]]],
      ["seek", [[10, 12]]],
      ["pause", [[60, 61]]],
      ["play", []],
      ["ended", []],
      ["exit", []],
    ]);
  });

  it("sends nothing before the video's duration is known", async () => {
    const { video, calls, tracker } = setup();
    video.duration = Number.NaN;
    tracker.start();
    await tracker.heartbeat();
    expect(watchCalls(calls)).toHaveLength(0);
  });
});

describe("played ranges", () => {
  it("counts what was played and never what was skipped by seeking", async () => {
    const { video, calls, tracker } = setup();
    tracker.start();
    await startPlaying(video, calls);
    video.advance(5); // 0 -> 5
    video.seek(50); // sends a heartbeat at once
    await vi.advanceTimersByTimeAsync(0);
    video.advance(3); // 50 -> 53
    video.seek(20);
    await vi.advanceTimersByTimeAsync(0);
    video.advance(2); // 20 -> 22
    await tracker.heartbeat();
    const played = watchCalls(calls).map((c) => c.body.played);
    expect(played).toEqual([[[0, 5]], [[50, 53]], [[20, 22]]]);
    expect(watchCalls(calls).map((c) => c.body.watch_time)).toEqual([50, 20, 22]);
  });

  it("treats a jump without a seek event as a seek", async () => {
    const { video, calls, tracker } = setup();
    tracker.start();
    await startPlaying(video, calls);
    video.advance(2);
    video.currentTime = 90; // e.g. a scrub the browser did not report
    video.dispatchEvent(new Event("timeupdate"));
    video.advance(1);
    await tracker.heartbeat();
    expect(watchCalls(calls)[0].body.played).toEqual([[0, 2], [90, 91]]);
  });
});

describe("retries", () => {
  it("backs off exponentially with jitter, capped", () => {
    const low = [0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, 1000, 30_000, () => 0));
    const high = [0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, 1000, 30_000, () => 1));
    expect(low).toEqual([500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
    expect(high).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });

  it("retries 5xx and network errors on that schedule, then succeeds", async () => {
    const onProgress = vi.fn();
    const { video, calls, tracker } = setup([reply(202, OK), reply(503), new TypeError("offline"), reply(202, OK)], { onProgress });
    tracker.start();
    await startPlaying(video, calls);
    video.advance(1);
    const sent = tracker.heartbeat();
    await vi.advanceTimersByTimeAsync(0);
    expect(watchCalls(calls)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(749); // attempt 0: 500 + 0.5 * 500
    expect(watchCalls(calls)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(watchCalls(calls)).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1_500); // attempt 1: 1000 + 0.5 * 1000
    await sent;
    expect(watchCalls(calls)).toHaveLength(3);
    expect(onProgress).toHaveBeenCalledWith(OK);
  });

  it("honours Retry-After on 429 and 503", async () => {
    const { video, calls, tracker } = setup([reply(202, OK), reply(429, {}, { "Retry-After": "7" })]);
    tracker.start();
    await startPlaying(video, calls);
    void tracker.heartbeat();
    await vi.advanceTimersByTimeAsync(6_999);
    expect(watchCalls(calls)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(watchCalls(calls)).toHaveLength(2);
  });

  it.each([404, 422, 403])("shows %i and does not retry it", async (status) => {
    const onError = vi.fn();
    const body = { error: { code: "x", message: "refused because", details: null } };
    const { calls, tracker, storage } = setup([reply(status, body)], { onError });
    tracker.start();
    await tracker.heartbeat();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(watchCalls(calls)).toHaveLength(1);
    expect(onError).toHaveBeenCalledWith("refused because", status);
    expect(readOutbox(storage)).toEqual([]);
  });

  it("hands 401 to the login callback and keeps the heartbeat", async () => {
    const onUnauthorized = vi.fn();
    const { calls, tracker, storage } = setup([reply(401)], { onUnauthorized });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    await tracker.heartbeat();
    expect(onUnauthorized).toHaveBeenCalledOnce();
    expect(watchCalls(calls)).toHaveLength(1);
    expect(readOutbox(storage).map((i) => i.material_id)).toEqual(["v1"]);
  });
});

describe("outbox", () => {
  it("keeps what could not be sent and flushes it when the network is back", async () => {
    const down = Array.from({ length: 5 }, () => new TypeError("offline"));
    const { video, calls, tracker, storage, events } = setup([reply(202, OK), ...down]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    await startPlaying(video, calls);
    video.advance(3);
    video.paused = true; // quietly, so that only this heartbeat is in play
    const sent = tracker.heartbeat();
    await vi.advanceTimersByTimeAsync(60_000);
    await sent;
    expect(watchCalls(calls)).toHaveLength(5); // maxAttempts
    const kept = readOutbox(storage);
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatchObject({ material_id: "v1", watch_time: 3, played: [[0, 3]] });

    events.dispatchEvent(new Event("online"));
    await vi.advanceTimersByTimeAsync(0);
    const flush = calls.filter((c) => c.url === "/api/progress/heartbeats");
    expect(flush).toHaveLength(1);
    expect(flush[0].body).toEqual({ heartbeats: kept });
    expect(readOutbox(storage)).toEqual([]);
  });

  it("goes straight to the outbox while offline", async () => {
    let online = false;
    const { calls, tracker, storage } = setup([], { isOnline: () => online });
    tracker.start();
    await tracker.heartbeat();
    expect(calls).toHaveLength(0);
    expect(readOutbox(storage)).toHaveLength(1);
    online = true;
    await tracker.flushOutbox();
    expect(readOutbox(storage)).toEqual([]);
  });

  it("is flushed by the next page's tracker", async () => {
    const storage = new MemoryStorage();
    const left = { material_id: "v9", watch_time: 5, total_duration: 120, client_ts: "2026-11-28T09:00:00Z",
                   session_id: "old", seq: 4, played: [[0, 5]], playback_rate: 1 };
    storage.setItem(OUTBOX_KEY, JSON.stringify([left]));
    const { calls, tracker } = setup([reply(202, { results: [{ index: 0, accepted: true }] })], { storage });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls[0].url).toBe("/api/progress/heartbeats");
    expect(calls[0].body).toEqual({ heartbeats: [left] });
    expect(readOutbox(storage)).toEqual([]);
  });

  it("keeps the outbox when the flush fails", async () => {
    const storage = new MemoryStorage();
    storage.setItem(OUTBOX_KEY, JSON.stringify([{ material_id: "v9", seq: 1, session_id: "old" }]));
    const { tracker } = setup([reply(503)], { storage });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(readOutbox(storage)).toHaveLength(1);
  });
});

describe("final update", () => {
  it("is sent with keepalive and the bearer token when the player closes", async () => {
    const { video, calls, tracker, storage } = setup();
    tracker.start();
    video.play();
    video.advance(6);
    tracker.stop();
    await vi.advanceTimersByTimeAsync(0);
    const last = watchCalls(calls).at(-1)!;
    expect(last.init.keepalive).toBe(true);
    expect((last.init.headers as Record<string, string>).Authorization).toBe("Bearer tok");
    expect(last.body).toMatchObject({ watch_time: 6, played: [[0, 6]] });
    expect(readOutbox(storage)).toEqual([]); // acknowledged, so not kept
  });

  it("stays in the outbox if the page dies before the answer", async () => {
    const { video, calls, tracker, storage, events } = setup([reply(202, OK), new TypeError("page gone")]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    await startPlaying(video, calls);
    video.advance(2);
    events.dispatchEvent(new Event("pagehide"));
    await vi.advanceTimersByTimeAsync(0);
    expect(readOutbox(storage)).toHaveLength(1);
  });

  it("is sent when the page is hidden", async () => {
    const visibility = Object.assign(new EventTarget(), { visibilityState: "visible" });
    const { video, calls, tracker } = setup([], { visibility });
    tracker.start();
    video.play();
    video.advance(1);
    visibility.visibilityState = "hidden";
    visibility.dispatchEvent(new Event("visibilitychange"));
    await vi.advanceTimersByTimeAsync(0);
    expect(watchCalls(calls).at(-1)!.init.keepalive).toBe(true);
  });
});

describe("outbox batches", () => {
  it("stay under the body limit however many heartbeats wait", async () => {
    const storage = new MemoryStorage();
    const item = (seq: number) => ({
      material_id: "v1", watch_time: seq, total_duration: 120, client_ts: "2026-11-28T09:00:00.000Z",
      session_id: "a-long-session-identifier-0123456789", seq, played: [[seq, seq + 1], [seq + 2, seq + 3]],
      playback_rate: 1,
    });
    storage.setItem(OUTBOX_KEY, JSON.stringify(Array.from({ length: 1200 }, (_, i) => item(i))));
    const { calls, tracker } = setup([], { storage });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    const sizes = calls.map((c) => (c.init.body as string).length);
    expect(sizes.every((s) => s < 64 * 1024)).toBe(true);
    expect(calls.flatMap((c) => c.body.heartbeats.map((h: { seq: number }) => h.seq))).toEqual(
      Array.from({ length: 1200 }, (_, i) => i),
    );
    expect(readOutbox(storage)).toEqual([]);
  });
});
