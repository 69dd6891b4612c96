// @vitest-environment happy-dom
import { act, cleanup, configure, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ClassRow } from "./api";
import { ClassTable } from "./ClassTable";
import { fakeApi } from "./test/fakeApi";

// Two cores shared with other test runs: rendering 1,000 rows can take more than a second.
configure({ asyncUtilTimeout: 8000 });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

const student = (i: number): ClassRow => ({
  student_id: `s-${String(i).padStart(4, "0")}`,
  progress_percentage: i % 100,
  completed_materials: 0,
  watched_seconds: i,
  unverified_seconds: i % 7,
  last_active: null,
  name: null,
});

/** A server holding `n` students, paged by an opaque cursor (the offset), sorted by id. */
function classServer(n: number) {
  const all = Array.from({ length: n }, (_, i) => student(i + 1));
  return fakeApi({
    "GET /api/teacher/courses/c1/progress": (url) => {
      const sort = url.searchParams.get("sort") ?? "student_id";
      const q = url.searchParams.get("q");
      let rows = q ? all.filter((r) => r.student_id.includes(q)) : all;
      if (sort.startsWith("-")) rows = [...rows].reverse();
      const limit = Number(url.searchParams.get("limit") ?? 100);
      const offset = Number(url.searchParams.get("cursor") ?? 0);
      const next = offset + limit < rows.length ? String(offset + limit) : null;
      return { rows: rows.slice(offset, offset + limit), next_cursor: next };
    },
  });
}

const rowIds = () => screen.getAllByRole("row").slice(1).map((r) => r.getAttribute("data-testid"));

describe("ClassTable", () => {
  it("follows next_cursor until every student of a class over a page is shown", async () => {
    const { calls } = classServer(1001);
    render(<ClassTable courseId="c1" enrolled={1001} pageSize={400} onUnauthorized={() => {}} />);
    await waitFor(() => expect(rowIds()).toHaveLength(400));
    fireEvent.click(screen.getByTestId("class-more"));
    await waitFor(() => expect(rowIds()).toHaveLength(800));
    fireEvent.click(screen.getByTestId("class-more"));
    await waitFor(() => expect(rowIds()).toHaveLength(1001));
    expect(new Set(rowIds()).size).toBe(1001);
    expect(rowIds().at(-1)).toBe("row-s-1001");
    expect(screen.queryByTestId("class-more")).toBeNull();
    expect(screen.getByTestId("class-count").textContent).toBe("Showing 1001 of 1001 students");
    expect(calls.map((u) => u.searchParams.get("cursor"))).toEqual([null, "400", "800"]);
  });

  it("loads the next page once when the scroll and the button ask for it in the same tick", async () => {
    const observers: IntersectionObserverCallback[] = [];
    vi.stubGlobal(
      "IntersectionObserver",
      class {
        constructor(callback: IntersectionObserverCallback) {
          observers.push(callback);
        }
        observe() {}
        disconnect() {}
      },
    );
    const { calls } = classServer(30);
    render(<ClassTable courseId="c1" enrolled={30} pageSize={10} onUnauthorized={() => {}} />);
    await waitFor(() => expect(rowIds()).toHaveLength(10));
    act(() => {
      // the end of the table scrolls into view as the button is clicked: one render for both
      const seen = [{ isIntersecting: true }] as unknown as IntersectionObserverEntry[];
      observers.at(-1)?.(seen, {} as IntersectionObserver);
      screen.getByTestId("class-more").click();
    });
    await waitFor(() => expect(rowIds()).toHaveLength(20));
    expect(new Set(rowIds()).size).toBe(20);
    expect(calls.map((u) => u.searchParams.get("cursor"))).toEqual([null, "10"]);
  });

  it("shows the roster's name where the row has one, else the student id", async () => {
    const rows = [student(1), { ...student(2), name: "Ada Lovelace" }, student(3)];
    fakeApi({ "GET /api/teacher/courses/c1/progress": () => ({ rows, next_cursor: null }) });
    render(<ClassTable courseId="c1" enrolled={3} pageSize={10} onUnauthorized={() => {}} />);
    await waitFor(() => expect(rowIds()).toHaveLength(3));
    const links = screen.getAllByRole("row").slice(1).map((r) => r.querySelector("a")?.textContent);
    expect(links).toEqual(["s-0001", "Ada Lovelace", "s-0003"]);
  });

  it("sorts on the server from header buttons and says so with aria-sort", async () => {
    const { calls } = classServer(3);
    render(<ClassTable courseId="c1" onUnauthorized={() => {}} />);
    await waitFor(() => expect(rowIds()[0]).toBe("row-s-0001"));
    const header = screen.getByRole("button", { name: "Student" });
    fireEvent.click(header); // student_id is the current sort: reverses it
    await waitFor(() => expect(rowIds()[0]).toBe("row-s-0003"));
    expect(calls.at(-1)?.searchParams.get("sort")).toBe("-student_id");
    expect(screen.getAllByRole("columnheader")[0].getAttribute("aria-sort")).toBe("descending");
    fireEvent.click(screen.getByRole("button", { name: "Unverified" }));
    await waitFor(() => expect(calls.at(-1)?.searchParams.get("sort")).toBe("unverified_seconds"));
    expect(screen.getAllByRole("columnheader")[3].getAttribute("aria-sort")).toBe("ascending");
  });

  it("sends the search and the inactivity filter to the server and shows when nothing matches", async () => {
    const { calls } = classServer(30);
    render(<ClassTable courseId="c1" onUnauthorized={() => {}} />);
    await waitFor(() => expect(rowIds()).toHaveLength(30));
    fireEvent.change(screen.getByLabelText(/Search student id/), { target: { value: "s-0012" } });
    await waitFor(() => expect(rowIds()).toEqual(["row-s-0012"]));
    expect(calls.at(-1)?.searchParams.get("q")).toBe("s-0012");
    fireEvent.change(screen.getByLabelText(/Inactive for at least/), { target: { value: "7" } });
    await waitFor(() => expect(calls.at(-1)?.searchParams.get("inactive_days")).toBe("7"));
    fireEvent.change(screen.getByLabelText(/Search student id/), { target: { value: "nobody" } });
    await screen.findByTestId("class-empty");
  });

  it("drops the answer to an older query that arrives late", async () => {
    let release: (() => void) | null = null;
    fakeApi({
      "GET /api/teacher/courses/c1/progress": (url) => {
        const sort = url.searchParams.get("sort");
        const body = { rows: [student(sort === "-student_id" ? 2 : 1)], next_cursor: null };
        if (sort === "student_id") {
          // the first answer is held back until after the second one arrived
          return new Promise<Response>((resolve) => {
            release = () => resolve(new Response(JSON.stringify(body), { status: 200 }));
          });
        }
        return body;
      },
    });
    render(<ClassTable courseId="c1" onUnauthorized={() => {}} />);
    await waitFor(() => expect(release).not.toBeNull()); // the first request is in flight
    fireEvent.click(screen.getByRole("button", { name: "Student" }));
    await waitFor(() => expect(rowIds()).toEqual(["row-s-0002"]));
    await act(async () => {
      release?.();
      await new Promise((r) => setTimeout(r, 20));
    });
    expect(rowIds()).toEqual(["row-s-0002"]); // not replaced by the stale answer
  });

  it("opens the student's drill-down from a row; the student id is a link for the keyboard", async () => {
    classServer(2);
    render(<ClassTable courseId="c1" onUnauthorized={() => {}} />);
    const link = await screen.findByRole("link", { name: "s-0002" });
    expect(link.getAttribute("href")).toBe("#/teacher/c1/student/s-0002");
    fireEvent.click(screen.getByTestId("row-s-0002").querySelectorAll("td")[2]);
    expect(window.location.hash).toBe("#/teacher/c1/student/s-0002");
    expect(screen.getByTestId("unverified-s-0002").textContent).toBe("0:02");
  });
});

describe("ClassTable errors", () => {
  it("shows the server's refusal and no rows of an earlier query", async () => {
    fakeApi({
      "GET /api/teacher/courses/c1/progress": (url) =>
        url.searchParams.get("sort") === "-student_id"
          ? new Response(JSON.stringify({ error: { code: "invalid", message: "unknown sort key" } }), { status: 422 })
          : { rows: [student(1)], next_cursor: null },
    });
    render(<ClassTable courseId="c1" onUnauthorized={() => {}} />);
    await waitFor(() => expect(rowIds()).toEqual(["row-s-0001"]));
    fireEvent.click(screen.getByRole("button", { name: "Student" }));
    expect((await screen.findByRole("alert")).textContent).toBe("unknown sort key");
    expect(rowIds()).toEqual([]);
  });
});
