/** What the tracker's tests drive it with: a `<video>` that plays on command, a storage in
 * memory, and the service's answers. */
import type { StorageLike } from "../tracker/tracker";

export class FakeVideo extends EventTarget {
  currentTime = 0;
  paused = true;
  seeking = false;
  playbackRate = 1;

  constructor(public duration = 120) {
    super();
  }

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

export class MemoryStorage implements StorageLike {
  data = new Map<string, string>();
  getItem(key: string) {
    return this.data.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.data.set(key, value);
  }
  removeItem(key: string) {
    this.data.delete(key);
  }
}

export function reply(status: number, body: unknown = {}, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(body), { status, headers });
}

/** The batch route's answer when it takes every heartbeat of the request. */
export function allAccepted(body: { heartbeats: unknown[] }) {
  return reply(202, { results: body.heartbeats.map((_, index) => ({ index, accepted: true })) });
}

/** The watch-time route's 202 body. */
export const OK = { accepted: true, watch_time: 1, progress_percentage: 1, watched_seconds: 1, completed: false };
