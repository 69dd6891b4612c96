// @vitest-environment happy-dom
import { cleanup, configure, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { HomePage } from "./HomePage";
import { fakeApi } from "./test/fakeApi";

// Two cores shared with other test runs: rendering 1,000 rows can take more than a second.
configure({ asyncUtilTimeout: 8000 });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("HomePage", () => {
  it("lists a student's courses with accessible progress bars and links", async () => {
    fakeApi({
      "GET /api/me/courses": () => ({
        courses: [
          { course_id: "c1", title: "Algebra", progress_percentage: 40, completed_materials: 2, total_materials: 5, last_active: null },
          { course_id: "c/2", title: "Biology", progress_percentage: 100, completed_materials: 3, total_materials: 3, last_active: "2026-11-30T10:00:00Z" },
        ],
        next_cursor: null,
      }),
    });
    render(<HomePage user={{ user_id: "s1", role: "student", course_id: null }} onUnauthorized={() => {}} />);
    const bar = await screen.findByRole("progressbar", { name: "Algebra progress" });
    expect(bar.getAttribute("aria-valuenow")).toBe("40");
    expect(bar.getAttribute("aria-valuemin")).toBe("0");
    expect(bar.getAttribute("aria-valuemax")).toBe("100");
    expect(screen.getByText(/2 of 5 materials complete · 40.0%/)).toBeTruthy();
    expect(screen.getByRole("link", { name: "Biology" }).getAttribute("href")).toBe("#/course/c%2F2");
    expect(screen.getByRole("heading", { level: 1 }).textContent).toBe("My courses");
  });

  it("shows a teacher's classes: enrolled, average and completion", async () => {
    fakeApi({
      "GET /api/me/courses": () => ({
        courses: [{ course_id: "c1", title: "Algebra", enrolled: 31, average_progress: 55.5, completion_rate: 0.25 }],
        next_cursor: null,
      }),
    });
    render(<HomePage user={{ user_id: "t1", role: "teacher", course_id: null }} onUnauthorized={() => {}} />);
    const row = await screen.findByTestId("course-c1");
    expect(within(row).getAllByRole("cell")[1].textContent).toBe("31");
    expect(within(row).getByRole("progressbar", { name: "Algebra completion rate" }).getAttribute("aria-valuenow")).toBe("25");
    expect(within(row).getByRole("link", { name: "Algebra" }).getAttribute("href")).toBe("#/teacher/c1");
    expect(screen.queryByTestId("more-courses")).toBeNull(); // teachers are not paged
  });

  it("pages an admin's courses by the cursor", async () => {
    const { calls: all } = fakeApi({
      "GET /api/admin/lti/platforms": () => ({ rows: [] }),
      "GET /api/me/courses": (url) =>
        url.searchParams.get("cursor") === "p2"
          ? { courses: [{ course_id: "c2", title: "Two", enrolled: 1, average_progress: 0, completion_rate: 0 }], next_cursor: null }
          : { courses: [{ course_id: "c1", title: "One", enrolled: 2, average_progress: 0, completion_rate: 0 }], next_cursor: "p2" },
    });
    render(<HomePage user={{ user_id: "a1", role: "admin", course_id: null }} onUnauthorized={() => {}} />);
    await screen.findByTestId("course-c1");
    const calls = () => all.filter((url) => url.pathname === "/api/me/courses"); // not the LTI panel's
    expect(calls()[0].searchParams.get("limit")).toBe("50");
    fireEvent.click(screen.getByTestId("more-courses"));
    await screen.findByTestId("course-c2");
    expect(screen.getByTestId("course-c1")).toBeTruthy(); // appended, not replaced
    expect(calls()[1].searchParams.get("cursor")).toBe("p2");
    await waitFor(() => expect(screen.queryByTestId("more-courses")).toBeNull());
  });

  it("shows the LTI panel to an admin only", async () => {
    const courses = { courses: [], next_cursor: null };
    fakeApi({ "GET /api/me/courses": () => courses, "GET /api/admin/lti/platforms": () => ({ rows: [] }) });
    render(<HomePage user={{ user_id: "a1", role: "admin", course_id: null }} onUnauthorized={() => {}} />);
    expect(await screen.findByRole("region", { name: "LMS platforms (LTI 1.3)" })).toBeTruthy();
    cleanup();
    render(<HomePage user={{ user_id: "t1", role: "teacher", course_id: null }} onUnauthorized={() => {}} />);
    await screen.findByTestId("no-courses");
    expect(screen.queryByTestId("lti-panel")).toBeNull();
  });

  it("hands a 401 to sign-in", async () => {
    fakeApi({
      "GET /api/me/courses": () => new Response(JSON.stringify({ error: { code: "unauthenticated", message: "expired" } }), { status: 401 }),
    });
    const onUnauthorized = vi.fn();
    render(<HomePage user={{ user_id: "s1", role: "student", course_id: null }} onUnauthorized={onUnauthorized} />);
    await waitFor(() => expect(onUnauthorized).toHaveBeenCalledOnce());
  });
});
