import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api, errorHandler, type Course, type CourseProgress, type Material, type MaterialStatus } from "./api";
import { percent, watchedWords } from "./format";
import { ProgressBar } from "./ProgressBar";
import { VideoPlayer } from "./VideoPlayer";

const KINDS = { video: "Video", pdf: "PDF", link: "Link" } as const;

/** A course's modules and materials with progress bars; Play opens the resuming player.
 * `play` (a material id, an LTI launch's) opens that video's player as soon as the page has its
 * status, once. */
/** How long the page waits for the closed player's last heartbeat before it reads the bars. */
export const LAST_HEARTBEAT_WAIT_MS = 5_000;

export function CourseDetailPage({ courseId, play, onUnauthorized }: { courseId: string; play?: string; onUnauthorized: () => void }) {
  const [course, setCourse] = useState<Course | null>(null);
  const [statuses, setStatuses] = useState<Record<string, MaterialStatus>>({});
  const [progress, setProgress] = useState<CourseProgress | null>(null);
  const [playing, setPlaying] = useState<Material | null>(null);
  const [error, setError] = useState<string | null>(null);

  const fail = useMemo(() => errorHandler(onUnauthorized, setError), [onUnauthorized]);
  const opened = useRef(false);

  /** One request for every material's status (not N), plus the course summary. */
  const refresh = useCallback(
    async (c: Course) => {
      const ids = c.modules.flatMap((m) => m.materials.map((x) => x.material_id));
      const [batch, summary] = await Promise.all([api.statuses(ids), api.courseProgress(c.course_id)]);
      setStatuses(batch.statuses);
      setProgress(summary);
    },
    [],
  );

  useEffect(() => {
    let cancelled = false;
    api
      .course(courseId)
      .then(async (c) => {
        if (cancelled) return;
        setCourse(c);
        await refresh(c);
      })
      .catch(fail);
    return () => {
      cancelled = true;
    };
  }, [courseId, refresh, fail]);

  useEffect(() => {
    if (!play || opened.current || !course || !progress) return;
    const material = course.modules.flatMap((m) => m.materials).find((m) => m.material_id === play);
    opened.current = true; // once: closing the player leaves the course page
    if (material?.type === "video" && material.url) setPlaying(material);
  }, [play, course, progress]);

  async function open(material: Material) {
    try {
      await api.complete(material.material_id);
      if (material.url) window.open(material.url, "_blank", "noopener");
      if (course) await refresh(course);
    } catch (e) {
      fail(e);
    }
  }

  /** The bars and the resume position move once the player closes: read after the server has
   * answered for the player's last heartbeat, which the read would otherwise miss, or after
   * LAST_HEARTBEAT_WAIT_MS (a request has no time limit of its own: one that hangs must not
   * keep the bars where they were). */
  function closePlayer(lastHeartbeat: Promise<void>) {
    setPlaying(null);
    const c = course;
    if (!c) return;
    const waited = new Promise<void>((resolve) => setTimeout(resolve, LAST_HEARTBEAT_WAIT_MS));
    void Promise.race([lastHeartbeat.catch(() => undefined), waited]).then(() => refresh(c)).catch(fail);
  }

  if (error) return <p className="error">{error}</p>;
  if (!course || !progress) return <p>Loading…</p>;

  return (
    <main className="course">
      <p>
        <a href="#/">← My courses</a>
      </p>
      <header className="course-header">
        <h1>{course.title}</h1>
        <p data-testid="course-progress-text">
          {progress.completed_materials.length} of {progress.total_materials} materials complete ·{" "}
          {percent(progress.progress_percentage)}
        </p>
        <ProgressBar value={progress.progress_percentage} label="Course progress" testId="course-progress" />
      </header>
      {course.modules.map((module, i) => {
        const moduleProgress = progress.modules[i];
        return (
          <section className="module" key={module.module_id} data-testid={`module-${module.module_id}`}>
            <h2>{module.title}</h2>
            <p className="muted">{watchedWords(moduleProgress?.watched_seconds ?? 0)}</p>
            <ProgressBar value={moduleProgress?.progress_percentage ?? 0} label={`${module.title} progress`} />
            <ul>
              {module.materials.map((material) => {
                const status = statuses[material.material_id];
                const done = status?.completed ?? false;
                return (
                  <li key={material.material_id} className="material" data-testid={`material-${material.material_id}`}>
                    <span className={`kind kind-${material.type}`}>{KINDS[material.type]}</span>
                    <span className="title">{material.title}</span>
                    <span className="done" title={done ? "Completed" : ""} data-testid={done ? `done-${material.material_id}` : undefined}>
                      {done ? "✓" : ""}
                    </span>
                    <ProgressBar
                      value={status?.progress_percentage ?? 0}
                      label={`${material.title} progress`}
                      testId={`bar-${material.material_id}`}
                    />
                    {material.type === "video" ? (
                      <button onClick={() => setPlaying(material)} disabled={!material.url}>
                        {status && status.watch_time > 0 ? "Resume" : "Play"}
                      </button>
                    ) : (
                      <button onClick={() => void open(material)}>{material.type === "pdf" ? "Download" : "Open"}</button>
                    )}
                  </li>
                );
              })}
            </ul>
          </section>
        );
      })}
      {playing && (
        <VideoPlayer
          material={playing}
          initialWatchTime={statuses[playing.material_id]?.watch_time ?? 0}
          initialProgress={statuses[playing.material_id]?.progress_percentage ?? 0}
          initialCompleted={statuses[playing.material_id]?.completed ?? false}
          onClose={closePlayer}
          onUnauthorized={onUnauthorized}
        />
      )}
    </main>
  );
}
