// @vitest-environment happy-dom
import { cleanup, configure, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Course, CourseProgress } from "./api";
import { StudentProgressPage } from "./StudentProgressPage";
import { fakeApi } from "./test/fakeApi";

// Two cores shared with other test runs: rendering 1,000 rows can take more than a second.
configure({ asyncUtilTimeout: 8000 });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const COURSE: Course = {
  course_id: "c1",
  title: "Physics",
  teacher_ids: ["t1"],
  modules: [
    {
      module_id: "m1",
      title: "Motion",
      materials: [
        { material_id: "v1", title: "Speed", type: "video", duration: 100, url: null },
        { material_id: "v2", title: "Forces", type: "video", duration: 60, url: null },
        { material_id: "p1", title: "Notes", type: "pdf", duration: null, url: null },
      ],
    },
  ],
};

function progress(materials: CourseProgress["modules"][number]["materials"]): CourseProgress {
  return {
    course_id: "c1",
    progress_percentage: 33.3,
    completed_materials: ["v1"],
    total_materials: 3,
    videos: { total: 2, started: 1, completed: 1, watched_seconds: 90, total_seconds: 160 },
    modules: [{ module_id: "m1", progress_percentage: 33.3, watched_seconds: 90, total_seconds: 160, materials }],
  };
}

describe("StudentProgressPage", () => {
  it("draws a coverage strip per video from watched_ranges, with the unverified seconds", async () => {
    const { calls } = fakeApi({
      "GET /api/courses/c1": () => COURSE,
      "GET /api/teacher/courses/c1/students/s%201/progress": () =>
        progress([
          { material_id: "v1", watch_time: 90, progress_percentage: 90, completed: true, watched_ranges: [[0, 50], [40, 90]], unverified_seconds: 12 },
          { material_id: "v2", watch_time: 0, progress_percentage: 0, completed: false, watched_ranges: [], unverified_seconds: 0 },
          { material_id: "p1", watch_time: 0, progress_percentage: 0, completed: false },
        ]),
    });
    render(<StudentProgressPage courseId="c1" studentId="s 1" onUnauthorized={() => {}} />);
    const v1 = await screen.findByTestId("drill-v1");
    expect(within(v1).getByRole("img").getAttribute("aria-label")).toBe("Speed coverage: Watched 0:00–1:30 of 1:40");
    const fill = within(v1).getAllByTestId("coverage-range");
    expect(fill).toHaveLength(1); // overlapping ranges merge
    expect(fill[0].style.width).toBe("90%");
    expect(screen.getByTestId("drill-unverified-v1").textContent).toBe("0:12 unverified");
    expect(within(screen.getByTestId("drill-v2")).getByRole("img").getAttribute("aria-label")).toMatch(/Nothing watched/);
    expect(within(screen.getByTestId("drill-p1")).queryByRole("img")).toBeNull(); // no strip for a pdf
    expect(screen.getByTestId("student-unverified").textContent).toBe("0:12 unverified");
    expect(calls.some((u) => u.pathname === "/api/teacher/courses/c1/students/s%201/progress")).toBe(true);
  });

  it("treats missing watched_ranges and unverified_seconds as empty (before the backend sends them)", async () => {
    fakeApi({
      "GET /api/courses/c1": () => COURSE,
      "GET /api/teacher/courses/c1/students/s1/progress": () =>
        progress([{ material_id: "v1", watch_time: 10, progress_percentage: 10, completed: false }]),
    });
    render(<StudentProgressPage courseId="c1" studentId="s1" onUnauthorized={() => {}} />);
    const v1 = await screen.findByTestId("drill-v1");
    expect(within(v1).queryAllByTestId("coverage-range")).toHaveLength(0);
    expect(screen.getByTestId("drill-unverified-v1").textContent).toBe("0:00 unverified");
  });
});
