import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { jwt, tokenWith } from "../test/jwt";
import { FakeVideo, MemoryStorage, OK, allAccepted, reply } from "../test/trackerKit";
import { safeStorage } from "./storage";
import {
  MAX_RETRY_AFTER_MS,
  OUTBOX_KEY,
  WatchTracker,
  backoffDelay,
  clearOutbox,
  readOutbox as readOutboxOf,
  retryDelay,
  tokenSubject,
  type StorageLike,
} from "./tracker";

const TOKEN = jwt("alice");
const readOutbox = (storage: StorageLike, owner = "alice") => readOutboxOf(storage, owner);

type Call = { url: string; init: RequestInit; body: any };


function setup(responses: Array<Response | Error> = [], options: Record<string, unknown> = {}) {
  const video = new FakeVideo();
  const storage = new MemoryStorage();
  const calls: Call[] = [];
  const queue = [...responses];
  const fetch = vi.fn(async (url: string, init: RequestInit) => {
    calls.push({ url, init, body: JSON.parse(init.body as string) });
    const next = queue.shift() ?? (url.endsWith("/heartbeats") ? allAccepted(calls.at(-1)!.body) : reply(202, OK));
    if (next instanceof Error) throw next;
    return next;
  });
  const events = new EventTarget();
  const tracker = new WatchTracker({
    video,
    materialId: "v1",
    getToken: () => TOKEN,
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
    expect((first.init.headers as Record<string, string>).Authorization).toBe(`Bearer ${TOKEN}`);
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

  it("waits at most ten minutes whatever Retry-After a proxy says", () => {
    // 30 days is past setTimeout's 24.8-day limit, which would fire at once, again and again.
    const answer = (after: string) => new Response(null, { status: 503, headers: { "Retry-After": after } });
    expect(retryDelay(answer("2592000"), 0, 1_000, 30_000, () => 0.5)).toBe(MAX_RETRY_AFTER_MS);
    expect(retryDelay(answer("45"), 0, 1_000, 30_000, () => 0.5)).toBe(45_000); // the server's own
    expect(MAX_RETRY_AFTER_MS).toBe(600_000);
  });

  it("reads a Retry-After given as a date (RFC 9110), as a proxy in front of the service may send", () => {
    const answer = (after: string) => new Response(null, { status: 503, headers: { "Retry-After": after } });
    const inTwoMinutes = new Date(Date.now() + 120_000).toUTCString(); // "Sat, 28 Nov 2026 10:02:00 GMT"
    expect(retryDelay(answer(inTwoMinutes), 0, 1_000, 30_000, () => 0.5)).toBe(120_000);
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
    const down = Array.from({ length: 6 }, () => new TypeError("offline")); // 5 tries, then a flush
    const { video, calls, tracker, storage, events } = setup([reply(202, OK), ...down]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    await startPlaying(video, calls);
    video.advance(3);
    video.paused = true; // quietly, so that only this heartbeat is in play
    const sent = tracker.heartbeat();
    await vi.advanceTimersByTimeAsync(750 + 1_500 + 3_000 + 6_000); // the backoff between tries
    await sent;
    expect(watchCalls(calls)).toHaveLength(5); // maxAttempts, then handed to a flush
    const flush = () => calls.filter((c) => c.url === "/api/progress/heartbeats");
    expect(flush()).toHaveLength(1); // which failed too: it will try again later
    const kept = readOutbox(storage);
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatchObject({ material_id: "v1", watch_time: 3, played: [[0, 3]] });

    events.dispatchEvent(new Event("online"));
    await vi.advanceTimersByTimeAsync(0);
    expect(flush()).toHaveLength(2);
    expect(flush()[1].body).toEqual({ heartbeats: kept });
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
    storage.setItem(`${OUTBOX_KEY}.alice`, JSON.stringify([left]));
    const { calls, tracker } = setup([reply(202, { results: [{ index: 0, accepted: true }] })], { storage });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls[0].url).toBe("/api/progress/heartbeats");
    expect(calls[0].body).toEqual({ heartbeats: [left] });
    expect(readOutbox(storage)).toEqual([]);
  });

  it("keeps the outbox when the flush fails", async () => {
    const storage = new MemoryStorage();
    storage.setItem(`${OUTBOX_KEY}.alice`, JSON.stringify([{ material_id: "v9", seq: 1, session_id: "old" }]));
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
    expect((last.init.headers as Record<string, string>).Authorization).toBe(`Bearer ${TOKEN}`);
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
    storage.setItem(`${OUTBOX_KEY}.alice`, JSON.stringify(Array.from({ length: 1200 }, (_, i) => item(i))));
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

describe("one outbox per user", () => {
  const BOB = jwt("bob");
  const heartbeatsIn = (calls: Call[]) => calls.flatMap((c) => c.body.heartbeats ?? [c.body]);
  const bearerOf = (c: Call) => (c.init.headers as Record<string, string>).Authorization;

  it("files heartbeats under the token's user and sends them only with that user's token", async () => {
    let online = false;
    let token: string | null = TOKEN;
    const { calls, tracker, storage, video } = setup([], { isOnline: () => online, getToken: () => token });
    tracker.start();
    await tracker.heartbeat(); // offline: it waits in alice's outbox
    expect(readOutbox(storage, "alice")).toHaveLength(1);
    expect(readOutbox(storage, "bob")).toEqual([]);

    token = BOB; // alice signed out, bob signed in on the same browser, and the network is back
    online = true;
    video.advance(2);
    await tracker.heartbeat(); // alice's player: it waits for alice too
    await tracker.flushOutbox(); // sends bob's outbox (empty), never alice's
    expect(calls).toHaveLength(0);
    expect(readOutbox(storage, "alice").map((i) => i.seq)).toEqual([0, 1]);

    token = TOKEN; // alice again
    await tracker.flushOutbox();
    expect(calls.map(bearerOf)).toEqual([`Bearer ${TOKEN}`]);
    expect(heartbeatsIn(calls).map((h) => h.seq)).toEqual([0, 1]);
    expect(readOutbox(storage, "alice")).toEqual([]);
  });

  it("never sends a retry with the token of a user who signed in meanwhile", async () => {
    let token = TOKEN;
    const { calls, tracker, storage } = setup([reply(503, {}, { "Retry-After": "5" })], { getToken: () => token });
    tracker.start();
    const sent = tracker.heartbeat();
    await vi.advanceTimersByTimeAsync(0);
    expect(watchCalls(calls)).toHaveLength(1);
    token = BOB;
    await vi.advanceTimersByTimeAsync(60_000);
    await sent;
    expect(calls.map(bearerOf)).toEqual([`Bearer ${TOKEN}`]); // the first try only
    expect(readOutbox(storage, "alice")).toHaveLength(1);
    expect(readOutbox(storage, "bob")).toEqual([]);
  });

  it("stops a retry whose heartbeat was deleted at sign-out", async () => {
    let token: string | null = TOKEN;
    const { calls, tracker, storage } = setup([reply(503, {}, { "Retry-After": "5" })], { getToken: () => token });
    tracker.start();
    const sent = tracker.heartbeat();
    await vi.advanceTimersByTimeAsync(0);
    clearOutbox(storage, "alice"); // what the sign-out dialog's "delete" does
    token = TOKEN; // still signed in, so only the deletion can stop it
    await vi.advanceTimersByTimeAsync(60_000);
    await sent;
    expect(watchCalls(calls)).toHaveLength(1);
    expect(storage.data.size).toBe(0); // and it did not come back
  });

  it("files heartbeats made before any token under the first user it sees", async () => {
    let token: string | null = null;
    const onUnauthorized = vi.fn();
    const { calls, tracker, storage, video } = setup([], { getToken: () => token, onUnauthorized });
    tracker.start();
    await tracker.heartbeat();
    expect(onUnauthorized).toHaveBeenCalledOnce();
    expect(calls).toHaveLength(0);
    expect(storage.data.size).toBe(0); // whose it is is not known yet: not stored for anyone
    token = TOKEN;
    video.advance(1);
    await tracker.heartbeat();
    await tracker.flushOutbox();
    expect(heartbeatsIn(calls).map((h) => h.seq).sort()).toEqual([0, 1]);
    expect(calls.every((c) => bearerOf(c) === `Bearer ${TOKEN}`)).toBe(true);
  });

  it("drops the outbox that 0.7 shared between users instead of sending it", async () => {
    const storage = new MemoryStorage();
    storage.setItem(OUTBOX_KEY, JSON.stringify([{ material_id: "v9", seq: 1, session_id: "old" }]));
    const { calls, tracker } = setup([], { storage, getToken: () => BOB });
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(0);
    expect(storage.getItem(OUTBOX_KEY)).toBeNull();
  });

  it("clears one user's outbox at sign-out and leaves the others'", () => {
    const storage = new MemoryStorage();
    const item = { material_id: "v1", watch_time: 1, total_duration: 120, client_ts: "2026-11-28T09:00:00Z",
                   session_id: "s", seq: 0, played: [[0, 1]], playback_rate: 1 };
    storage.setItem(`${OUTBOX_KEY}.alice`, JSON.stringify([item]));
    storage.setItem(`${OUTBOX_KEY}.bob`, JSON.stringify([item]));
    clearOutbox(storage, "alice");
    expect(readOutbox(storage, "alice")).toEqual([]);
    expect(storage.getItem(`${OUTBOX_KEY}.alice`)).toBeNull();
    expect(readOutbox(storage, "bob")).toEqual([item]);
  });

  it("reads the user from the token's sub, whatever its encoding needs", () => {
    expect(tokenSubject(jwt("student-1"))).toBe("student-1");
    expect(tokenSubject(jwt("ü?>>"))).toBe(tokenSubject(jwt("ü?>>"))); // base64url '-' '_'
    expect(tokenSubject(jwt("a"))).not.toBe(tokenSubject(jwt("b")));
    for (const bad of [null, "", "opaque", "a.b.c", `x.${btoa(JSON.stringify({ sub: 7 }))}.y`]) {
      expect(tokenSubject(bad)).toBeNull();
    }
  });
});

describe("batch answers", () => {
  const item = (seq: number) => ({ material_id: "v1", watch_time: seq, total_duration: 120,
    client_ts: "2026-11-28T09:00:00.000Z", session_id: "old", seq, played: [[seq, seq + 1]], playback_rate: 1 });
  const refused = (index: number, code: string) => ({ index, accepted: false, error: { code, message: code, details: null } });
  const batchCalls = (calls: Call[]) => calls.filter((c) => c.url === "/api/progress/heartbeats");
  const seqsSent = (c: Call) => c.body.heartbeats.map((h: { seq: number }) => h.seq);

  function withOutbox(responses: Array<Response | Error>, seqs: number[]) {
    const storage = new MemoryStorage();
    storage.setItem(`${OUTBOX_KEY}.alice`, JSON.stringify(seqs.map(item)));
    return { ...setup(responses, { storage }), storage };
  }

  it("keeps items refused for a reason that passes, drops the refused for good, and retries after Retry-After", async () => {
    const answer = reply(202, { results: [
      { index: 0, accepted: true }, refused(1, "rate_limited"), refused(2, "invalid"), refused(3, "buffer_full"),
      refused(4, "forbidden"), refused(5, "unavailable"), refused(6, "not_found"),
    ] }, { "Retry-After": "7" });
    const { calls, tracker, storage } = withOutbox([answer], [0, 1, 2, 3, 4, 5, 6]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(batchCalls(calls)).toHaveLength(1);
    expect(readOutbox(storage).map((i) => i.seq)).toEqual([1, 3, 5]);
    await vi.advanceTimersByTimeAsync(6_999);
    expect(batchCalls(calls)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(batchCalls(calls).map(seqsSent)).toEqual([[0, 1, 2, 3, 4, 5, 6], [1, 3, 5]]);
    await vi.advanceTimersByTimeAsync(0);
    expect(readOutbox(storage)).toEqual([]); // the second answer took them all
  });

  it("backs off between tries when the server names no delay", async () => {
    const again = () => reply(202, { results: [refused(0, "unavailable")] });
    const { calls, tracker, storage } = withOutbox([again(), again(), again()], [4]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    const times = [Date.now()];
    for (const expected of [750, 1_500, 3_000]) { // 2^n s, half of it jittered (random 0.5)
      await vi.advanceTimersByTimeAsync(expected - 1);
      expect(batchCalls(calls)).toHaveLength(times.length);
      await vi.advanceTimersByTimeAsync(1);
      expect(batchCalls(calls)).toHaveLength(times.length + 1);
      times.push(Date.now());
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(readOutbox(storage)).toEqual([]);
  });

  it("keeps the whole batch on a 503 and sends it after its Retry-After", async () => {
    const { calls, tracker, storage } = withOutbox([reply(503, {}, { "Retry-After": "12" })], [1, 2]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(11_999);
    expect(batchCalls(calls)).toHaveLength(1);
    expect(readOutbox(storage).map((i) => i.seq)).toEqual([1, 2]);
    await vi.advanceTimersByTimeAsync(1);
    expect(batchCalls(calls).map(seqsSent)).toEqual([[1, 2], [1, 2]]);
  });

  it("stops between batches when another user signs in", async () => {
    const storage = new MemoryStorage();
    storage.setItem(`${OUTBOX_KEY}.alice`, JSON.stringify(Array.from({ length: 700 }, (_, i) => item(i))));
    const sent: Call[] = [];
    const { calls, tracker } = setup([], { storage, getToken: () => (sent.length ? jwt("bob") : TOKEN) });
    const flushed = tracker.flushOutbox();
    sent.push(...calls); // the first batch is on its way: bob signs in before the next one
    await flushed;
    expect(calls).toHaveLength(1); // bob's token never carries alice's
    const first = calls[0].body.heartbeats.length;
    expect(readOutbox(storage).map((i) => i.seq)).toEqual(Array.from({ length: 700 - first }, (_, i) => first + i));
  });

  it("drops a batch refused as a whole for good (a token that is not a student's)", async () => {
    const { calls, tracker, storage } = withOutbox([reply(403, { error: { code: "forbidden", message: "no" } })], [1, 2]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(batchCalls(calls)).toHaveLength(1);
    expect(readOutbox(storage)).toEqual([]);
  });

  it("keeps the batch when a 202 cannot be read", async () => {
    const { tracker, storage } = withOutbox([reply(202, { nothing: "here" })], [1]);
    tracker.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(readOutbox(storage).map((i) => i.seq)).toEqual([1]);
  });
});

describe("storage the browser refuses", () => {
  it("keeps the outbox in memory and tracks as usual", async () => {
    const storage = safeStorage(() => {
      throw new DOMException("Access is denied for this document.", "SecurityError");
    });
    let online = false;
    const { calls, tracker, video } = setup([], { storage, isOnline: () => online });
    tracker.start();
    video.advance(3);
    await tracker.heartbeat();
    expect(readOutboxOf(storage, "alice")).toHaveLength(1);
    online = true;
    await tracker.flushOutbox();
    expect(calls.map((c) => c.body.heartbeats[0].watch_time)).toEqual([3]);
    expect(readOutboxOf(storage, "alice")).toEqual([]);
  });
});

describe("a server that asks to wait", () => {
  const busy = () => reply(503, { error: { code: "unavailable", message: "busy" } }, { "Retry-After": "60" });

  it("sends nothing before its Retry-After has passed, and about one try a minute after", async () => {
    const { video, calls, tracker } = setup(Array.from({ length: 1000 }, busy));
    video.duration = 3600;
    tracker.start();
    video.play();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(1); // the play heartbeat: 503, come back in 60 s
    for (let s = 1; s < 60; s++) {
      video.advance(1);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(calls).toHaveLength(1); // the heartbeats of these 59 s wait in the outbox
    for (let s = 60; s <= 600; s++) {
      video.advance(1);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(calls.length).toBeLessThanOrEqual(1 + 2 * 10); // ten minutes: about a try a minute, not one per heartbeat
  });
});

describe("a last heartbeat refused while the page stays", () => {
  const flushed = (calls: Call[]) => calls.filter((c) => c.url === "/api/progress/heartbeats").flatMap((c) => c.body.heartbeats);

  it("is sent again when the player closed during a 503", async () => {
    const { video, calls, tracker, storage } = setup([reply(202, OK), reply(503)]);
    tracker.start();
    await startPlaying(video, calls);
    video.advance(6);
    tracker.stop(); // the student closes the player; the course page stays open
    await vi.advanceTimersByTimeAsync(0);
    expect(readOutbox(storage)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(flushed(calls)).toMatchObject([{ event: "exit", played: [[0, 6]] }]);
    expect(readOutbox(storage)).toEqual([]);
  });

  it("is sent again when the tab was hidden during a 503 and playing goes on", async () => {
    const visibility = Object.assign(new EventTarget(), { visibilityState: "visible" });
    const { video, calls, tracker, storage } = setup([reply(202, OK), reply(503)], { visibility });
    tracker.start();
    await startPlaying(video, calls);
    video.advance(4);
    visibility.visibilityState = "hidden";
    visibility.dispatchEvent(new Event("visibilitychange"));
    await vi.advanceTimersByTimeAsync(0);
    visibility.visibilityState = "visible";
    visibility.dispatchEvent(new Event("visibilitychange"));
    for (let s = 0; s < 60; s++) {
      video.advance(1);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(readOutbox(storage)).toEqual([]); // the played [0, 4] reached the server
    expect(flushed(calls)).toMatchObject([{ played: [[0, 4]] }]);
  });
});

describe("the computer's clock", () => {
  /** API.md: the resume position is the reading with the latest client_ts, then seq. */
  const resumeAt = (calls: Call[]) =>
    watchCalls(calls)
      .map((c) => c.body)
      .sort((a, b) => a.client_ts.localeCompare(b.client_ts) || a.seq - b.seq)
      .at(-1).watch_time;

  it("set back during a session never makes an earlier reading the resume position", async () => {
    let clock = Date.parse("2026-11-28T10:00:00Z");
    const { video, calls, tracker } = setup([], { now: () => clock });
    tracker.start();
    video.play();
    video.advance(8);
    clock += 8_000;
    await tracker.heartbeat(); // 8 s in
    clock -= 120_000; // the system clock is corrected two minutes back (NTP)
    video.advance(8);
    clock += 8_000;
    video.pause(); // the student stops at 16 s
    await vi.advanceTimersByTimeAsync(0);
    expect(video.currentTime).toBe(16);
    expect(resumeAt(calls)).toBe(16);
  });
});

describe("two tabs of one video", () => {
  /** API.md: the resume position is the reading with the latest client_ts, then seq. */
  const resumeAt = (calls: Call[]) =>
    watchCalls(calls)
      .map((c) => c.body)
      .sort((a, b) => a.client_ts.localeCompare(b.client_ts) || a.seq - b.seq)
      .at(-1).watch_time;

  it("the tab left paused earlier does not move the resume position back when it closes", async () => {
    const storage = new MemoryStorage();
    const a = setup([], { storage, sessionId: "tab-a" });
    const b = setup([], { storage, sessionId: "tab-b" });
    const calls = () => [...a.calls, ...b.calls];
    a.tracker.start();
    a.video.play();
    a.video.advance(5);
    await vi.advanceTimersByTimeAsync(5_000);
    a.video.pause(); // tab A: paused at 5 s, left open
    await vi.advanceTimersByTimeAsync(60_000);

    b.tracker.start(); // tab B: resumes at 5 s and watches to 35 s
    b.video.seek(5);
    b.video.play();
    for (let s = 0; s < 30; s++) {
      b.video.advance(1);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    b.video.pause();
    b.events.dispatchEvent(new Event("pagehide"));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(resumeAt(calls())).toBe(35);

    a.events.dispatchEvent(new Event("pagehide")); // the student closes the old tab
    await vi.advanceTimersByTimeAsync(0);
    expect(resumeAt(calls())).toBe(35);
  });

  it("the tab left paused earlier does not move the resume position back when the student looks at it", async () => {
    const storage = new MemoryStorage();
    const page = () => Object.assign(new EventTarget(), { visibilityState: "visible" });
    const pages = { a: page(), b: page() };
    const a = setup([], { storage, sessionId: "tab-a", visibility: pages.a });
    const b = setup([], { storage, sessionId: "tab-b", visibility: pages.b });
    const calls = () => [...a.calls, ...b.calls];
    const look = (tab: "a" | "b", state: string) => {
      pages[tab].visibilityState = state;
      pages[tab].dispatchEvent(new Event("visibilitychange"));
    };
    a.tracker.start();
    a.video.play();
    a.video.advance(5);
    await vi.advanceTimersByTimeAsync(5_000);
    a.video.pause(); // tab A: paused at 5 s
    look("a", "hidden"); // the student opens tab B
    b.tracker.start();
    b.video.seek(5);
    b.video.play();
    for (let s = 0; s < 30; s++) {
      b.video.advance(1);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    b.video.pause(); // tab B: paused at 35 s
    await vi.advanceTimersByTimeAsync(60_000);
    look("b", "hidden"); // a look at tab A, and back to B
    look("a", "visible");
    await vi.advanceTimersByTimeAsync(5_000);
    look("a", "hidden");
    look("b", "visible");
    await vi.advanceTimersByTimeAsync(0);
    expect(resumeAt(calls())).toBe(35);
  });
});

describe("a token renewed after a 401", () => {
  it("sends the heartbeat the 401 left waiting once the player is answered again", async () => {
    // The embed's documented use: onUnauthorized renews the token and tracking goes on.
    let token = tokenWith({ sub: "alice", role: "student", exp: 1 }); // expires during the video
    const onUnauthorized = vi.fn(() => void (token = TOKEN)); // alice's renewed token
    const { video, calls, tracker, storage } = setup([reply(202, OK), reply(401)], {
      getToken: () => token,
      onUnauthorized,
    });
    tracker.start();
    await startPlaying(video, calls);
    video.advance(10);
    await vi.advanceTimersByTimeAsync(10_000); // the 10 s heartbeat: 401, the token had expired
    expect(onUnauthorized).toHaveBeenCalledOnce();
    for (let s = 0; s < 60; s++) {
      video.advance(1);
      await vi.advanceTimersByTimeAsync(1_000); // heartbeats answered 202 again
    }
    expect(readOutbox(storage)).toEqual([]); // [0, 10] reached the server
  });

  it("sends what was played before the page had a token once it has one", async () => {
    let token: string | null = null; // e.g. an LMS page whose token arrives after the video started
    const { video, calls, tracker, storage } = setup([], { getToken: () => token });
    tracker.start();
    video.play();
    video.advance(10);
    await vi.advanceTimersByTimeAsync(10_000); // no token: kept in memory for its user
    token = TOKEN;
    for (let s = 0; s < 60; s++) {
      video.advance(1);
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(watchCalls(calls).length).toBeGreaterThan(0);
    expect(readOutbox(storage)).toEqual([]);
  });
});

describe("a server whose body limit is below the default", () => {
  it("gets every waiting heartbeat in smaller batches instead of dropping them on 413", async () => {
    const LIMIT = 16 * 1024; // MAX_BODY_BYTES=16384 (README: settable; 64 KiB by default)
    const storage = new MemoryStorage();
    const item = (seq: number) => ({ material_id: "v1", watch_time: seq % 120, total_duration: 120,
      client_ts: "2026-11-28T09:00:00.000Z", session_id: "offline-session", seq, played: [[seq % 120, (seq % 120) + 1]],
      playback_rate: 1 });
    storage.setItem(`${OUTBOX_KEY}.alice`, JSON.stringify(Array.from({ length: 300 }, (_, i) => item(i))));
    const taken: number[] = [];
    const fetch = vi.fn(async (_url: string, init: RequestInit) => {
      const body = init.body as string;
      if (body.length > LIMIT) return reply(413, { error: { code: "body_too_large", message: "too large" } });
      const { heartbeats } = JSON.parse(body);
      taken.push(...heartbeats.map((h: { seq: number }) => h.seq));
      return allAccepted({ heartbeats });
    });
    const { tracker } = setup([], { storage, fetch });
    tracker.start();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(taken.sort((x, y) => x - y)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(readOutbox(storage)).toEqual([]);
  });
});
