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
 * - 5xx, 429 and network errors are retried with exponential backoff and jitter; what still
 *   fails goes to a localStorage outbox, flushed through `POST /api/progress/heartbeats` when
 *   the network is back or on the next page load. 401 hands control to `onUnauthorized` (the
 *   heartbeat waits in the outbox); 403, 404 and 422 are reported and never retried.
 */

export type Range = [number, number];

/** The player event a heartbeat reports (sent on to the LRS as xAPI statements). */
export type PlayerEvent = "play" | "pause" | "seek" | "ended" | "exit";

export interface HeartbeatBody {
  watch_time: number;
  total_duration: number;
  client_ts: string;
  session_id: string;
  seq: number;
  played: Range[];
  playback_rate: number;
  event?: PlayerEvent;
}

export interface OutboxItem extends HeartbeatBody {
  material_id: string;
}

export interface ProgressReply {
  accepted: boolean;
  watch_time: number;
  progress_percentage: number;
  watched_seconds: number;
  completed: boolean;
}

/** The parts of an HTMLVideoElement the tracker uses (a real element satisfies it). */
export interface VideoLike extends EventTarget {
  currentTime: number;
  duration: number;
  paused: boolean;
  seeking: boolean;
  playbackRate: number;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
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
  onProgress?: (reply: ProgressReply) => void;
  onUnauthorized?: () => void;
  onError?: (message: string, status: number) => void;
}

export const OUTBOX_KEY = "videoprogress.outbox";
export const OUTBOX_LIMIT = 5000; // oldest dropped past this: localStorage is small
const BATCH_LIMIT = 500;
/** Stay under the server's 64 KiB body limit whatever the heartbeats look like. */
const BATCH_BYTES = 48 * 1024;
const NOT_RETRIED = new Set([400, 403, 404, 409, 413, 422]);
/** A forward jump larger than this between two `timeupdate`s was not played (a seek). */
const MAX_STEP_S = 3;

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

export function readOutbox(storage: StorageLike): OutboxItem[] {
  try {
    const items = JSON.parse(storage.getItem(OUTBOX_KEY) ?? "[]");
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
}

function writeOutbox(storage: StorageLike, items: OutboxItem[]): void {
  storage.setItem(OUTBOX_KEY, JSON.stringify(items.slice(-OUTBOX_LIMIT)));
}

function sameItem(a: OutboxItem, b: OutboxItem): boolean {
  return a.session_id === b.session_id && a.seq === b.seq && a.material_id === b.material_id;
}

export interface FlushOptions {
  fetch: typeof fetch;
  storage: StorageLike;
  getToken: () => string | null;
  apiBase?: string;
  isOnline?: () => boolean;
  onUnauthorized?: () => void;
}

let flushing = false;

/** The oldest items that fit in one request (by count and by size; at least one). */
export function takeBatch(items: OutboxItem[]): OutboxItem[] {
  const batch: OutboxItem[] = [];
  let bytes = 0;
  for (const item of items.slice(0, BATCH_LIMIT)) {
    bytes += JSON.stringify(item).length + 1;
    if (batch.length > 0 && bytes > BATCH_BYTES) break;
    batch.push(item);
  }
  return batch;
}

/**
 * Send everything in the outbox through the batch route, 500 at a time. Items the server
 * answered for (accepted or refused: retrying cannot help) leave the outbox; on a network error
 * or a 5xx everything stays for the next try. One flush at a time per page.
 */
export async function flushOutbox(o: FlushOptions): Promise<void> {
  if (flushing || !(o.isOnline?.() ?? true)) return;
  flushing = true;
  try {
    while (true) {
      const batch = takeBatch(readOutbox(o.storage));
      const token = o.getToken();
      if (batch.length === 0 || !token) return; // signed out: keep them for the next sign-in
      let response: Response | null;
      try {
        response = await o.fetch(`${o.apiBase ?? ""}/api/progress/heartbeats`, {
          method: "POST",
          headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify({ heartbeats: batch }),
        });
      } catch {
        response = null;
      }
      if (response?.status === 401) {
        o.onUnauthorized?.();
        return;
      }
      if (!response || response.status !== 202) return;
      const left = readOutbox(o.storage).filter((item) => !batch.some((b) => sameItem(b, item)));
      writeOutbox(o.storage, left);
    }
  } finally {
    flushing = false;
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

  constructor(options: TrackerOptions) {
    this.o = {
      apiBase: "",
      intervalMs: 10_000,
      maxAttempts: 5,
      baseDelayMs: 1_000,
      maxDelayMs: 30_000,
      fetch: (...args) => globalThis.fetch(...args),
      storage: globalThis.localStorage,
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
    void this.flushOutbox();
  }

  /** Stop listening and send the last position (the player closed). */
  stop(): void {
    if (!this.started) return;
    this.finalUpdate("exit");
    this.stopInterval();
    for (const [target, type, handler] of this.listeners) target.removeEventListener(type, handler);
    this.listeners.length = 0;
    this.started = false;
  }

  /** Send one heartbeat now (with retries); resolves when it is settled either way. */
  async heartbeat(event?: PlayerEvent): Promise<void> {
    const body = this.nextBody(event);
    if (body) await this.send(body);
  }

  /** Send what the outbox holds (see `flushOutbox`). */
  async flushOutbox(): Promise<void> {
    await flushOutbox({
      fetch: this.o.fetch,
      storage: this.o.storage,
      getToken: this.o.getToken,
      apiBase: this.o.apiBase,
      isOnline: this.o.isOnline,
      onUnauthorized: this.o.onUnauthorized,
    });
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
    return {
      watch_time: round(Math.min(Math.max(v.currentTime, 0), duration)),
      total_duration: round(duration),
      client_ts: new Date(this.o.now()).toISOString(),
      session_id: this.o.sessionId,
      seq: this.seq++,
      played: this.takePlayed(),
      playback_rate: v.playbackRate || 1,
      ...(event ? { event } : {}),
    };
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

  /** The page is going away (`exit`: for good; hidden: maybe back): keep the heartbeat in the
   * outbox first, then try keepalive. */
  private finalUpdate(event?: PlayerEvent): void {
    const body = this.nextBody(event);
    if (!body) return;
    const item = { material_id: this.o.materialId, ...body };
    writeOutbox(this.o.storage, [...readOutbox(this.o.storage), item]);
    void this.post(this.watchPath(), body, true).then((response) => {
      if (response?.status === 202 || (response && NOT_RETRIED.has(response.status))) {
        writeOutbox(this.o.storage, readOutbox(this.o.storage).filter((i) => !sameItem(i, item)));
      }
    });
  }

  private async send(body: HeartbeatBody): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (!this.o.isOnline()) return this.keep(body);
      const response = await this.post(this.watchPath(), body);
      if (response?.status === 202) {
        this.o.onProgress?.((await response.json()) as ProgressReply);
        return;
      }
      if (response?.status === 401) {
        this.keep(body);
        this.o.onUnauthorized?.();
        return;
      }
      if (response && NOT_RETRIED.has(response.status)) {
        this.o.onError?.(await errorMessage(response), response.status);
        return;
      }
      if (attempt + 1 >= this.o.maxAttempts) return this.keep(body);
      const retryAfter = Number(response?.headers.get("Retry-After"));
      const delay = retryAfter > 0 ? retryAfter * 1000 : backoffDelay(attempt, this.o.baseDelayMs, this.o.maxDelayMs, this.o.random);
      await sleep(delay);
    }
  }

  private keep(body: HeartbeatBody): void {
    writeOutbox(this.o.storage, [...readOutbox(this.o.storage), { material_id: this.o.materialId, ...body }]);
  }

  private watchPath(): string {
    return `/api/progress/video/${encodeURIComponent(this.o.materialId)}/watch-time`;
  }

  private async post(path: string, body: unknown, keepalive = false): Promise<Response | null> {
    const token = this.o.getToken();
    try {
      return await this.o.fetch(`${this.o.apiBase}${path}`, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify(body),
        keepalive,
      });
    } catch {
      return null; // network error
    }
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
