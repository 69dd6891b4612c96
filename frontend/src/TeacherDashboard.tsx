import { useEffect, useMemo, useState } from "react";
import { api, errorHandler, type Course, type CourseStats, type Retention } from "./api";
import { ClassTable } from "./ClassTable";
import { percent } from "./format";
import { RetentionChart } from "./RetentionChart";

/** The class table (whole, sortable and filtered on the server, CSV), course stats and a video's retention curve. */
export function TeacherDashboard({ courseId, onUnauthorized }: { courseId: string; onUnauthorized: () => void }) {
  const [course, setCourse] = useState<Course | null>(null);
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
    if (video) api.retention(video).then(setRetention, fail);
  }, [video, fail]);

  if (error) return <p className="error">{error}</p>;
  if (!course || !stats) return <p>Loading…</p>;
  const videos = course.modules.flatMap((m) => m.materials).filter((m) => m.type === "video");
  const title = (id: string) => course.modules.flatMap((m) => m.materials).find((m) => m.material_id === id)?.title ?? id;

  return (
    <main className="dashboard">
      <p>
        <a href="#/">← My classes</a> · <a href={`#/teacher/${encodeURIComponent(courseId)}/matrix`}>Who watched what (matrix)</a>
      </p>
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

      <ClassTable courseId={courseId} enrolled={stats.enrolled} onUnauthorized={onUnauthorized} />

      <h2>Materials</h2>
      <table className="class-table">
        <thead>
          <tr>
            <th scope="col">Material</th>
            <th scope="col">Started</th>
            <th scope="col">Completed</th>
            <th scope="col">Average watched</th>
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
