import { useEffect, useMemo, useState } from "react";
import {
  api,
  errorHandler,
  type DemoUser,
  type StudentCourse,
  type TaughtCourse,
} from "./api";
import { percent } from "./format";
import { LtiPanel } from "./LtiPanel";
import { ProgressBar } from "./ProgressBar";

export const ADMIN_PAGE_SIZE = 50;

const isStudentEntry = (c: StudentCourse | TaughtCourse): c is StudentCourse => "progress_percentage" in c;

/** Each role's courses: a student's own progress; a teacher's (or, paged, an admin's) classes. */
export function HomePage({ user, onUnauthorized }: { user: DemoUser; onUnauthorized: () => void }) {
  const [courses, setCourses] = useState<(StudentCourse | TaughtCourse)[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const fail = useMemo(() => errorHandler(onUnauthorized, setError), [onUnauthorized]);
  const paged = user.role === "admin";

  useEffect(() => {
    let cancelled = false;
    api.myCourses(paged ? { limit: ADMIN_PAGE_SIZE } : {}).then((page) => {
      if (cancelled) return;
      setCourses(page.courses);
      setNext(page.next_cursor ?? null);
    }, fail);
    return () => {
      cancelled = true;
    };
  }, [paged, fail]);

  async function loadMore() {
    if (!next) return;
    setLoadingMore(true);
    try {
      const page = await api.myCourses({ limit: ADMIN_PAGE_SIZE, cursor: next });
      setCourses((current) => [...(current ?? []), ...page.courses]);
      setNext(page.next_cursor ?? null);
    } catch (e) {
      fail(e);
    } finally {
      setLoadingMore(false);
    }
  }

  if (error) return <main><p className="error" role="alert">{error}</p></main>;
  if (!courses) return <main><p>Loading…</p></main>;

  const heading = user.role === "student" ? "My courses" : user.role === "teacher" ? "My classes" : "All courses";
  return (
    <main className="home">
      <h1>{heading}</h1>
      {courses.length === 0 && <p data-testid="no-courses">No courses yet.</p>}
      {user.role === "student" ? (
        <ul className="course-list" data-testid="course-list">
          {courses.filter(isStudentEntry).map((c) => (
            <StudentCourseCard key={c.course_id} course={c} />
          ))}
        </ul>
      ) : (
        courses.length > 0 && <TeacherCourseTable courses={courses as TaughtCourse[]} />
      )}
      {paged && next && (
        <button onClick={() => void loadMore()} disabled={loadingMore} data-testid="more-courses">
          {loadingMore ? "Loading…" : "Show more courses"}
        </button>
      )}
      {user.role === "admin" && <LtiPanel onUnauthorized={onUnauthorized} />}
    </main>
  );
}

function StudentCourseCard({ course }: { course: StudentCourse }) {
  return (
    <li className="course-card" data-testid={`course-${course.course_id}`}>
      <h2>
        <a href={`#/course/${encodeURIComponent(course.course_id)}`}>{course.title}</a>
      </h2>
      <ProgressBar value={course.progress_percentage} label={`${course.title} progress`} testId={`course-bar-${course.course_id}`} />
      <p className="muted">
        {course.completed_materials} of {course.total_materials} materials complete · {percent(course.progress_percentage)}
        {" · "}
        {course.last_active ? `last active ${new Date(course.last_active).toLocaleDateString()}` : "not started"}
      </p>
    </li>
  );
}

function TeacherCourseTable({ courses }: { courses: TaughtCourse[] }) {
  return (
    <table className="class-table" data-testid="course-table">
      <caption className="visually-hidden">Courses with enrolment and progress</caption>
      <thead>
        <tr>
          <th scope="col">Course</th>
          <th scope="col">Enrolled</th>
          <th scope="col">Average progress</th>
          <th scope="col">Finished the course</th>
          <th scope="col">Who watched what</th>
        </tr>
      </thead>
      <tbody>
        {courses.map((c) => (
          <tr key={c.course_id} data-testid={`course-${c.course_id}`}>
            <td>
              <a href={`#/teacher/${encodeURIComponent(c.course_id)}`}>{c.title}</a>
            </td>
            <td>{c.enrolled}</td>
            <td>
              <div className="progress-cell">
                <ProgressBar value={c.average_progress} label={`${c.title} average progress`} />
                <span>{percent(c.average_progress)}</span>
              </div>
            </td>
            <td>
              <div className="progress-cell">
                <ProgressBar value={c.completion_rate * 100} label={`${c.title} completion rate`} />
                <span>{percent(c.completion_rate * 100)}</span>
              </div>
            </td>
            <td>
              <a href={`#/teacher/${encodeURIComponent(c.course_id)}/matrix`} aria-label={`${c.title}: matrix`}>
                Matrix
              </a>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
