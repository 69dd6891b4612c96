/**
 * The tracker for any page: `track(video, {apiBase, videoId, getToken})` reports a plain
 * `<video>` element's watching to the progress API. No React, no UI. Built by
 * `vite.embed.config.ts` as an ES module (`dist/embed/videoprogress-tracker.js`) and a
 * `<script>` bundle (`dist/embed/videoprogress-tracker.iife.js`, global `VideoProgress`).
 *
 * It wraps `WatchTracker` unchanged (interval, pause/seek/end/hide sends, retries with backoff,
 * the per-user outbox, in memory where the browser refuses localStorage, and the 401
 * hand-off), wired to the page's window and document.
 */
import type { HeartbeatAccepted } from "../api-types";
import { pageStorage } from "./storage";
import { clearOutbox, flushOutbox, tokenSubject, WatchTracker, type VideoLike } from "./tracker";

export interface TrackOptions {
  /** Where the progress API lives, e.g. "https://progress.school.example" ("" = this origin). */
  apiBase?: string;
  /** The material id of this video in the course catalog. */
  videoId: string;
  /** The student's bearer token (JWT) at the moment of each request; null when signed out. */
  getToken: () => string | null;
  /** 401: the token expired or is missing. Heartbeats wait in the outbox; sign in again. */
  onUnauthorized?: () => void;
  /** The server's answer to each heartbeat: progress, watched seconds, completion. */
  onProgress?: (reply: HeartbeatAccepted) => void;
  /** 403/404/422 and the like: not retried, reported here. */
  onError?: (message: string, status: number) => void;
  /** Heartbeat interval while playing (default 10 000 ms). */
  intervalMs?: number;
}

export interface TrackHandle {
  /** Stop tracking; sends the last position first. */
  stop(): void;
  /** Send a heartbeat now (resolves when it is settled either way). */
  heartbeat(): Promise<void>;
  /** This page load's session id (sent with every heartbeat). */
  readonly sessionId: string;
}

export function track(video: VideoLike, options: TrackOptions): TrackHandle {
  if (!options?.videoId) throw new TypeError("track(video, options): options.videoId is required");
  if (typeof options.getToken !== "function") throw new TypeError("track(video, options): options.getToken must be a function");
  const tracker = new WatchTracker({
    video,
    materialId: options.videoId,
    getToken: options.getToken,
    apiBase: (options.apiBase ?? "").replace(/\/+$/, ""),
    events: typeof window === "undefined" ? undefined : window,
    visibility: typeof document === "undefined" ? undefined : document,
    onUnauthorized: options.onUnauthorized,
    onProgress: options.onProgress,
    onError: options.onError,
    ...(options.intervalMs ? { intervalMs: options.intervalMs } : {}),
  });
  tracker.start();
  return {
    stop: () => tracker.stop(),
    heartbeat: () => tracker.heartbeat(),
    get sessionId() {
      return tracker.sessionId;
    },
  };
}

/** Send what an earlier page left in the outbox (also done by every `track` call). */
export function flush(options: Pick<TrackOptions, "apiBase" | "getToken" | "onUnauthorized">): Promise<void> {
  return flushOutbox({
    fetch: (...a) => fetch(...a),
    storage: pageStorage,
    getToken: options.getToken,
    apiBase: (options.apiBase ?? "").replace(/\/+$/, ""),
    isOnline: () => navigator.onLine,
    onUnauthorized: options.onUnauthorized,
  });
}

/** The user of `token` signs out: forget their heartbeats not sent yet (send them first with
 * `flush` if they should count). */
export function forget(token: string): void {
  const owner = tokenSubject(token);
  if (owner) clearOutbox(pageStorage, owner);
}
