/**
 * The API's shapes, as the pages and the tracker use them: every one is named here, once, from
 * the generated schema (src/api-schema.d.ts, `npm run gen:api`), so none can drift from the
 * service. Types only: nothing here reaches a bundle.
 *
 * Answers always carry every field the schema declares (the server serializes defaults), so
 * `Sent<>` reads fields with a default as present.
 */
import type { components, operations } from "./api-schema";

type Schemas = components["schemas"];
// A mapped type keeps arrays and tuples what they are ([start, end] stays a pair).
export type Sent<T> = T extends object ? { [K in keyof T]-?: Sent<T[K]> } : T;
/** The query parameters of an operation (the schema's names and types). */
type Query<Op extends keyof operations> = NonNullable<operations[Op]["parameters"]["query"]>;

// -- the pages -------------------------------------------------------------------------------
export type Material = Sent<Schemas["Material"]>;
export type Module = Sent<Schemas["Module"]>;
export type Course = Sent<Schemas["Course"]>;
export type MaterialStatus = Sent<Schemas["MaterialStatus"]>;
export type StatusRequest = Schemas["StatusRequest"];
export type StatusBatch = Sent<Schemas["StatusBatch"]>;
export type CompletionAccepted = Sent<Schemas["CompletionAccepted"]>;
export type CourseProgress = Sent<Schemas["CourseProgress"]>;
/** A teacher's drill-down: the student's course view, with their id and the roster's `name`. */
export type StudentCourseProgress = Sent<Schemas["StudentCourseProgress"]>;
export type CourseStats = Sent<Schemas["CourseStats"]>;
export type Retention = Sent<Schemas["Retention"]>;
export type ClassRow = Sent<Schemas["ClassRow"]>;
export type ClassPage = Sent<Schemas["ClassPage"]>;
export type ProgressMatrix = Sent<Schemas["ProgressMatrix"]>;
/** GET /api/me/courses: a student's entries, or a teacher's or an admin's. */
export type MyCourses = Sent<Schemas["MyCourses"]>;
export type StudentCourse = Sent<Schemas["StudentCourse"]>;
export type TaughtCourse = Sent<Schemas["TaughtCourse"]>;
export type DemoUser = Sent<Schemas["DemoUser"]>;
/** A launch's renewed session token (`POST /lti/session`). */
export type SessionToken = Sent<Schemas["SessionToken"]>;
export type TokenRequest = Schemas["TokenRequest"];
/** POST /dev/token's answer: the route declares `dict[str, str]` (the `token`), no model. */
export type DevToken = operations["demo_token_dev_token_post"]["responses"][200]["content"]["application/json"];
export type ClassProgressQuery = Query<"class_progress_api_teacher_courses__course_id__progress_get">;
export type MatrixQuery = Query<"progress_matrix_api_teacher_courses__course_id__matrix_get">;
export type MyCoursesQuery = Query<"my_courses_api_me_courses_get">;

// -- the admin page's LTI panel ----------------------------------------------------------------
/** A registered LMS platform with what its launches recorded (GET /api/admin/lti/platforms). */
export type LtiPlatform = Sent<Schemas["RegisteredPlatform"]>;
export type LtiPlatforms = Sent<Schemas["LtiPlatforms"]>;
/** PUT /api/admin/lti/platforms/{platform_id}: a registration (the id goes in the URL). */
export type LtiPlatformBody = Schemas["PlatformBody"];
/** GET /api/admin/lti/platforms/{platform_id}/grades: the platform's grades back (AGS). */
export type LtiGrades = Sent<Schemas["LtiGrades"]>;
/** GET /api/admin/lti/contexts: every LMS context (a class) seen at a launch, with its roster's health. */
export type LtiContext = Sent<Schemas["LtiContext"]>;
export type LtiContexts = Sent<Schemas["LtiContexts"]>;
/** POST /api/admin/lti/registration-invites: a URL to paste into an LMS (LTI Dynamic Registration). */
export type LtiRegistrationInvite = Sent<Schemas["LtiRegistrationInvite"]>;

// -- the tracker -----------------------------------------------------------------------------
export type HeartbeatBody = Schemas["HeartbeatBody"];
/** The player event a heartbeat reports (sent on to the LRS as xAPI statements). */
export type PlayerEvent = NonNullable<HeartbeatBody["event"]>;
/** A played range, [start, end] in seconds. */
export type Range = NonNullable<HeartbeatBody["played"]>[number];
/** The answer to one heartbeat: progress, watched seconds, completion. */
export type HeartbeatAccepted = Sent<Schemas["HeartbeatAccepted"]>;
/**
 * One item of POST /api/progress/heartbeats: a heartbeat and its material (ingest's
 * `HeartbeatItem`). The schema declares the items `unknown`, since the route judges each alone.
 */
export type HeartbeatItem = HeartbeatBody & { material_id: string };
export type BatchResults = Schemas["BatchResults"];
