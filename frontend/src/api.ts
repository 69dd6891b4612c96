/** The progress API, as the pages use it. Errors arrive as ApiError with the contract's code. */

export interface Material {
  material_id: string;
  title: string;
  type: "video" | "pdf" | "link";
  duration: number | null;
  url: string | null;
}
export interface Module {
  module_id: string;
  title: string;
  materials: Material[];
}
export interface Course {
  course_id: string;
  title: string;
  teacher_ids: string[];
  modules: Module[];
}
export interface MaterialStatus {
  material_id: string;
  course_id: string;
  watch_time: number;
  total_duration: number | null;
  progress_percentage: number;
  watched_seconds: number;
  completed: boolean;
  completed_at: string | null;
  last_watched: string | null;
}
export interface CourseProgress {
  course_id: string;
  progress_percentage: number;
  completed_materials: string[];
  total_materials: number;
  videos: { total: number; started: number; completed: number; watched_seconds: number; total_seconds: number };
  modules: {
    module_id: string;
    progress_percentage: number;
    watched_seconds: number;
    total_seconds: number;
    materials: CourseProgressMaterial[];
  }[];
}
export interface CourseProgressMaterial {
  material_id: string;
  watch_time: number;
  progress_percentage: number;
  completed: boolean;
  /** In a teacher's view of one student: the parts of the video they played (seconds). */
  watched_ranges?: [number, number][];
  /** Claimed watching the server could not verify (seconds), beside the credited figures. */
  unverified_seconds?: number;
}
export interface ClassRow {
  student_id: string;
  progress_percentage: number;
  completed_materials: number;
  watched_seconds: number;
  unverified_seconds?: number;
  last_active: string | null;
}
export interface Page<T> {
  rows: T[];
  next_cursor: string | null;
}
/** GET /api/me/courses, a student's entry. */
export interface StudentCourseSummary {
  course_id: string;
  title: string;
  progress_percentage: number;
  completed_materials: number;
  total_materials: number;
  last_active: string | null;
}
/** GET /api/me/courses, a teacher's or an admin's entry. */
export interface TeacherCourseSummary {
  course_id: string;
  title: string;
  enrolled: number;
  average_progress: number;
  completion_rate: number;
}
export type CourseSummary = StudentCourseSummary | TeacherCourseSummary;
export interface MyCourses {
  courses: CourseSummary[];
  next_cursor: string | null;
}
export interface Matrix {
  course_id: string;
  materials: { material_id: string; title: string; type: Material["type"] }[];
  rows: { student_id: string; progress: number[]; completed: boolean[] }[];
  next_cursor: string | null;
}
export interface ClassQuery {
  sort?: string;
  limit?: number;
  cursor?: string | null;
  /** Only students inactive for at least this many days. */
  inactiveDays?: number | null;
  /** Student id search. */
  q?: string | null;
}
export interface CourseStats {
  course_id: string;
  enrolled: number;
  average_progress: number;
  completion_rate: number;
  materials: { material_id: string; started: number; completed: number; average_watched_percentage: number }[];
}
export interface Retention {
  material_id: string;
  duration: number;
  viewers: number;
  buckets: { start: number; end: number; share: number }[];
}
export interface DemoUser {
  user_id: string;
  role: "student" | "teacher" | "admin";
  course_id: string | null;
}

/** A page's error handler: 401 signs out, anything else is shown. */
export function errorHandler(onUnauthorized: () => void, show: (message: string) => void) {
  return (e: unknown) => {
    if (e instanceof ApiError && e.status === 401) onUnauthorized();
    else show(e instanceof Error ? e.message : String(e));
  };
}

const TOKEN_KEY = "videoprogress.token";
const USER_KEY = "videoprogress.user";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const session = {
  token: (): string | null => localStorage.getItem(TOKEN_KEY),
  user: (): DemoUser | null => JSON.parse(localStorage.getItem(USER_KEY) ?? "null"),
  signIn(token: string, user: DemoUser): void {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  signOut(): void {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
  },
};

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const token = session.token();
  const response = await fetch(path, {
    ...init,
    headers: {
      ...(init.body ? { "Content-Type": "application/json" } : {}),
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...init.headers,
    },
  });
  if (!response.ok) {
    let code = "http_error";
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not the error shape: keep the status line
    }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await request(path, init)).json() as Promise<T>;
}

/** "?a=1&b=x" from the parameters that are set (null, undefined and "" are left out). */
export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const classParams = (q: ClassQuery) => ({
  sort: q.sort,
  limit: q.limit,
  cursor: q.cursor,
  inactive_days: q.inactiveDays,
  q: q.q,
});
const teacherCourse = (id: string) => `/api/teacher/courses/${encodeURIComponent(id)}`;

const post = (body: unknown): RequestInit => ({ method: "POST", body: JSON.stringify(body) });

export const api = {
  course: (id: string) => json<Course>(`/api/courses/${encodeURIComponent(id)}`),
  courseProgress: (id: string) => json<CourseProgress>(`/api/progress/course/${encodeURIComponent(id)}`),
  statuses: (ids: string[]) =>
    json<{ statuses: Record<string, MaterialStatus>; unknown: string[] }>(
      "/api/progress/videos/status",
      post({ material_ids: ids }),
    ),
  complete: (id: string) =>
    json<{ completed: boolean }>(`/api/progress/material/${encodeURIComponent(id)}/complete`, { method: "POST" }),
  myCourses: (page: { limit?: number; cursor?: string | null } = {}) =>
    json<MyCourses>(`/api/me/courses${query({ limit: page.limit, cursor: page.cursor })}`),
  /** One page of the class table; follow `next_cursor` for the rest. */
  classProgress: (courseId: string, q: ClassQuery = {}) =>
    json<Page<ClassRow>>(`${teacherCourse(courseId)}/progress${query(classParams(q))}`),
  classCsv: async (courseId: string, q: ClassQuery = {}) =>
    (await request(`${teacherCourse(courseId)}/progress${query({ ...classParams({ ...q, limit: undefined, cursor: undefined }), format: "csv" })}`)).blob(),
  studentProgress: (courseId: string, studentId: string) =>
    json<CourseProgress>(`${teacherCourse(courseId)}/students/${encodeURIComponent(studentId)}/progress`),
  matrix: (courseId: string, q: { sort?: string; limit?: number; cursor?: string | null } = {}) =>
    json<Matrix>(`${teacherCourse(courseId)}/matrix${query({ sort: q.sort, limit: q.limit, cursor: q.cursor })}`),
  matrixCsv: async (courseId: string, sort?: string) =>
    (await request(`${teacherCourse(courseId)}/matrix${query({ sort, format: "csv" })}`)).blob(),
  stats: (courseId: string) => json<CourseStats>(`/api/teacher/courses/${encodeURIComponent(courseId)}/stats`),
  retention: (materialId: string, buckets = 50) =>
    json<Retention>(`/api/teacher/materials/${encodeURIComponent(materialId)}/retention?buckets=${buckets}`),
  devUsers: () => json<DemoUser[]>("/dev/users"),
  devToken: (user: DemoUser) => json<{ token: string }>("/dev/token", post({ user_id: user.user_id, role: user.role })),
};
