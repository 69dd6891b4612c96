// @vitest-environment happy-dom
import { cleanup, configure, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Course, StudentCourseProgress } from "./api";
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

type SentMaterial = StudentCourseProgress["modules"][number]["materials"][number];
// A material as a test writes it: title and type come from COURSE; the drill-down fields may be
// left out to check that the page tolerates an answer without them.
type MaterialFixture = Omit<SentMaterial, "title" | "type" | "watched_ranges" | "unverified_seconds"> &
  Partial<SentMaterial>;

function progress(fixtures: MaterialFixture[], name: string | null = null): StudentCourseProgress {
  const catalog = new Map(COURSE.modules[0].materials.map((m) => [m.material_id, m]));
  const materials = fixtures.map((m) => {
    const known = catalog.get(m.material_id);
    return { title: known?.title ?? m.material_id, type: known?.type ?? "video", ...m } as SentMaterial;
  });
  return {
    student_id: "s1",
    name,
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

  it("names the student by the LMS roster's name, with their id beside it", async () => {
    fakeApi({
      "GET /api/courses/c1": () => COURSE,
      "GET /api/teacher/courses/c1/students/lti-p1-u1/progress": () =>
        progress([{ material_id: "v1", watch_time: 10, progress_percentage: 10, completed: false }], "Ada Lovelace"),
    });
    render(<StudentProgressPage courseId="c1" studentId="lti-p1-u1" onUnauthorized={() => {}} />);
    expect((await screen.findByRole("heading", { level: 1 })).textContent).toBe("Ada Lovelace in Physics");
    expect(screen.getByTestId("student-id").textContent).toBe("lti-p1-u1");
    expect(screen.getByRole("progressbar", { name: "Ada Lovelace course progress" })).toBeTruthy();
  });

  it("names a student without a roster name by their id", async () => {
    fakeApi({
      "GET /api/courses/c1": () => COURSE,
      "GET /api/teacher/courses/c1/students/s1/progress": () =>
        progress([{ material_id: "v1", watch_time: 10, progress_percentage: 10, completed: false }]),
    });
    render(<StudentProgressPage courseId="c1" studentId="s1" onUnauthorized={() => {}} />);
    expect((await screen.findByRole("heading", { level: 1 })).textContent).toBe("s1 in Physics");
    expect(screen.queryByTestId("student-id")).toBeNull();
  });
});
