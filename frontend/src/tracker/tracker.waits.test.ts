/**
 * The tracker while the server asks it to wait (`Retry-After`) or does not answer at all: a
 * request that hangs, the clock set back during a wait, a flush's 401, a `Retry-After` date, the
 * page closing during a wait (found by the second review of the 0.9.0 tracker fixes). Each test
 * loads a fresh copy of the module: a request that never answers leaves the module's one flush
 * (`flushing`) pending, and must not leak into the next test.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { jwt, tokenWith } from "../test/jwt";
import { FakeVideo, MemoryStorage, OK, allAccepted, reply } from "../test/trackerKit";
import type { StorageLike } from "./tracker";

type Tracker = typeof import("./tracker");

const TOKEN = jwt("alice");

const busy = (after: string) => reply(503, { error: { code: "unavailable", message: "busy" } }, { "Retry-After": after });

type Call = { url: string; init: RequestInit; body: any };
type Answer = Response | "hang";

/** A fetch answering `answers` in turn, then 202s. "hang": a request that gets no answer, as
 * a real fetch behaves (it settles only when its signal aborts it, if it has one). */
function fakeFetch(answers: Answer[] | ((call: Call) => Answer | undefined)) {
  const calls: Call[] = [];
  const queue = Array.isArray(answers) ? [...answers] : [];
  const fetch = vi.fn((url: string, init: RequestInit) => {
    const call = { url, init, body: JSON.parse(init.body as string) };
    calls.push(call);
    const next =
      (Array.isArray(answers) ? queue.shift() : answers(call)) ??
      (url.endsWith("/heartbeats") ? allAccepted(call.body) : reply(202, OK));
    if (next !== "hang") return Promise.resolve(next);
    return new Promise<Response>((_, reject) => {
      init.signal?.addEventListener("abort", () => reject(new DOMException("The operation was aborted.", "AbortError")));
    });
  });
  return { calls, fetch: fetch as unknown as typeof globalThis.fetch };
}

async function load(): Promise<Tracker> {
  vi.resetModules();
  return import("./tracker");
}

function setup(t: Tracker, fetch: typeof globalThis.fetch, options: Record<string, unknown> = {}) {
  const video = new FakeVideo(3600);
  const storage = (options.storage as StorageLike) ?? new MemoryStorage();
  const events = new EventTarget();
  const tracker = new t.WatchTracker({
    video,
    materialId: "v1",
    getToken: () => TOKEN,
    fetch,
    storage,
    events,
    random: () => 0.5,
    sessionId: "sess",
    ...options,
  });
  return { video, storage, tracker, events, outbox: () => t.readOutbox(storage, "alice") };
}

/** Play for `seconds`, a second at a time. */
async function watch(video: FakeVideo, seconds: number): Promise<void> {
  for (let s = 0; s < seconds; s++) {
    video.advance(1);
    await vi.advanceTimersByTimeAsync(1_000);
  }
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date("2026-11-28T10:00:00Z"));
});
afterEach(() => {
  vi.useRealTimers();
});

describe("a request that never answers", () => {
  it("does not stop the player's heartbeats for good once it was the one waiting out a Retry-After", async () => {
    // 10 s: 503 Retry-After 5, so this heartbeat is the one that waits (holding); its retry at
    // 15 s gets no answer (a dead connection); the server is fine from then on.
    const { calls, fetch } = fakeFetch([reply(202, OK), busy("5"), "hang"]);
    const t = await load();
    const { video, tracker, outbox } = setup(t, fetch);
    tracker.start();
    video.play();
    await vi.advanceTimersByTimeAsync(0);
    await watch(video, 600); // ten minutes of watching, the server answering every other request
    expect(calls.length).toBeGreaterThan(10);
    expect(outbox().length).toBeLessThanOrEqual(1); // not ten minutes of heartbeats left unsent
  });

  it("does not keep the outbox from being sent for good when it was a flush's", async () => {
    // The page's flush asks to wait (Retry-After 20): the heartbeats of the wait join the
    // outbox; the flush at 20 s gets no answer; the network comes back twice after.
    const storage = new MemoryStorage();
    const old = { material_id: "v9", watch_time: 5, total_duration: 120, client_ts: "2026-11-28T09:00:00.000Z",
                  session_id: "old", seq: 4, played: [[0, 5]], playback_rate: 1 };
    storage.setItem("videoprogress.outbox.alice", JSON.stringify([old]));
    let batches = 0;
    const { calls, fetch } = fakeFetch((call) => {
      if (!call.url.endsWith("/heartbeats")) return undefined;
      batches++;
      return batches === 1 ? busy("20") : batches === 2 ? "hang" : undefined;
    });
    const t = await load();
    const { video, tracker, events, outbox } = setup(t, fetch, { storage });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    video.play();
    await watch(video, 120);
    events.dispatchEvent(new Event("online"));
    await watch(video, 60);
    events.dispatchEvent(new Event("online"));
    await watch(video, 60);
    expect(calls.filter((c) => c.url.endsWith("/heartbeats")).length).toBeGreaterThan(2);
    expect(outbox()).toEqual([]); // the old heartbeat and the ones of the wait reached the server
  });
});

describe("the computer's clock set back during a Retry-After", () => {
  it("does not make the player wait for as long as the clock went back", async () => {
    let offset = 0; // the system clock's correction (NTP, the user)
    const { calls, fetch } = fakeFetch([reply(202, OK), busy("5")]);
    const t = await load();
    const { video, tracker, outbox } = setup(t, fetch, { now: () => Date.now() + offset });
    tracker.start();
    video.play();
    await vi.advanceTimersByTimeAsync(0);
    await watch(video, 10); // 10 s: 503, Retry-After 5
    offset = -3_600_000; // the clock is put back an hour (it was an hour fast)
    await watch(video, 300); // five minutes more, the server fine again
    const sent = calls.flatMap((c) => c.body.heartbeats ?? [c.body]).map((h) => h.seq);
    expect(new Set(sent).size).toBeGreaterThan(25); // about one heartbeat every 10 s reached it
    expect(outbox().length).toBeLessThanOrEqual(1);
  });
});

describe("a token renewed after a flush's 401", () => {
  it("sends what that flush left once the player is answered again", async () => {
    // The page's flush asks to wait (Retry-After 25): the heartbeats of the wait join the
    // outbox. The token expires at 20 s; the flush at 25 s gets the 401, the page renews the
    // token (onUnauthorized), and from 30 s on the player's heartbeats are answered 202.
    const expired = tokenWith({ sub: "alice", role: "student", exp: 1 });
    let token = expired;
    const onUnauthorized = vi.fn(() => void (token = TOKEN));
    const storage = new MemoryStorage();
    const old = { material_id: "v9", watch_time: 5, total_duration: 120, client_ts: "2026-11-28T09:00:00.000Z",
                  session_id: "old", seq: 4, played: [[0, 5]], playback_rate: 1 };
    storage.setItem("videoprogress.outbox.alice", JSON.stringify([old]));
    const start = Date.now();
    let first = true;
    const { calls, fetch } = fakeFetch((call) => {
      if (first) return ((first = false), busy("25"));
      const bearer = (call.init.headers as Record<string, string>).Authorization;
      if (bearer === `Bearer ${expired}` && Date.now() - start >= 20_000) return reply(401);
      return undefined;
    });
    const t = await load();
    const { video, tracker, outbox } = setup(t, fetch, { storage, getToken: () => token, onUnauthorized });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    video.play();
    await watch(video, 300);
    expect(onUnauthorized).toHaveBeenCalled();
    expect(calls.filter((c) => c.url.endsWith("/watch-time") && c.init.headers && (c.init.headers as Record<string, string>).Authorization === `Bearer ${TOKEN}`).length).toBeGreaterThan(20);
    expect(outbox()).toEqual([]); // the old heartbeat and the first 25 s of watching reached the server
  });
});

describe("a Retry-After given as a date", () => {
  it("is read against the server's clock (its Date), not a computer's clock that is behind", async () => {
    const t = await load();
    // The server's clock says 10:00:00 and asks to come back at 10:00:30; this computer's clock
    // is five minutes behind (09:55:00): the wait is 30 s, not five and a half minutes.
    vi.setSystemTime(new Date("2026-11-28T09:55:00Z"));
    const answer = new Response(null, {
      status: 503,
      headers: { Date: "Sat, 28 Nov 2026 10:00:00 GMT", "Retry-After": "Sat, 28 Nov 2026 10:00:30 GMT" },
    });
    expect(t.retryDelay(answer, 0, 1_000, 30_000, () => 0.5)).toBe(30_000);
  });
});
describe("the page closing while the server asks to wait", () => {
  it("still tries the last heartbeat with keepalive where the outbox dies with the page (docs/browser.md)", async () => {
    const { safeStorage } = await import("./storage");
    const storage = safeStorage(() => {
      throw new DOMException("Access is denied for this document.", "SecurityError"); // an LMS frame
    });
    const { calls, fetch } = fakeFetch([reply(202, OK), busy("60")]);
    const t = await load();
    const { video, tracker, events } = setup(t, fetch, { storage });
    tracker.start();
    video.play();
    await vi.advanceTimersByTimeAsync(0);
    await watch(video, 30); // 10 s: 503, Retry-After 60; the 20 s and 30 s heartbeats wait in memory
    events.dispatchEvent(new Event("pagehide")); // the student closes the LMS tab
    await vi.advanceTimersByTimeAsync(0);
    const last = calls.at(-1)!;
    expect(last.body.event ?? last.body.heartbeats?.at(-1)?.event).toBe("exit");
    expect(last.init.keepalive).toBe(true);
  });
});
