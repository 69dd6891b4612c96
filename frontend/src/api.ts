/** The progress API, as the pages use it. Errors arrive as ApiError with the contract's code. */

import type { components } from "./api-schema";
import { pageStorage } from "./tracker/storage";

/**
 * The API's shapes come from its OpenAPI schema (src/api-schema.d.ts, `npm run gen:api`).
 * Answers always carry every field the schema declares (the server serializes defaults), so
 * `Sent<>` reads fields with a default as present.
 */
type Schemas = components["schemas"];
export type Sent<T> = T extends (infer U)[] ? Sent<U>[] : T extends object ? { [K in keyof T]-?: Sent<T[K]> } : T;

export type Material = Sent<Schemas["Material"]>;
export type Module = Sent<Schemas["Module"]>;
export type Course = Sent<Schemas["Course"]>;
export type MaterialStatus = Sent<Schemas["MaterialStatus"]>;
export type CourseStats = Sent<Schemas["CourseStats"]>;
export type Retention = Sent<Schemas["Retention"]>;
export type DemoUser = Sent<Schemas["DemoUser"]>;

// Fields the backend's issue-15 routes add; optional until they are in the schema (then
// regenerate and these intersections change nothing).
/** A material in a course view; in a teacher's view of one student with the parts played. */
export type CourseProgressMaterial = Sent<Schemas["MaterialProgress"]> & {
  /** The parts of the video the student played, in seconds. */
  watched_ranges?: [number, number][];
  /** Claimed watching the server could not verify (seconds), beside the credited figures. */
  unverified_seconds?: number;
};
type ModuleProgress = Omit<Sent<Schemas["ModuleProgress"]>, "materials"> & { materials: CourseProgressMaterial[] };
export type CourseProgress = Omit<Sent<Schemas["CourseProgress"]>, "modules"> & { modules: ModuleProgress[] };
export type ClassRow = Sent<Schemas["ClassRow"]> & { unverified_seconds?: number };

// The routes below are not in the schema yet (the backend's branch adds them): hand-written
// from the contract until then.
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

/** The signed-in user, in localStorage (or this page's memory where the browser refuses it). */
export const session = {
  token: (): string | null => pageStorage.getItem(TOKEN_KEY),
  user: (): DemoUser | null => JSON.parse(pageStorage.getItem(USER_KEY) ?? "null"),
  signIn(token: string, user: DemoUser): void {
    pageStorage.setItem(TOKEN_KEY, token);
    pageStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  /** Forget the token; the user's outbox is the caller's business (App's sign-out). */
  signOut(): void {
    pageStorage.removeItem(TOKEN_KEY);
    pageStorage.removeItem(USER_KEY);
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
