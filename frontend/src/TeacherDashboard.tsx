import { useEffect, useMemo, useState } from "react";
import { api, errorHandler, type ClassRow, type Course, type CourseStats, type Retention } from "./api";
import { clock, percent } from "./format";
import { ProgressBar } from "./ProgressBar";
import { RetentionChart } from "./RetentionChart";

const COLUMNS: { key: string; label: string }[] = [
  { key: "student_id", label: "Student" },
  { key: "progress", label: "Progress" },
  { key: "watched_seconds", label: "Watched" },
  { key: "last_active", label: "Last active" },
];

/** The class table (sortable, CSV), course stats and a video's retention curve. */
export function TeacherDashboard({ courseId, onUnauthorized }: { courseId: string; onUnauthorized: () => void }) {
  const [course, setCourse] = useState<Course | null>(null);
  const [rows, setRows] = useState<ClassRow[]>([]);
  const [sort, setSort] = useState("student_id");
  const [stats, setStats] = useState<CourseStats | null>(null);
  const [video, setVideo] = useState<string | null>(null);
  const [retention, setRetention] = useState<Retention | null>(null);
  const [error, setError] = useState<string | null>(null);

  const fail = useMemo(() => errorHandler(onUnauthorized, setError), [onUnauthorized]);

  useEffect(() => {
    Promise.all([api.course(courseId), api.stats(courseId)])
      .then(([c, s]) => {
        setCourse(c);
        setStats(s);
        const first = c.modules.flatMap((m) => m.materials).find((m) => m.type === "video");
        setVideo(first?.material_id ?? null);
      })
      .catch(fail);
  }, [courseId, fail]);

  useEffect(() => {
    api.classProgress(courseId, sort).then((page) => setRows(page.rows), fail);
  }, [courseId, sort, fail]);

  useEffect(() => {
    if (video) api.retention(video).then(setRetention, fail);
  }, [video, fail]);

  async function downloadCsv() {
    try {
      const blob = await api.classCsv(courseId);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `${courseId}-progress.csv`;
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (e) {
      fail(e);
    }
  }

  function sortBy(key: string) {
    setSort((current) => (current === key ? `-${key}` : key));
  }

  if (error) return <p className="error">{error}</p>;
  if (!course || !stats) return <p>Loading…</p>;
  const videos = course.modules.flatMap((m) => m.materials).filter((m) => m.type === "video");
  const title = (id: string) => course.modules.flatMap((m) => m.materials).find((m) => m.material_id === id)?.title ?? id;

  return (
    <main className="dashboard">
      <h1>{course.title}: class progress</h1>
      <p className="muted">Updated from stored progress; it may lag the students by up to a flush interval.</p>
      <div className="cards">
        <div className="card" data-testid="stat-enrolled">
          <strong>{stats.enrolled}</strong> enrolled
        </div>
        <div className="card" data-testid="stat-average">
          <strong>{percent(stats.average_progress)}</strong> average progress
        </div>
        <div className="card" data-testid="stat-completion">
          <strong>{percent(stats.completion_rate * 100)}</strong> finished the course
        </div>
      </div>

      <div className="toolbar">
        <h2>Students</h2>
        <button onClick={() => void downloadCsv()}>Download CSV</button>
      </div>
      <table className="class-table" data-testid="class-table">
        <thead>
          <tr>
            {COLUMNS.map((c) => (
              <th key={c.key} onClick={() => sortBy(c.key)} className="sortable">
                {c.label} {sort === c.key ? "▲" : sort === `-${c.key}` ? "▼" : ""}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={row.student_id} data-testid={`row-${row.student_id}`}>
              <td>{row.student_id}</td>
              <td className="progress-cell">
                <ProgressBar value={row.progress_percentage} label={`${row.student_id} progress`} />
                <span>{percent(row.progress_percentage)}</span>
              </td>
              <td>{clock(row.watched_seconds)}</td>
              <td>{row.last_active ? new Date(row.last_active).toLocaleString() : "never"}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Materials</h2>
      <table className="class-table">
        <thead>
          <tr>
            <th>Material</th>
            <th>Started</th>
            <th>Completed</th>
            <th>Average watched</th>
          </tr>
        </thead>
        <tbody>
          {stats.materials.map((m) => (
            <tr key={m.material_id}>
              <td>{title(m.material_id)}</td>
              <td>{m.started}</td>
              <td>{m.completed}</td>
              <td>{percent(m.average_watched_percentage)}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <div className="toolbar">
        <h2>Audience retention</h2>
        <select value={video ?? ""} onChange={(e) => setVideo(e.target.value)} aria-label="Video">
          {videos.map((v) => (
            <option key={v.material_id} value={v.material_id}>
              {v.title}
            </option>
          ))}
        </select>
      </div>
      {retention && (
        <>
          <p className="muted" data-testid="retention-viewers">
            {retention.viewers} viewer{retention.viewers === 1 ? "" : "s"}
          </p>
          <RetentionChart retention={retention} />
        </>
      )}
    </main>
  );
}
