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
    materials: { material_id: string; watch_time: number; progress_percentage: number; completed: boolean }[];
  }[];
}
export interface ClassRow {
  student_id: string;
  progress_percentage: number;
  completed_materials: number;
  watched_seconds: number;
  last_active: string | null;
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
  classProgress: (courseId: string, sort: string) =>
    json<{ rows: ClassRow[]; next_cursor: string | null }>(
      `/api/teacher/courses/${encodeURIComponent(courseId)}/progress?limit=1000&sort=${encodeURIComponent(sort)}`,
    ),
  classCsv: async (courseId: string) =>
    (await request(`/api/teacher/courses/${encodeURIComponent(courseId)}/progress?format=csv`)).blob(),
  stats: (courseId: string) => json<CourseStats>(`/api/teacher/courses/${encodeURIComponent(courseId)}/stats`),
  retention: (materialId: string, buckets = 50) =>
    json<Retention>(`/api/teacher/materials/${encodeURIComponent(materialId)}/retention?buckets=${buckets}`),
  devUsers: () => json<DemoUser[]>("/dev/users"),
  devToken: (user: DemoUser) => json<{ token: string }>("/dev/token", post({ user_id: user.user_id, role: user.role })),
};
