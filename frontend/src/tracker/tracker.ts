/**
 * WatchTracker: reports an HTML5 video's watching to the progress API. No UI, no React.
 *
 * - A heartbeat at once on play, every `intervalMs` (10 s) while playing, and at once on pause, seek, end and
 *   when the page is hidden or closed (that last one with `fetch(..., {keepalive: true})`,
 *   since sendBeacon cannot send the bearer token).
 * - Each heartbeat carries `client_ts`, `session_id`, `seq` and the ranges actually played since
 *   the previous one (from `timeupdate`; a seek closes the open range, so seeks never count).
 * - A heartbeat sent for a player event names it in `event`: `play`, `pause`, `seek`, `ended`,
 *   `exit` (the page closes or the player stops); the server reports them to the LRS (xAPI).
 * - Every heartbeat goes to its user's outbox before it is sent and leaves it once the server
 *   has answered for it. 5xx, 429 and network errors are retried with exponential backoff and
 *   jitter (or after `Retry-After`, during which the player's other heartbeats wait in the
 *   outbox); what still fails waits in the outbox, flushed through
 *   `POST /api/progress/heartbeats` when the network is back, on the next page load, after a
 *   delay while the server asks for one, and once a heartbeat is answered after a 401. 401
 *   hands control to `onUnauthorized` (the heartbeat waits); 403, 404 and 422 are reported and
 *   never retried; a 413 on a batch makes the batches smaller.
 * - One outbox per user (the token's `sub`), in `localStorage` or, where the browser refuses it,
 *   in memory (`storage.ts`). A tracker belongs to the user of the first token it reads: its
 *   heartbeats are sent only with a token of that user, so a shared browser never files one
 *   student's watching under another's.
 */
import type { BatchResults, HeartbeatAccepted, HeartbeatBody, HeartbeatItem, PlayerEvent, Range } from "../api-types";
import { pageStorage, type StorageLike } from "./storage";

export type { StorageLike } from "./storage";

/** The parts of an HTMLVideoElement the tracker uses (a real element satisfies it). */
export interface VideoLike extends EventTarget {
  currentTime: number;
  duration: number;
  paused: boolean;
  seeking: boolean;
  playbackRate: number;
}

export interface TrackerOptions {
  video: VideoLike;
  materialId: string;
  getToken: () => string | null;
  apiBase?: string;
  intervalMs?: number;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  fetch?: typeof fetch;
  storage?: StorageLike;
  now?: () => number;
  random?: () => number;
  isOnline?: () => boolean;
  /** Where `online` and `pagehide` are listened for (the window). */
  events?: EventTarget;
  /** Where `visibilitychange` is listened for, with its `visibilityState` (the document). */
  visibility?: EventTarget & { visibilityState: string };
  sessionId?: string;
  onProgress?: (reply: HeartbeatAccepted) => void;
  onUnauthorized?: () => void;
  onError?: (message: string, status: number) => void;
}

/** The outbox of user `sub` is `${OUTBOX_KEY}.${sub}`; this key alone was 0.7's shared one. */
export const OUTBOX_KEY = "videoprogress.outbox";
export const OUTBOX_LIMIT = 5000; // oldest dropped past this: localStorage is small
const BATCH_LIMIT = 500;
/** Stay under the server's 64 KiB body limit whatever the heartbeats look like. */
const BATCH_BYTES = 48 * 1024;
const NOT_RETRIED = new Set([400, 403, 404, 409, 413, 422]);
/** Codes of items refused inside a 202 that a later try can get accepted (shared/errors.py). */
const RETRYABLE = new Set(["rate_limited", "buffer_full", "unavailable"]);
/** A forward jump larger than this between two `timeupdate`s was not played (a seek). */
const MAX_STEP_S = 3;
const BASE_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;

/** Exponential backoff with "equal jitter": half fixed, half random, capped. */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return ceiling / 2 + (random() * ceiling) / 2;
}

/** The longest `Retry-After` honoured: the server's are a minute at most; a proxy's longer one
 * would stall the outbox, and one past 24.8 days overflows `setTimeout` into a request loop. */
export const MAX_RETRY_AFTER_MS = 600_000;

/** The server's `Retry-After` when it gave one (seconds, or a date as RFC 9110 allows; at most
 * MAX_RETRY_AFTER_MS), else the backoff for this attempt. A date is the server's clock: it is
 * read against the answer's `Date` (where the page may read it), since this computer's clock
 * may be minutes off (behind, the player would wait that much longer). */
export function retryDelay(response: Response | null, attempt: number, base: number, max: number, random: () => number): number {
  const header = response?.headers.get("Retry-After") ?? "";
  const serverNow = Date.parse(response?.headers.get("Date") ?? "");
  const after = /^\s*\d/.test(header)
    ? Number(header) * 1000
    : Date.parse(header) - (Number.isNaN(serverNow) ? Date.now() : serverNow);
  return after > 0 ? Math.min(after, MAX_RETRY_AFTER_MS) : backoffDelay(attempt, base, max, random);
}

/** The user a token is for (its `sub`), or null when there is none to read. Not verified: the
 * server does that; this only keeps users' outboxes apart. */
export function tokenSubject(token: string | null): string | null {
  try {
    const payload = JSON.parse(atob(token!.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof payload.sub === "string" && payload.sub ? payload.sub : null;
  } catch {
    return null;
  }
}

/** The heartbeats waiting to be sent for user `owner` (oldest first). */
export function readOutbox(storage: StorageLike, owner: string): HeartbeatItem[] {
  try {
    const items = JSON.parse(storage.getItem(`${OUTBOX_KEY}.${owner}`) ?? "[]");
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
}

function writeOutbox(storage: StorageLike, owner: string, items: HeartbeatItem[]): void {
  if (items.length) storage.setItem(`${OUTBOX_KEY}.${owner}`, JSON.stringify(items.slice(-OUTBOX_LIMIT)));
  else clearOutbox(storage, owner);
}

/** Forget user `owner`'s unsent heartbeats (at sign-out). Idempotent. */
export function clearOutbox(storage: StorageLike, owner: string): void {
  storage.removeItem(`${OUTBOX_KEY}.${owner}`);
}

const itemId = (i: HeartbeatItem) => `${i.session_id} ${i.seq} ${i.material_id}`;

/** Take `items` out of `owner`'s outbox (those it still holds). */
function removeFromOutbox(storage: StorageLike, owner: string, items: HeartbeatItem[]): void {
  const gone = new Set(items.map(itemId));
  writeOutbox(storage, owner, readOutbox(storage, owner).filter((i) => !gone.has(itemId(i))));
}

export interface FlushOptions {
  fetch: typeof fetch;
  storage: StorageLike;
  getToken: () => string | null;
  apiBase?: string;
  isOnline?: () => boolean;
  onUnauthorized?: () => void;
  random?: () => number;
  /** The server asked to wait `ms` before the next try (its `Retry-After`). */
  onWait?: (ms: number) => void;
}

/** The oldest items that fit in one request (by count and by size; at least one). */
export function takeBatch(items: HeartbeatItem[], maxBytes = BATCH_BYTES): HeartbeatItem[] {
  const batch: HeartbeatItem[] = [];
  let bytes = 0;
  for (const item of items.slice(0, BATCH_LIMIT)) {
    bytes += JSON.stringify(item).length + 1;
    if (batch.length > 0 && bytes > maxBytes) break;
    batch.push(item);
  }
  return batch;
}

let flushing: Promise<void> | null = null;
let retryTimer: ReturnType<typeof setTimeout> | undefined;

/**
 * Send the outbox of the user whose token `getToken` gives, through the batch route, 500 at a
 * time, and only with that user's token. Items the server accepted or refused for good leave
 * the outbox; items refused for a reason that passes (`rate_limited`, `buffer_full`,
 * `unavailable`), and everything on a 5xx, a 429 or a network error, stay and are sent again
 * after `Retry-After` or a growing backoff (`attempt`: the tries before this one). One flush
 * at a time per page: a call while one runs gets that one's promise. Never rejects.
 */
export function flushOutbox(o: FlushOptions, attempt = 0): Promise<void> {
  flushing ??= sendOutbox(o, attempt).finally(() => (flushing = null));
  return flushing;
}

/** Flush the outbox in `delayMs`, instead of any flush already planned: one planned per page. */
export function flushLater(o: FlushOptions, delayMs: number, attempt = 0): void {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => void flushOutbox(o, attempt), delayMs);
}

async function sendOutbox(o: FlushOptions, attempt: number): Promise<void> {
  o.storage.removeItem(OUTBOX_KEY); // 0.7's outbox shared by every user: whose it is is unknown
  const owner = tokenSubject(o.getToken());
  let maxBytes = BATCH_BYTES;
  while (owner && (o.isOnline?.() ?? true)) {
    const token = o.getToken();
    const batch = takeBatch(readOutbox(o.storage, owner), maxBytes);
    if (batch.length === 0 || tokenSubject(token) !== owner) return; // done, or signed out
    const body = { heartbeats: batch };
    const response = await post(o.fetch, `${o.apiBase ?? ""}/api/progress/heartbeats`, token, body);
    if (response?.status === 401) return o.onUnauthorized?.();
    if (response?.status === 413 && batch.length > 1) {
      // The server's MAX_BODY_BYTES is below the default: halve the batches (only a heartbeat
      // too large alone is dropped, below).
      maxBytes = Math.floor(JSON.stringify(body).length / 2);
      continue;
    }
    const settled = await settledItems(response, batch);
    removeFromOutbox(o.storage, owner, settled);
    if (settled.length < batch.length) {
      const delay = retryDelay(response, attempt, BASE_DELAY_MS, MAX_DELAY_MS, o.random ?? Math.random);
      if (response?.headers.has("Retry-After")) o.onWait?.(delay);
      return flushLater(o, delay, attempt + 1);
    }
  }
}

/** The items of a batch the server answered for for good: accepted, or refused for a reason a
 * retry cannot change (each, or the whole request: a 403 for a token that is not a student's).
 * None on any other answer, or a 202 that cannot be read. */
async function settledItems(response: Response | null, batch: HeartbeatItem[]): Promise<HeartbeatItem[]> {
  try {
    if (NOT_RETRIED.has(response?.status ?? 0)) return batch;
    if (response?.status !== 202) return [];
    const { results } = (await response.json()) as BatchResults;
    return results.filter((r) => r.accepted || !RETRYABLE.has(r.error?.code ?? "")).map((r) => batch[r.index]).filter(Boolean);
  } catch {
    return [];
  }
}

/** A request not answered in this long is given up (aborted) as a network error, and retried.
 * Without a limit one that hangs (a dead connection) never settles: the heartbeat waiting out a
 * `Retry-After` would hold the player's others in the outbox, and the page's one flush every
 * later flush, for as long as the page lives. */
export const REQUEST_TIMEOUT_MS = 30_000;

async function post(f: typeof fetch, url: string, token: string | null, body: unknown, keepalive = false): Promise<Response | null> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    return await f(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
      keepalive,
      signal: abort.signal,
    });
  } catch {
    return null; // network error, or no answer in time
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class WatchTracker {
  private readonly o: Required<
    Omit<TrackerOptions, "onProgress" | "onUnauthorized" | "onError" | "events" | "visibility">
  > &
    Pick<TrackerOptions, "onProgress" | "onUnauthorized" | "onError" | "events" | "visibility">;
  private seq = 0;
  private played: Range[] = [];
  private rangeStart: number | null = null;
  private lastPosition: number | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private started = false;
  private readonly listeners: [EventTarget, string, EventListener][] = [];
  private owner: string | null = null;
  private readonly unowned: HeartbeatItem[] = [];
  /** Until when (`now()`) the server asked this player to wait (`Retry-After`): heartbeats
   * made meanwhile only join the outbox, sent by one flush when the wait is over. */
  private retryAt = 0;
  /** The clock when `retryAt` was last looked at (to see it set back). */
  private clockSeen = 0;
  /** Heartbeats of this player waiting out a `Retry-After` (sending it again after). */
  private holding = 0;
  private lastReadingAt = 0;
  private lastWatchTime: number | null = null;
  /** A heartbeat waits in the outbox for a token (a 401): sent once one is answered again. */
  private leftForToken = false;

  constructor(options: TrackerOptions) {
    this.o = {
      apiBase: "",
      intervalMs: 10_000,
      maxAttempts: 5,
      baseDelayMs: 1_000,
      maxDelayMs: 30_000,
      fetch: (...args) => globalThis.fetch(...args),
      storage: pageStorage,
      now: () => Date.now(),
      random: Math.random,
      isOnline: () => globalThis.navigator?.onLine ?? true,
      sessionId: globalThis.crypto?.randomUUID?.() ?? `s-${Date.now()}-${Math.random()}`,
      ...options,
    };
  }

  get sessionId(): string {
    return this.o.sessionId;
  }

  /** Start listening; also sends what an earlier page left in the outbox. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const v = this.o.video;
    this.listen(v, "play", () => this.onPlay());
    this.listen(v, "pause", () => this.onPause());
    this.listen(v, "timeupdate", () => this.onTimeUpdate());
    this.listen(v, "seeking", () => this.closeRange());
    this.listen(v, "seeked", () => this.onSeeked());
    this.listen(v, "ended", () => this.onEnded());
    if (this.o.events) {
      this.listen(this.o.events, "online", () => void this.flushOutbox());
      this.listen(this.o.events, "pagehide", () => this.finalUpdate("exit"));
    }
    const visibility = this.o.visibility;
    if (visibility) {
      this.listen(visibility, "visibilitychange", () => {
        if (visibility.visibilityState === "hidden") this.finalUpdate();
      });
    }
    this.ownerNow();
    void this.flushOutbox();
  }

  /** Stop listening and send the last position (the player closed). Resolves when the server
   * has answered for that last heartbeat (or it failed and waits in the outbox). */
  stop(): Promise<void> {
    if (!this.started) return Promise.resolve();
    const sent = this.finalUpdate("exit");
    this.stopInterval();
    for (const [target, type, handler] of this.listeners) target.removeEventListener(type, handler);
    this.listeners.length = 0;
    this.started = false;
    return sent;
  }

  /** Send one heartbeat now (with retries); resolves when it is settled either way. */
  async heartbeat(event?: PlayerEvent): Promise<void> {
    const body = this.nextBody(event);
    if (body) await this.send(body);
  }

  /** Send what the outbox holds (see `flushOutbox`). */
  async flushOutbox(): Promise<void> {
    await flushOutbox(this.flushOptions());
  }

  private flushOptions(): FlushOptions {
    return {
      fetch: this.o.fetch,
      storage: this.o.storage,
      getToken: this.o.getToken,
      apiBase: this.o.apiBase,
      isOnline: this.o.isOnline,
      // A flush's 401 leaves the outbox (during a Retry-After, the heartbeats of the wait) for
      // a token that works: sent once this player's next heartbeat is answered, as a 401 of
      // its own would.
      onUnauthorized: () => this.waitForToken(null),
      random: this.o.random,
      onWait: (ms) => this.waitAsked(ms),
    };
  }

  // -- video events ------------------------------------------------------------------------

  private onPlay(): void {
    this.rangeStart = this.lastPosition = this.o.video.currentTime;
    this.startInterval();
    // Reported at once: the server credits watching by the time over which it hears from the
    // player (verified watching), so the clock must start when playing does.
    void this.heartbeat("play");
  }

  private onPause(): void {
    this.onTimeUpdate();
    this.stopInterval();
    void this.heartbeat("pause");
  }

  private onSeeked(): void {
    this.rangeStart = this.lastPosition = this.o.video.currentTime;
    void this.heartbeat("seek");
  }

  private onEnded(): void {
    this.onTimeUpdate();
    this.stopInterval();
    void this.heartbeat("ended");
  }

  private onTimeUpdate(): void {
    const v = this.o.video;
    if (v.seeking) return;
    const t = v.currentTime;
    if (this.rangeStart === null || this.lastPosition === null) {
      this.rangeStart = this.lastPosition = t;
    } else if (t >= this.lastPosition && t - this.lastPosition <= MAX_STEP_S * Math.max(1, v.playbackRate)) {
      this.lastPosition = t;
    } else {
      this.closeRange(); // a jump without a seek event: not played
      this.rangeStart = this.lastPosition = t;
    }
  }

  private closeRange(): void {
    if (this.rangeStart !== null && this.lastPosition !== null && this.lastPosition > this.rangeStart) {
      this.played.push([this.rangeStart, this.lastPosition]);
    }
    this.rangeStart = this.lastPosition = null;
  }

  /** The played ranges since the last heartbeat; an open range stays open from here. */
  private takePlayed(): Range[] {
    const open = this.rangeStart !== null && this.lastPosition !== null && this.lastPosition > this.rangeStart;
    if (open) this.played.push([this.rangeStart as number, this.lastPosition as number]);
    if (open) this.rangeStart = this.lastPosition;
    const played = this.played;
    this.played = [];
    return played.map(([a, b]) => [round(a), round(b)] as Range);
  }

  private nextBody(event?: PlayerEvent): HeartbeatBody | null {
    const v = this.o.video;
    const duration = v.duration;
    if (!Number.isFinite(duration) || duration <= 0) return null; // metadata not loaded yet
    const watchTime = round(Math.min(Math.max(v.currentTime, 0), duration));
    const played = this.takePlayed();
    // Nothing new since this session's last reading (a paused tab hidden or closed): it keeps
    // that reading's time, so that it never outranks what another tab read since. A `play`
    // is new: the student picked this tab up again.
    const repeated = event !== "play" && played.length === 0 && watchTime === this.lastWatchTime;
    this.lastWatchTime = watchTime;
    return {
      watch_time: watchTime,
      total_duration: round(duration),
      client_ts: new Date(repeated ? this.lastReadingAt : this.readingTime()).toISOString(),
      session_id: this.o.sessionId,
      seq: this.seq++,
      played,
      playback_rate: v.playbackRate || 1,
      ...(event ? { event } : {}),
    };
  }

  /** `client_ts` of the next reading: the clock, but never before the previous reading's. The
   * server orders a session's readings by `client_ts` first, so a clock set back (NTP, the
   * user) would make the readings after it lose to the ones before; equal times go by `seq`. */
  private readingTime(): number {
    return (this.lastReadingAt = Math.max(this.o.now(), this.lastReadingAt));
  }

  // -- sending -----------------------------------------------------------------------------

  private startInterval(): void {
    this.stopInterval();
    this.timer = setInterval(() => {
      if (!this.o.video.paused) void this.heartbeat();
    }, this.o.intervalMs);
  }

  private stopInterval(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** The page is going away (`exit`: for good; hidden: maybe back): one keepalive try, the
   * heartbeat already safe in the outbox. */
  private finalUpdate(event?: PlayerEvent): Promise<void> {
    const body = this.nextBody(event);
    return body ? this.send(body, true) : Promise.resolve();
  }

  /** Put the heartbeat in its user's outbox (synchronously), then send it while that user is
   * signed in, retrying; it leaves the outbox once the server has answered for it. While the
   * server asks this player to wait (`Retry-After`), one heartbeat retries and the others wait
   * in the outbox, sent together once it is done. */
  private async send(body: HeartbeatBody, keepalive = false): Promise<void> {
    const item = { material_id: this.o.materialId, ...body };
    const owner = this.ownerNow();
    if (!owner) {
      this.unowned.push(item); // filed under the first user whose token this tracker sees
      return this.waitForToken(null);
    }
    const storage = this.o.storage;
    writeOutbox(storage, owner, [...readOutbox(storage, owner), item]);
    // While the server asks to wait, a heartbeat only joins the outbox; but the last one (page
    // hidden or closed) still gets its one keepalive try: where the outbox lives in memory (an
    // LMS frame) it dies with the page, and nothing else would send it.
    if (!keepalive && (this.holding || this.waitingFor())) return this.flushAfterWait();
    let held = false; // this heartbeat is the one waiting out the server's Retry-After
    try {
      for (let attempt = 0; ; attempt++) {
        const waiting = readOutbox(storage, owner).some((i) => itemId(i) === itemId(item));
        if (!this.o.isOnline() || !waiting) return; // offline, it waits; gone: sent by a flush or signed out
        const token = this.o.getToken();
        if (tokenSubject(token) !== owner) return this.waitForToken(token); // waits for its user
        const response = await post(this.o.fetch, this.o.apiBase + this.watchPath(), token, body, keepalive);
        const status = response?.status ?? 0;
        if (status === 401) return this.waitForToken(null);
        if (status === 202 || NOT_RETRIED.has(status)) {
          removeFromOutbox(storage, owner, [item]);
          if (status === 202 && this.leftForToken) {
            this.leftForToken = false; // the token works again: what the 401 left goes now
            void this.flushAfterWait();
          }
          if (status === 202) this.o.onProgress?.((await response!.json()) as HeartbeatAccepted);
          else this.o.onError?.(await errorMessage(response!), status);
          return;
        }
        const delay = retryDelay(response, attempt, this.o.baseDelayMs, this.o.maxDelayMs, this.o.random);
        if (response?.headers.has("Retry-After")) this.waitAsked(delay);
        // Sent as the page hid or the player closed: one try now; if the page lives on, a
        // flush sends it after the delay (if not, the next page's flush does).
        if (keepalive) return this.holding ? undefined : flushLater(this.flushOptions(), Math.max(delay, this.waitingFor()));
        if (attempt + 1 >= this.o.maxAttempts) return held ? undefined : this.flushOutbox(); // retried there, spaced out
        if (!held && this.waitingFor()) {
          held = true;
          this.holding++;
        }
        await sleep(delay);
      }
    } finally {
      if (held) {
        this.holding--;
        void this.flushAfterWait(); // what waited meanwhile, this one too if still unsent
      }
    }
  }

  /** The heartbeat waits in the outbox for a token of its user (`token`: another user's). */
  private waitForToken(token: string | null): void {
    this.leftForToken = true;
    if (!token) this.o.onUnauthorized?.();
  }

  /** The server asked to wait `ms` (a `Retry-After`, on a heartbeat or on a flush). */
  private waitAsked(ms: number): void {
    this.retryAt = this.o.now() + Math.max(ms, this.waitingFor());
  }

  /** How long the server still asked this player to wait (ms; 0: not waiting). A clock set
   * back (NTP, the user) moves the end of the wait back with it: else the player would send
   * nothing for as long as the clock went back, hours maybe, the server fine long since. */
  private waitingFor(): number {
    const now = this.o.now();
    if (now < this.clockSeen) this.retryAt -= this.clockSeen - now;
    this.clockSeen = now;
    return Math.max(0, this.retryAt - now);
  }

  /** Flush the outbox once the server's wait is over; nothing while a heartbeat of this player
   * waits it out (that one flushes when done). */
  private flushAfterWait(): void | Promise<void> {
    if (this.holding) return;
    const wait = this.waitingFor();
    return wait ? flushLater(this.flushOptions(), wait) : this.flushOutbox();
  }

  /** The user this tracker reports for: the `sub` of the first token it reads. Heartbeats made
   * before there was one are filed under that user then. */
  private ownerNow(): string | null {
    if (this.owner === null && (this.owner = tokenSubject(this.o.getToken()))) {
      const storage = this.o.storage;
      writeOutbox(storage, this.owner, [...readOutbox(storage, this.owner), ...this.unowned.splice(0)]);
    }
    return this.owner;
  }

  private watchPath(): string {
    return `/api/progress/video/${encodeURIComponent(this.o.materialId)}/watch-time`;
  }

  private listen(target: EventTarget, type: string, handler: EventListener): void {
    target.addEventListener(type, handler);
    this.listeners.push([target, type, handler]);
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

async function errorMessage(response: Response): Promise<string> {
  try {
    const body = await response.json();
    return body?.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}
