// @vitest-environment happy-dom
import { cleanup, configure, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { heat, MatrixPage } from "./MatrixPage";
import { fakeApi } from "./test/fakeApi";

// Two cores shared with other test runs: rendering 1,000 rows can take more than a second.
configure({ asyncUtilTimeout: 8000 });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const MATERIALS = Array.from({ length: 100 }, (_, j) => ({ material_id: `m${j}`, title: `Material ${j}`, type: "video" as const }));

/** 2,000 students × 100 materials, 500 rows a page. */
function matrixServer(students = 2000) {
  return fakeApi({
    "GET /api/teacher/courses/c1/matrix": (url) => {
      const offset = Number(url.searchParams.get("cursor") ?? 0);
      const limit = Number(url.searchParams.get("limit"));
      const desc = url.searchParams.get("sort") === "-student_id";
      const ids = Array.from({ length: students }, (_, i) => `s-${String(i + 1).padStart(4, "0")}`);
      if (desc) ids.reverse();
      const rows = ids.slice(offset, offset + limit).map((student_id, i) => ({
        student_id,
        progress: MATERIALS.map((_, j) => ((i + j) * 7) % 101),
        completed: MATERIALS.map((_, j) => ((i + j) * 7) % 101 >= 80),
      }));
      return { course_id: "c1", materials: MATERIALS, rows, next_cursor: offset + limit < students ? String(offset + limit) : null };
    },
  });
}

const renderedRows = () => screen.getByTestId("matrix-body").querySelectorAll('[role="row"]');

describe("MatrixPage", () => {
  it("loads every page but renders only the rows in view (2,000 × 100)", async () => {
    const { calls } = matrixServer();
    render(<MatrixPage courseId="c1" onUnauthorized={() => {}} />);
    await waitFor(() => expect(screen.getByTestId("matrix-count").textContent).toBe("2000 students × 100 materials"));
    expect(calls.map((u) => u.searchParams.get("cursor"))).toEqual([null, "500", "1000", "1500"]);
    const rows = renderedRows();
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.length).toBeLessThan(50);
    expect(rows[0].querySelectorAll('[role="cell"]')).toHaveLength(100);
    expect(screen.getByRole("table").getAttribute("aria-rowcount")).toBe("2001");
    // the body is as tall as all rows, so the scrollbar is right
    expect(screen.getByTestId("matrix-body").style.height).toBe(`${2000 * 26}px`);

    const scroller = screen.getByTestId("matrix");
    scroller.scrollTop = 1000 * 26;
    fireEvent.scroll(scroller);
    await waitFor(() => expect(screen.queryByTestId("matrix-row-s-1001")).not.toBeNull());
    expect(screen.queryByTestId("matrix-row-s-0001")).toBeNull();
    expect(renderedRows().length).toBeLessThan(50);
  });

  it("labels each cell with the material and the percentage", async () => {
    matrixServer(3);
    render(<MatrixPage courseId="c1" onUnauthorized={() => {}} />);
    const row = await screen.findByTestId("matrix-row-s-0002");
    const cells = row.querySelectorAll('[role="cell"]');
    expect(cells[0].getAttribute("aria-label")).toBe("Material 0: 7%"); // (1 + 0) * 7
    expect(cells[11].getAttribute("aria-label")).toBe("Material 11: 84%, completed");
    expect(row.querySelector("a")?.getAttribute("href")).toBe("#/teacher/c1/student/s-0002");
  });

  it("sorts on the server and starts again from the first page", async () => {
    const { calls } = matrixServer(600);
    render(<MatrixPage courseId="c1" onUnauthorized={() => {}} />);
    await screen.findByTestId("matrix-row-s-0001");
    fireEvent.change(screen.getByTestId("matrix-sort"), { target: { value: "-student_id" } });
    await screen.findByTestId("matrix-row-s-0600");
    expect(screen.queryByTestId("matrix-row-s-0001")).toBeNull();
    const sorted = calls.filter((u) => u.searchParams.get("sort") === "-student_id");
    expect(sorted[0].searchParams.get("cursor")).toBeNull();
    await waitFor(() => expect(screen.getByTestId("matrix-count").textContent).toBe("600 students × 100 materials"));
  });

  it("colours by progress and marks completion", () => {
    expect(heat(0, false)).toBe("#f1f5f9");
    expect(heat(100, true)).toBe("#15803d");
    expect(heat(50, false)).not.toBe(heat(90, false));
  });
});
