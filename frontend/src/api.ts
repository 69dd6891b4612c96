/** The progress API, as the pages use it. Errors arrive as ApiError with the contract's code. */

import type {
  ClassPage,
  ClassProgressQuery,
  CompletionAccepted,
  Course,
  CourseProgress,
  CourseStats,
  DemoUser,
  DevToken,
  LtiContexts,
  LtiGrades,
  LtiPlatformBody,
  LtiPlatforms,
  LtiRegistrationInvite,
  MatrixQuery,
  MyCourses,
  MyCoursesQuery,
  ProgressMatrix,
  Retention,
  SessionToken,
  StatusBatch,
  StatusRequest,
  StudentCourseProgress,
  TokenRequest,
} from "./api-types";
import { pageStorage } from "./tracker/storage";

export type * from "./api-types";

/** A class table's filters, sort and page (sent as the route's query parameters). */
export type ClassQuery = Pick<ClassProgressQuery, "sort" | "limit" | "cursor" | "q"> & {
  /** Only students inactive for at least this many days. */
  inactiveDays?: ClassProgressQuery["inactive_days"];
};
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

/** An LTI launch's session (launch.ts): in this page's memory only, never in storage. */
let launched: { token: string; user: DemoUser } | null = null;

/** The signed-in user: an LTI launch's, held in memory, or else a sign-in's, in localStorage (or
 * this page's memory where the browser refuses it). */
export const session = {
  token: (): string | null => (launched ? launched.token : pageStorage.getItem(TOKEN_KEY)),
  user: (): DemoUser | null => (launched ? launched.user : JSON.parse(pageStorage.getItem(USER_KEY) ?? "null")),
  /** Whether the session is an LTI launch's (renewed while the page is open). */
  isLaunch: (): boolean => launched !== null,
  signIn(token: string, user: DemoUser): void {
    pageStorage.setItem(TOKEN_KEY, token);
    pageStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  /** A launch's session: memory only, so it ends with the page. */
  launch(token: string, user: DemoUser): void {
    launched = { token, user };
  },
  /** The launch's renewed token. */
  renewed(token: string): void {
    if (launched) launched = { ...launched, token };
  },
  /** Forget the token; the user's outbox is the caller's business (App's sign-out). */
  signOut(): void {
    launched = null;
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

const classParams = (q: ClassQuery): ClassProgressQuery => ({
  sort: q.sort,
  limit: q.limit,
  cursor: q.cursor,
  inactive_days: q.inactiveDays,
  q: q.q,
});
const teacherCourse = (id: string) => `/api/teacher/courses/${encodeURIComponent(id)}`;

const ltiPlatform = (id: string) => `/api/admin/lti/platforms/${encodeURIComponent(id)}`;
const post = (body: unknown): RequestInit => ({ method: "POST", body: JSON.stringify(body) });

export const api = {
  course: (id: string) => json<Course>(`/api/courses/${encodeURIComponent(id)}`),
  courseProgress: (id: string) => json<CourseProgress>(`/api/progress/course/${encodeURIComponent(id)}`),
  statuses: (ids: string[]) =>
    json<StatusBatch>("/api/progress/videos/status", post({ material_ids: ids } satisfies StatusRequest)),
  complete: (id: string) =>
    json<CompletionAccepted>(`/api/progress/material/${encodeURIComponent(id)}/complete`, { method: "POST" }),
  myCourses: (page: MyCoursesQuery = {}) =>
    json<MyCourses>(`/api/me/courses${query({ limit: page.limit, cursor: page.cursor })}`),
  /** One page of the class table; follow `next_cursor` for the rest. */
  classProgress: (courseId: string, q: ClassQuery = {}) =>
    json<ClassPage>(`${teacherCourse(courseId)}/progress${query(classParams(q))}`),
  classCsv: async (courseId: string, q: ClassQuery = {}) =>
    (await request(`${teacherCourse(courseId)}/progress${query({ ...classParams({ ...q, limit: undefined, cursor: undefined }), format: "csv" })}`)).blob(),
  studentProgress: (courseId: string, studentId: string) =>
    json<StudentCourseProgress>(`${teacherCourse(courseId)}/students/${encodeURIComponent(studentId)}/progress`),
  matrix: (courseId: string, q: Pick<MatrixQuery, "sort" | "limit" | "cursor"> = {}) =>
    json<ProgressMatrix>(`${teacherCourse(courseId)}/matrix${query({ sort: q.sort, limit: q.limit, cursor: q.cursor })}`),
  matrixCsv: async (courseId: string, sort?: string) =>
    (await request(`${teacherCourse(courseId)}/matrix${query({ sort, format: "csv" })}`)).blob(),
  stats: (courseId: string) => json<CourseStats>(`/api/teacher/courses/${encodeURIComponent(courseId)}/stats`),
  retention: (materialId: string, buckets = 50) =>
    json<Retention>(`/api/teacher/materials/${encodeURIComponent(materialId)}/retention?buckets=${buckets}`),
  /** A launch's session token, renewed (`POST /lti/session` with the current one). */
  renewSession: () => json<SessionToken>("/lti/session", { method: "POST" }),
  ltiPlatforms: () => json<LtiPlatforms>("/api/admin/lti/platforms"),
  /** Register (or replace) the platform `id`. */
  putLtiPlatform: (id: string, body: LtiPlatformBody) =>
    request(ltiPlatform(id), { method: "PUT", body: JSON.stringify(body) }),
  deleteLtiPlatform: (id: string) => request(ltiPlatform(id), { method: "DELETE" }),
  /** The platform's grades back: learners graded and refused, the last error, the score outbox. */
  ltiGrades: (id: string) => json<LtiGrades>(`${ltiPlatform(id)}/grades`),
  /** Every LMS context seen at a launch, with its roster's last complete sync and last error. */
  ltiContexts: () => json<LtiContexts>("/api/admin/lti/contexts"),
  ltiRegistrationInvite: () =>
    json<LtiRegistrationInvite>("/api/admin/lti/registration-invites", { method: "POST" }),
  devUsers: () => json<DemoUser[]>("/dev/users"),
  devToken: (user: DemoUser) => json<DevToken>("/dev/token", post({ user_id: user.user_id, role: user.role } satisfies TokenRequest)),
};
