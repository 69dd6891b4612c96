import { describe, expect, it } from "vitest";
import { safeStorage, type StorageLike } from "./storage";

const refused = () => new DOMException("Access is denied for this document.", "SecurityError");

/** Storage as a third-party frame sees it: even reaching it throws. */
const blockedArea = (): StorageLike => {
  throw refused();
};

/** Storage that works, except that writes to the keys in `full` throw (a full quota). */
function partlyFull(full: Set<string>) {
  const data = new Map<string, string>();
  const area: StorageLike = {
    getItem: (k) => data.get(k) ?? null,
    setItem(k, v) {
      if (full.has(k)) throw new DOMException("quota", "QuotaExceededError");
      data.set(k, v);
    },
    removeItem: (k) => void data.delete(k),
  };
  return { data, area };
}

describe("safeStorage", () => {
  it("keeps everything in memory where the browser refuses storage, and never throws", () => {
    const storage = safeStorage(blockedArea);
    expect(storage.getItem("a")).toBeNull();
    storage.setItem("a", "1");
    storage.setItem("b", "2");
    expect([storage.getItem("a"), storage.getItem("b")]).toEqual(["1", "2"]);
    storage.removeItem("a");
    expect([storage.getItem("a"), storage.getItem("b")]).toEqual([null, "2"]);
  });

  it("also when each call throws rather than the access", () => {
    const throwing: StorageLike = {
      getItem: () => {
        throw refused();
      },
      setItem: () => {
        throw refused();
      },
      removeItem: () => {
        throw refused();
      },
    };
    const storage = safeStorage(() => throwing);
    storage.setItem("token", "t");
    expect(storage.getItem("token")).toBe("t");
  });

  it("uses the real storage when it works, and memory only for the keys it refuses", () => {
    const full = new Set(["big"]);
    const { data, area } = partlyFull(full);
    const storage = safeStorage(() => area);
    storage.setItem("small", "s");
    storage.setItem("big", "b1");
    expect(data.get("small")).toBe("s"); // in the browser's storage
    expect(data.has("big")).toBe(false);
    expect(storage.getItem("big")).toBe("b1"); // from memory

    full.clear(); // room again: the next write goes to storage and memory lets go
    storage.setItem("big", "b2");
    expect(data.get("big")).toBe("b2");
    expect(storage.getItem("big")).toBe("b2");
    storage.removeItem("big");
    expect([data.has("big"), storage.getItem("big")]).toEqual([false, null]);
  });
});
