import { afterEach, describe, expect, it, vi } from "vitest";
import { session } from "./api";

afterEach(() => {
  vi.unstubAllGlobals();
});

const refused = () => new DOMException("Access is denied for this document.", "SecurityError");

describe("the page's storage (token and outbox)", () => {
  it("keeps the signed-in user in memory where localStorage throws SecurityError", () => {
    const throwing = new Proxy({}, { get: () => () => { throw refused(); } });
    vi.stubGlobal("localStorage", throwing);
    expect(() => localStorage.getItem("x")).toThrow(/denied/); // the browser's own refuses
    expect(session.token()).toBeNull();
    session.signIn("a.b.c", { user_id: "student-1", role: "student", course_id: null });
    expect(session.token()).toBe("a.b.c");
    expect(session.user()?.user_id).toBe("student-1");
    session.signOut();
    expect([session.token(), session.user()]).toEqual([null, null]);
  });
});
