/**
 * Web storage that never throws. In a third-party frame (an LMS embedding the pages) the browser
 * may refuse `localStorage` and `sessionStorage` altogether (`SecurityError`, on access or on
 * every call), and a full storage refuses writes (`QuotaExceededError`): what cannot be stored
 * there is kept in this page's memory instead, so the token and the outbox still work for as
 * long as the page lives (and are lost with it).
 */

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** `area` (e.g. `() => localStorage`), or memory for each key it refuses. Never throws. */
export function safeStorage(area: () => StorageLike): StorageLike {
  const memory = new Map<string, string>(); // the keys the browser refused, and their values
  const attempt = <T>(use: (s: StorageLike) => T, otherwise: T): T => {
    try {
      return use(area());
    } catch {
      return otherwise;
    }
  };
  return {
    getItem: (key) => memory.get(key) ?? attempt((s) => s.getItem(key), null),
    setItem(key, value) {
      if (attempt((s) => (s.setItem(key, value), true), false)) memory.delete(key);
      else memory.set(key, value);
    },
    removeItem(key) {
      memory.delete(key);
      attempt((s) => s.removeItem(key), undefined);
    },
  };
}

/** This page's `localStorage`, falling back to memory where the browser refuses it. */
export const pageStorage: StorageLike = safeStorage(() => globalThis.localStorage);
