import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api, errorHandler, type ClassQuery, type ClassRow } from "./api";
import { saveBlob } from "./download";
import { clock, percent } from "./format";
import { ProgressBar } from "./ProgressBar";

export const CLASS_PAGE_SIZE = 200;
const SEARCH_DELAY_MS = 300;

const COLUMNS: { key: string; label: string }[] = [
  { key: "student_id", label: "Student" },
  { key: "progress", label: "Progress" },
  { key: "watched_seconds", label: "Watched" },
  { key: "unverified_seconds", label: "Unverified" },
  { key: "last_active", label: "Last active" },
];

export const studentHref = (courseId: string, studentId: string) =>
  `#/teacher/${encodeURIComponent(courseId)}/student/${encodeURIComponent(studentId)}`;

/**
 * The whole class, a page at a time: sorted and filtered by the server, following
 * `next_cursor` ("Show more", and automatically when the end of the table scrolls into view)
 * until every row is shown. A row opens that student's drill-down (click, or Enter on its link).
 */
export function ClassTable({
  courseId,
  enrolled,
  onUnauthorized,
  pageSize = CLASS_PAGE_SIZE,
}: {
  courseId: string;
  enrolled?: number;
  onUnauthorized: () => void;
  pageSize?: number;
}) {
  const [sort, setSort] = useState("student_id");
  const [inactiveDays, setInactiveDays] = useState("");
  const [search, setSearch] = useState("");
  const [q, setQ] = useState("");
  const [rows, setRows] = useState<ClassRow[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const generation = useRef(0); // answers to an older query are dropped
  // The cursor being loaded: the button and the scroll observer can both ask for the next page
  // in one tick, before `loading` re-renders; the same page must not be appended twice.
  const loadingCursor = useRef<string | null>(null);
  const sentinel = useRef<HTMLDivElement>(null);
  const fail = useMemo(() => errorHandler(onUnauthorized, setError), [onUnauthorized]);

  useEffect(() => {
    const timer = setTimeout(() => setQ(search.trim()), SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [search]);

  const days = /^\d+$/.test(inactiveDays) && Number(inactiveDays) > 0 ? Number(inactiveDays) : null;
  const filters: ClassQuery = useMemo(() => ({ sort, inactiveDays: days, q: q || null }), [sort, days, q]);

  useEffect(() => {
    const mine = ++generation.current;
    loadingCursor.current = null;
    setLoading(true);
    setError(null);
    api.classProgress(courseId, { ...filters, limit: pageSize }).then(
      (page) => {
        if (mine !== generation.current) return;
        setRows(page.rows);
        setNext(page.next_cursor ?? null);
        setLoading(false);
      },
      (e) => {
        if (mine !== generation.current) return;
        setRows([]); // the rows of the previous query would pass for this one's
        setNext(null);
        setLoading(false);
        fail(e);
      },
    );
  }, [courseId, filters, pageSize, fail]);

  const loadMore = useCallback(() => {
    if (!next || loading || loadingCursor.current === next) return;
    const mine = generation.current;
    loadingCursor.current = next;
    setLoading(true);
    api.classProgress(courseId, { ...filters, limit: pageSize, cursor: next }).then(
      (page) => {
        if (mine !== generation.current) return;
        loadingCursor.current = null;
        setRows((current) => [...current, ...page.rows]);
        setNext(page.next_cursor ?? null);
        setLoading(false);
      },
      (e) => {
        if (mine !== generation.current) return;
        loadingCursor.current = null;
        setLoading(false);
        fail(e);
      },
    );
  }, [courseId, filters, pageSize, next, loading, fail]);

  // Infinite scroll: the next page loads when the end of the table comes into view.
  useEffect(() => {
    const target = sentinel.current;
    if (!target || !next || typeof IntersectionObserver === "undefined") return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    });
    observer.observe(target);
    return () => observer.disconnect();
  }, [next, loadMore]);

  async function downloadCsv() {
    try {
      saveBlob(await api.classCsv(courseId, filters), `${courseId}-progress.csv`);
    } catch (e) {
      fail(e);
    }
  }

  function sortBy(key: string) {
    setSort((current) => (current === key ? `-${key}` : key));
  }

  const open = (studentId: string) => (window.location.hash = studentHref(courseId, studentId).slice(1));
  const filtered = days !== null || q !== "";

  return (
    <section aria-labelledby="students-heading">
      <div className="toolbar">
        <h2 id="students-heading">Students</h2>
        <button onClick={() => void downloadCsv()}>Download CSV</button>
      </div>
      <div className="filters">
        <label>
          Search student id or name{" "}
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} data-testid="class-search" />
        </label>
        <label>
          Inactive for at least{" "}
          <input
            type="number"
            min={1}
            inputMode="numeric"
            value={inactiveDays}
            onChange={(e) => setInactiveDays(e.target.value)}
            className="days"
            data-testid="class-inactive"
          />{" "}
          days
        </label>
      </div>
      <p className="muted" aria-live="polite" data-testid="class-count">
        Showing {rows.length}
        {!filtered && enrolled !== undefined ? ` of ${enrolled}` : ""} student{rows.length === 1 ? "" : "s"}
        {next ? " (more below)" : ""}
      </p>
      {error && <p className="error" role="alert">{error}</p>}
      <table className="class-table" data-testid="class-table">
        <caption className="visually-hidden">Students' progress; column buttons sort, a row opens the student</caption>
        <thead>
          <tr>
            {COLUMNS.map((c) => {
              const state = sort === c.key ? "ascending" : sort === `-${c.key}` ? "descending" : "none";
              return (
                <th key={c.key} scope="col" aria-sort={state}>
                  <button className="sort" onClick={() => sortBy(c.key)}>
                    {c.label}
                    <span aria-hidden="true">{state === "ascending" ? " ▲" : state === "descending" ? " ▼" : ""}</span>
                  </button>
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr
              key={row.student_id}
              data-testid={`row-${row.student_id}`}
              className="clickable"
              onClick={(e) => {
                if (!(e.target instanceof HTMLAnchorElement)) open(row.student_id);
              }}
            >
              <td>
                <a href={studentHref(courseId, row.student_id)} title={row.student_id}>
                  {row.name ?? row.student_id}
                </a>
              </td>
              <td>
                <div className="progress-cell">
                  <ProgressBar value={row.progress_percentage} label={`${row.name ?? row.student_id} progress`} />
                  <span>{percent(row.progress_percentage)}</span>
                </div>
              </td>
              <td>{clock(row.watched_seconds)}</td>
              <td data-testid={`unverified-${row.student_id}`}>{clock(row.unverified_seconds ?? 0)}</td>
              <td>{row.last_active ? new Date(row.last_active).toLocaleString() : "never"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!loading && rows.length === 0 && !error && <p data-testid="class-empty">No students match.</p>}
      <div ref={sentinel} />
      {next && (
        <button onClick={loadMore} disabled={loading} data-testid="class-more">
          {loading ? "Loading…" : "Show more students"}
        </button>
      )}
    </section>
  );
}
