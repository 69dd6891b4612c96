import { useEffect, useMemo, useState } from "react";
import { api, errorHandler, type Course, type StudentCourseProgress } from "./api";
import { CoverageStrip } from "./CoverageStrip";
import { clock, percent, watchedWords } from "./format";
import { ProgressBar } from "./ProgressBar";

/** A teacher's view of one student: their course view, and per video which parts they played.
 * Named by the LMS roster's name when they have one (their id beside it). */
export function StudentProgressPage({
  courseId,
  studentId,
  onUnauthorized,
}: {
  courseId: string;
  studentId: string;
  onUnauthorized: () => void;
}) {
  const [course, setCourse] = useState<Course | null>(null);
  const [progress, setProgress] = useState<StudentCourseProgress | null>(null);
  const [error, setError] = useState<string | null>(null);
  const fail = useMemo(() => errorHandler(onUnauthorized, setError), [onUnauthorized]);

  useEffect(() => {
    let cancelled = false;
    Promise.all([api.course(courseId), api.studentProgress(courseId, studentId)]).then(([c, p]) => {
      if (cancelled) return;
      setCourse(c);
      setProgress(p);
    }, fail);
    return () => {
      cancelled = true;
    };
  }, [courseId, studentId, fail]);

  const back = (
    <p>
      <a href={`#/teacher/${encodeURIComponent(courseId)}`}>← Class</a>
    </p>
  );
  if (error) return <main>{back}<p className="error" role="alert">{error}</p></main>;
  if (!course || !progress) return <main>{back}<p>Loading…</p></main>;

  const who = progress.name ?? studentId;
  const unverified = progress.modules
    .flatMap((m) => m.materials)
    .reduce((sum, m) => sum + (m.unverified_seconds ?? 0), 0);

  return (
    <main className="course" data-testid="student-drilldown">
      {back}
      <header className="course-header">
        <h1>
          {who} in {course.title}
        </h1>
        {progress.name && (
          <p className="muted" data-testid="student-id">
            {studentId}
          </p>
        )}
        <p data-testid="student-progress-text">
          {progress.completed_materials.length} of {progress.total_materials} materials complete ·{" "}
          {percent(progress.progress_percentage)} · {watchedWords(progress.videos.watched_seconds)} ·{" "}
          <span data-testid="student-unverified">{clock(unverified)} unverified</span>
        </p>
        <ProgressBar value={progress.progress_percentage} label={`${who} course progress`} testId="student-course-progress" />
      </header>
      {course.modules.map((module) => {
        const moduleProgress = progress.modules.find((m) => m.module_id === module.module_id);
        return (
          <section className="module" key={module.module_id} aria-labelledby={`mod-${module.module_id}`}>
            <h2 id={`mod-${module.module_id}`}>{module.title}</h2>
            <ProgressBar value={moduleProgress?.progress_percentage ?? 0} label={`${module.title} progress`} />
            <ul>
              {module.materials.map((material) => {
                const state = moduleProgress?.materials.find((m) => m.material_id === material.material_id);
                const done = state?.completed ?? false;
                return (
                  <li key={material.material_id} className="drill-material" data-testid={`drill-${material.material_id}`}>
                    <div className="drill-line">
                      <span className="title">{material.title}</span>
                      <span className="done">{done ? <span aria-label="completed">✓</span> : null}</span>
                      <ProgressBar value={state?.progress_percentage ?? 0} label={`${material.title} progress`} />
                      <span className="pct">{percent(state?.progress_percentage ?? 0)}</span>
                    </div>
                    {material.type === "video" && (
                      <div className="drill-line">
                        <CoverageStrip
                          ranges={state?.watched_ranges ?? []}
                          duration={material.duration ?? 0}
                          label={`${material.title} coverage`}
                        />
                        <span className="muted" data-testid={`drill-unverified-${material.material_id}`}>
                          {clock(state?.unverified_seconds ?? 0)} unverified
                        </span>
                      </div>
                    )}
                  </li>
                );
              })}
            </ul>
          </section>
        );
      })}
    </main>
  );
}
