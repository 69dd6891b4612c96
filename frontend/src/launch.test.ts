import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { keepRenewed, readLaunch, RETRY_MS, tokenClaims } from "./launch";
import { tokenWith as token } from "./test/jwt";

describe("readLaunch", () => {
  it("takes the token, the user and the route from a launch hash", () => {
    const t = token({ sub: "lti-abc", role: "student", iat: 1000, exp: 1900 });
    expect(readLaunch(`#/launch/${t}/student/course/c%2F1/play/v1`)).toEqual({
      token: t,
      user: { user_id: "lti-abc", role: "student", course_id: null },
      hash: "#/course/c%2F1/play/v1",
    });
  });

  it("refuses what is not a launch, or whose role is not the token's", () => {
    const t = token({ sub: "lti-abc", role: "student", exp: 1900 });
    expect(readLaunch("#/course/c1")).toBeNull();
    expect(readLaunch(`#/launch/${t}/teacher/teacher/c1`)).toBeNull();
    expect(readLaunch(`#/launch/${t}/admin/course/c1`)).toBeNull();
    expect(readLaunch("#/launch/not-a-jwt/student/course/c1")).toBeNull();
  });

  it("reads a token's claims, or null", () => {
    expect(tokenClaims(token({ sub: "s", role: "teacher", exp: 5 }))).toMatchObject({ sub: "s", exp: 5 });
    expect(tokenClaims(token({ sub: "s", exp: 5 }))).toBeNull();
    expect(tokenClaims("x.y.z")).toBeNull();
  });
});

describe("keepRenewed", () => {
  const ISSUED_S = 1_000_000;
  let current: string;
  const setToken = (t: string) => void (current = t);

  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(ISSUED_S * 1000);
    current = token({ sub: "s", role: "student", iat: ISSUED_S, exp: ISSUED_S + 900 });
  });
  afterEach(() => vi.useRealTimers());

  it("renews when two thirds of the token's life are gone, then again on the new one", async () => {
    const issued: number[] = [];
    const renew = vi.fn(async () => {
      const now = Date.now() / 1000;
      issued.push(now);
      return token({ sub: "s", role: "student", iat: now, exp: now + 900 });
    });
    const stop = keepRenewed({ getToken: () => current, renew, setToken, onExpired: () => {} });
    await vi.advanceTimersByTimeAsync(599_000);
    expect(renew).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(issued).toEqual([ISSUED_S + 600]);
    expect(tokenClaims(current)?.iat).toBe(ISSUED_S + 600);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(issued).toEqual([ISSUED_S + 600, ISSUED_S + 1200]);
    stop();
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(renew).toHaveBeenCalledTimes(2); // stopped: no more
  });

  it("retries a failed renewal while the token lasts, and ends the session on 401", async () => {
    const onExpired = vi.fn();
    const renew = vi
      .fn<() => Promise<string>>()
      .mockRejectedValueOnce(Object.assign(new Error("down"), { status: 503 }))
      .mockRejectedValueOnce(new TypeError("network"))
      .mockRejectedValueOnce(Object.assign(new Error("expired"), { status: 401 }));
    keepRenewed({ getToken: () => current, renew, setToken, onExpired });
    await vi.advanceTimersByTimeAsync(600_000);
    expect(renew).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(RETRY_MS);
    expect(renew).toHaveBeenCalledTimes(2);
    expect(onExpired).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(RETRY_MS);
    expect(renew).toHaveBeenCalledTimes(3);
    expect(onExpired).toHaveBeenCalledTimes(1);
  });

  it("ends the session when the token expired before a renewal could pass", async () => {
    const onExpired = vi.fn();
    const renew = vi.fn<() => Promise<string>>().mockRejectedValue(new TypeError("network"));
    keepRenewed({ getToken: () => current, renew, setToken, onExpired });
    await vi.advanceTimersByTimeAsync(900_000); // 600 s, then retries every 30 s to the end
    expect(renew).toHaveBeenCalledTimes(1 + 300_000 / RETRY_MS);
    expect(onExpired).toHaveBeenCalledTimes(1);
  });
});
