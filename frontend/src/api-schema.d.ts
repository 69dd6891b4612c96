/**
 * Generated from the API's OpenAPI schema by `npm run gen:api` (scripts/gen-api-types.mjs).
 * Do not edit: change the API, then regenerate. tests/test_api_types.py checks it is current.
 */

export interface paths {
    "/api/admin/lti/contexts": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * List Contexts
         * @description Every LMS context the tool has seen at a launch, by platform, deployment and context id,
         *     with the course whose teacher routes show its class, and its NRPS roster's last sync and
         *     error.
         */
        get: operations["list_contexts_api_admin_lti_contexts_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/admin/lti/platforms": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * List Platforms
         * @description Every registered platform, by platform id.
         */
        get: operations["list_platforms_api_admin_lti_platforms_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/admin/lti/platforms/{platform_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        /**
         * Put Platform
         * @description Register (201) or replace (200) a platform. 422 `duplicate_platform` when another
         *     platform has the same issuer and client_id (a launch is matched by that pair).
         */
        put: operations["put_platform_api_admin_lti_platforms__platform_id__put"];
        post?: never;
        /**
         * Delete Platform
         * @description Remove a registration (404 when there is none): its launches are refused from then on.
         */
        delete: operations["delete_platform_api_admin_lti_platforms__platform_id__delete"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/admin/lti/platforms/{platform_id}/grades": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Platform Grades
         * @description The platform's grades back (AGS): learners graded, those it refused (recorded, not
         *     retried), the latest error, and the grade outbox's depth and dead letters.
         */
        get: operations["platform_grades_api_admin_lti_platforms__platform_id__grades_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/admin/lti/registration-invites": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Registration Invite
         * @description An invitation to register an LMS by LTI Dynamic Registration: the URL its admin pastes
         *     into the LMS, usable once within LTI_REGISTRATION_INVITE_TTL_S.
         */
        post: operations["registration_invite_api_admin_lti_registration_invites_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/admin/poison": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Set Aside Keys
         * @description Every (student, material) a flush set aside because its document cannot be stored or its
         *     data cannot be read, with the reason and the error, by key. Nothing of theirs is lost: once
         *     the cause is fixed, `videoprogress poison retry` stores them.
         */
        get: operations["set_aside_keys_api_admin_poison_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/admin/progress": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /**
         * Erase
         * @description Erase a student's progress (one material, or all) from MongoDB, Redis hot state and
         *     queued heartbeats, enrollments and the outboxes; nothing in flight (a flush, a completion
         *     job) can bring it back after this answers. Returns counts.
         */
        delete: operations["erase_api_admin_progress_delete"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/admin/students/{student_id}/export": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Export Student
         * @description The same export for any student (admins only; `403` for everyone else), counted against
         *     the admin's read limit.
         */
        get: operations["export_student_api_admin_students__student_id__export_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/courses/{course_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Get Course
         * @description The course, for its enrolled students, its teachers (an LMS class's instructor: the
         *     course of their class) and admins.
         */
        get: operations["get_course_api_courses__course_id__get"];
        /**
         * Put Course
         * @description Create (201) or replace (200) a course. A material id belongs to one course only. A
         *     replaced course's enrollments are recalculated in the background right after (the views
         *     compute what is not yet recalculated when they read it).
         */
        put: operations["put_course_api_courses__course_id__put"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/courses/{course_id}/enrollments/{student_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        /**
         * Enroll
         * @description Enroll a student (201 when new, 200 when already enrolled).
         */
        put: operations["enroll_api_courses__course_id__enrollments__student_id__put"];
        post?: never;
        /**
         * Unenroll
         * @description Unenroll a student (404 when they were not enrolled).
         */
        delete: operations["unenroll_api_courses__course_id__enrollments__student_id__delete"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/me/courses": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * My Courses
         * @description The caller's courses: enrolled (student), taught (teacher), all, paged (admin).
         */
        get: operations["my_courses_api_me_courses_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/progress/course/{course_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Get Course Progress
         * @description Course progress: completed materials / all materials x 100, with per-module detail.
         */
        get: operations["get_course_progress_api_progress_course__course_id__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/progress/export": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Export Own
         * @description Everything the service holds about the calling student, as JSON: enrollments, each
         *     material's state (watched ranges, position, completion, times; MongoDB's copy and the
         *     current one), heartbeats not yet folded, and outbox entries that name them. Counts as
         *     30 reads of the read limit (429 with `Retry-After` past it).
         */
        get: operations["export_own_api_progress_export_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/progress/heartbeats": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Post Heartbeats
         * @description The offline outbox flush: each item is judged alone; one bad item never drops the good.
         */
        post: operations["post_heartbeats_api_progress_heartbeats_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/progress/material/{material_id}/complete": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Post Complete
         * @description Mark a non-video material (pdf, link) complete; sticky and idempotent.
         */
        post: operations["post_complete_api_progress_material__material_id__complete_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/progress/video/{video_id}/status": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Get Status
         * @description Where to resume and how much was watched; reflects every accepted heartbeat.
         */
        get: operations["get_status_api_progress_video__video_id__status_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/progress/video/{video_id}/watch-time": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Post Watch Time
         * @description Record one heartbeat. `202` means it is durably buffered; the reply is the state as of
         *     this heartbeat.
         */
        post: operations["post_watch_time_api_progress_video__video_id__watch_time_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/progress/videos/status": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Post Statuses
         * @description Many statuses in one request (the course page's one request instead of N).
         */
        post: operations["post_statuses_api_progress_videos_status_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teacher/courses/{course_id}/matrix": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Progress Matrix
         * @description Materials in course order and one row per enrolled student with each material's
         *     progress percentage and completion, sorted like the class table; all rows unless
         *     `?limit=`; `?format=csv` streams `student_id,name,<material_id>...` with the percentages. A
         *     teacher launched from an LMS class sees that class's students, with the roster's `name`.
         */
        get: operations["progress_matrix_api_teacher_courses__course_id__matrix_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teacher/courses/{course_id}/progress": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Class Progress
         * @description One row per enrolled student (those without progress at 0), sorted and paginated, or
         *     the whole table as CSV with `?format=csv` or `Accept: text/csv`; `?inactive_days=` and
         *     `?q=` narrow both. A teacher launched from an LMS class sees that class's students, each
         *     with the roster's `name`.
         */
        get: operations["class_progress_api_teacher_courses__course_id__progress_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teacher/courses/{course_id}/stats": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Course Stats
         * @description Enrolled, average progress, completion rate, and per material started/completed.
         */
        get: operations["course_stats_api_teacher_courses__course_id__stats_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teacher/courses/{course_id}/students/{student_id}/progress": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Student Progress
         * @description A student's course view: the same shape and numbers the student sees, with their id and
         *     the roster's `name` (one enrollment read). A teacher launched from an LMS class sees only
         *     that class's active students (404 for others).
         */
        get: operations["student_progress_api_teacher_courses__course_id__students__student_id__progress_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teacher/materials/{material_id}/retention": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Material Retention
         * @description The audience retention curve: per slice, the share of viewers who watched it.
         */
        get: operations["material_retention_api_teacher_materials__material_id__retention_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/dev/token": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Demo Token */
        post: operations["demo_token_dev_token_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/dev/users": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Demo Users */
        get: operations["demo_users_dev_users_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/healthz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Healthz */
        get: operations["healthz_healthz_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/lti/jwks": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Jwks
         * @description The tool's public keys (Security Framework 1.0 §6.3), read at each request: a key
         *     added by `videoprogress lti rotate-key` is here at once, before it signs anything. The
         *     first request makes the tool's first key when none is configured.
         */
        get: operations["jwks_lti_jwks_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/lti/session": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Renew Session
         * @description A launch's session token (bearer), signed again with a new `jti` and lifetime: every
         *     other claim is kept. Only the tool's own session tokens are renewed (`403` for the
         *     identity provider's); an expired one is `401`, as everywhere, and so is one whose launch
         *     is older than LTI_SESSION_MAX_AGE_S (the learner launches again).
         */
        post: operations["renew_session_lti_session_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Metrics
         * @description Prometheus text: this process's counters, then the system's backlog and flush stats.
         */
        get: operations["metrics_metrics_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/readyz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Readyz
         * @description 200 while the buffer's Redis answers (ingest needs nothing else); MongoDB's state, the
         *     outboxes' depths and the buffer's durability (AOF) are reported only. On a Redis Cluster,
         *     200 while any primary answers: a primary that is down refuses only the students whose
         *     slots it holds, so the process still serves the others.
         */
        get: operations["readyz_readyz_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** BatchResults */
        BatchResults: {
            /** Results */
            results: components["schemas"]["ItemResult"][];
        };
        /** BufferDurability */
        BufferDurability: {
            /**
             * Aof
             * @description The buffer's Redis has AOF (appendonly yes); null when unknown (CONFIG refused, as on managed Redis, or Redis unavailable)
             */
            aof: boolean | null;
            /**
             * Appendfsync
             * @description With AOF: always, everysec or no (on a cluster, the weakest primary's)
             */
            appendfsync: string | null;
        };
        /** ClassPage */
        ClassPage: {
            /** Next Cursor */
            next_cursor: string | null;
            /** Rows */
            rows: components["schemas"]["ClassRow"][];
        };
        /** ClassRow */
        ClassRow: {
            /** Completed Materials */
            completed_materials: number;
            /** Last Active */
            last_active: string | null;
            /** Name */
            name?: string | null;
            /** Progress Percentage */
            progress_percentage: number;
            /** Student Id */
            student_id: string;
            /** Unverified Seconds */
            unverified_seconds: number;
            /** Watched Seconds */
            watched_seconds: number;
        };
        /** CompletionAccepted */
        CompletionAccepted: {
            /**
             * Accepted
             * @default true
             */
            accepted: boolean;
            /** Completed */
            completed: boolean;
            /** Material Id */
            material_id: string;
        };
        /** Course */
        Course: {
            /** Course Id */
            course_id: string;
            /** Modules */
            modules?: components["schemas"]["Module"][];
            /** Teacher Ids */
            teacher_ids?: string[];
            /** Title */
            title: string;
        };
        /**
         * CourseBody
         * @description A course as PUT by an admin (the id comes from the URL).
         */
        CourseBody: {
            /** Modules */
            modules?: components["schemas"]["Module"][];
            /** Teacher Ids */
            teacher_ids?: string[];
            /** Title */
            title: string;
        };
        /** CourseProgress */
        CourseProgress: {
            /** Completed Materials */
            completed_materials: string[];
            /** Course Id */
            course_id: string;
            /** Modules */
            modules: components["schemas"]["ModuleProgress"][];
            /** Progress Percentage */
            progress_percentage: number;
            /** Total Materials */
            total_materials: number;
            videos: components["schemas"]["VideoTotals"];
        };
        /** CourseStats */
        CourseStats: {
            /** Average Progress */
            average_progress: number;
            /** Completion Rate */
            completion_rate: number;
            /** Course Id */
            course_id: string;
            /** Enrolled */
            enrolled: number;
            /** Materials */
            materials: components["schemas"]["MaterialStatsRow"][];
        };
        /** DemoUser */
        DemoUser: {
            /** Course Id */
            course_id: string | null;
            /**
             * Role
             * @enum {string}
             */
            role: "student" | "teacher" | "admin";
            /** User Id */
            user_id: string;
        };
        /** Enrollment */
        Enrollment: {
            /** Course Id */
            course_id: string;
            /** Enrolled */
            enrolled: boolean;
            /** Student Id */
            student_id: string;
        };
        /** ErrorBody */
        ErrorBody: {
            /** Code */
            code: string;
            /** Details */
            details?: unknown;
            /** Message */
            message: string;
        };
        /** ErrorResponse */
        ErrorResponse: {
            error: components["schemas"]["ErrorBody"];
        };
        /** HeartbeatAccepted */
        HeartbeatAccepted: {
            /**
             * Accepted
             * @default true
             */
            accepted: boolean;
            /** Completed */
            completed: boolean;
            /** Progress Percentage */
            progress_percentage: number;
            /** Watch Time */
            watch_time: number;
            /** Watched Seconds */
            watched_seconds: number;
        };
        /** HeartbeatBatch */
        HeartbeatBatch: {
            /** Heartbeats */
            heartbeats: unknown[];
        };
        /** HeartbeatBody */
        HeartbeatBody: {
            /**
             * Client Ts
             * @description When the player took the reading; at most MAX_CLIENT_AGE_S (30 days) old, clamped to 60 s ahead of the server's clock
             */
            client_ts?: string | null;
            /**
             * Event
             * @description The player event that sent this heartbeat (reported to the LRS as xAPI played, paused, seeked; exit ends the session); absent for the periodic heartbeat
             */
            event?: ("play" | "pause" | "seek" | "ended" | "exit") | null;
            /** Playback Rate */
            playback_rate?: number | null;
            /**
             * Played
             * @description [start, end] ranges played since the last heartbeat
             */
            played?: [
                number,
                number
            ][] | null;
            /** Seq */
            seq?: number | null;
            /**
             * Session Id
             * @description One per page load: 1-128 of A-Z a-z 0-9 - _ . :
             */
            session_id?: string | null;
            /**
             * Total Duration
             * @description The video's duration
             */
            total_duration: number;
            /**
             * Watch Time
             * @description The player's current position, in seconds
             */
            watch_time: number;
        };
        /** ItemError */
        ItemError: {
            /** Code */
            code: string;
            /** Details */
            details?: unknown;
            /** Message */
            message: string;
        };
        /** ItemResult */
        ItemResult: {
            /** Accepted */
            accepted: boolean;
            error?: components["schemas"]["ItemError"] | null;
            /** Index */
            index: number;
        };
        /** Jwk */
        Jwk: {
            /**
             * Alg
             * @constant
             */
            alg: "RS256";
            /** E */
            e: string;
            /**
             * Kid
             * @description the RFC 7638 thumbprint of the key
             */
            kid: string;
            /**
             * Kty
             * @constant
             */
            kty: "RSA";
            /** N */
            n: string;
            /**
             * Use
             * @constant
             */
            use: "sig";
        };
        /** Jwks */
        Jwks: {
            /**
             * Keys
             * @description the signing key, and during a rotation the other one
             */
            keys: components["schemas"]["Jwk"][];
        };
        /** LtiContext */
        LtiContext: {
            /**
             * Context Id
             * @description as the LMS sent it
             */
            context_id: string;
            /**
             * Course Id
             * @description the course whose teacher routes show the context's class (None until a launch links a material)
             */
            course_id: string | null;
            /**
             * Deployment Id
             * @description the launch's deployment (a context id is unique within it); None: a context kept before class ids named the deployment, which is no class any more
             */
            deployment_id: string | null;
            /** Platform Id */
            platform_id: string;
            /**
             * Roster Error
             * @description why the last roster sync failed, if it did
             */
            roster_error?: string | null;
            /**
             * Roster Synced At
             * @description epoch seconds of the last complete NRPS roster sync (None: never)
             */
            roster_synced_at?: number | null;
            /** Title */
            title: string | null;
        };
        /** LtiContexts */
        LtiContexts: {
            /** Rows */
            rows: components["schemas"]["LtiContext"][];
        };
        /** LtiGradeError */
        LtiGradeError: {
            /** At */
            at: number;
            /** Error */
            error: string;
        };
        /** LtiGradeRefusal */
        LtiGradeRefusal: {
            /** At */
            at: number;
            /** Detail */
            detail: string;
            /** Material Id */
            material_id: string;
            /**
             * Status
             * @description the platform's HTTP answer to the score
             */
            status: number | null;
            /** User Id */
            user_id: string;
        };
        /** LtiGrades */
        LtiGrades: {
            /**
             * Dead
             * @description scores set aside (every platform)
             */
            dead: number;
            /** @description the latest failed call, retried */
            last_error: components["schemas"]["LtiGradeError"] | null;
            /** Platform Id */
            platform_id: string;
            /**
             * Queued
             * @description scores waiting in the grade outbox (every platform)
             */
            queued: number;
            /**
             * Refused
             * @description learners whose scores the platform refused: not sent again until they launch again
             */
            refused: components["schemas"]["LtiGradeRefusal"][];
            /**
             * Targets
             * @description learners on line items of this platform (grade targets)
             */
            targets: number;
        };
        /** LtiPlatforms */
        LtiPlatforms: {
            /** Rows */
            rows: components["schemas"]["RegisteredPlatform"][];
        };
        /** LtiRegistrationInvite */
        LtiRegistrationInvite: {
            /**
             * Expires At
             * Format: date-time
             */
            expires_at: string;
            /**
             * Url
             * @description paste into the LMS's dynamic registration (used once)
             */
            url: string;
        };
        /** Material */
        Material: {
            /** Duration */
            duration?: number | null;
            /** Material Id */
            material_id: string;
            /** Title */
            title: string;
            /**
             * Type
             * @enum {string}
             */
            type: "video" | "pdf" | "link";
            /** Url */
            url?: string | null;
        };
        /** MaterialProgress */
        MaterialProgress: {
            /** Completed */
            completed: boolean;
            /** Material Id */
            material_id: string;
            /** Progress Percentage */
            progress_percentage: number;
            /** Title */
            title: string;
            /**
             * Type
             * @enum {string}
             */
            type: "video" | "pdf" | "link";
            /**
             * Unverified Seconds
             * @description claimed minus credited watched seconds
             * @default 0
             */
            unverified_seconds: number;
            /** Watch Time */
            watch_time: number;
            /**
             * Watched Ranges
             * @description [start, end] seconds watched (videos; else empty)
             */
            watched_ranges?: [
                number,
                number
            ][];
        };
        /** MaterialStatsRow */
        MaterialStatsRow: {
            /** Average Watched Percentage */
            average_watched_percentage: number;
            /** Completed */
            completed: number;
            /** Material Id */
            material_id: string;
            /** Started */
            started: number;
        };
        /** MaterialStatus */
        MaterialStatus: {
            /** Completed */
            completed: boolean;
            /** Completed At */
            completed_at: string | null;
            /** Course Id */
            course_id: string;
            /** Last Watched */
            last_watched: string | null;
            /** Material Id */
            material_id: string;
            /**
             * Playback Rate
             * @description the rate the player last reported; shown, never used for the bound
             */
            playback_rate: number | null;
            /** Progress Percentage */
            progress_percentage: number;
            /** Total Duration */
            total_duration: number | null;
            /**
             * Unverified Seconds
             * @description seconds the player claims beyond what it could have played while sending
             */
            unverified_seconds: number;
            /** Watch Time */
            watch_time: number;
            /**
             * Watched Seconds
             * @description seconds credited as watched (verified watching)
             */
            watched_seconds: number;
        };
        /** MatrixMaterial */
        MatrixMaterial: {
            /** Material Id */
            material_id: string;
            /** Title */
            title: string;
            /**
             * Type
             * @enum {string}
             */
            type: "video" | "pdf" | "link";
        };
        /** MatrixRow */
        MatrixRow: {
            /**
             * Completed
             * @description per material, in `materials` order
             */
            completed: boolean[];
            /**
             * Name
             * @description the LMS roster's name, for display
             */
            name?: string | null;
            /**
             * Progress
             * @description per material, in `materials` order
             */
            progress: number[];
            /** Student Id */
            student_id: string;
        };
        /** Module */
        Module: {
            /** Materials */
            materials?: components["schemas"]["Material"][];
            /** Module Id */
            module_id: string;
            /** Title */
            title: string;
        };
        /** ModuleProgress */
        ModuleProgress: {
            /** Materials */
            materials: components["schemas"]["MaterialProgress"][];
            /** Module Id */
            module_id: string;
            /** Progress Percentage */
            progress_percentage: number;
            /** Total Seconds */
            total_seconds: number;
            /** Watched Seconds */
            watched_seconds: number;
        };
        /** MyCourses */
        MyCourses: {
            /** Courses */
            courses: components["schemas"]["StudentCourse"][] | components["schemas"]["TaughtCourse"][];
            /** Next Cursor */
            next_cursor: string | null;
        };
        /** Platform */
        Platform: {
            /**
             * Auth Login Url
             * @description the platform's OIDC authorization URL
             */
            auth_login_url: string;
            /**
             * Auth Token Url
             * @description the platform's OAuth 2 token URL
             */
            auth_token_url: string;
            /**
             * Client Id
             * @description the tool's client id on that platform
             */
            client_id: string;
            /**
             * Deployment Ids
             * @description deployments accepted; empty: any, each recorded on its first launch
             */
            deployment_ids: string[];
            /**
             * Frame Origins
             * @description origins of the LMS pages that frame the tool (added to frame-ancestors)
             */
            frame_origins?: string[];
            /**
             * Issuer
             * @description the platform's `iss` (https URL, no query)
             */
            issuer: string;
            /**
             * Jwks Url
             * @description the platform's public key set
             */
            jwks_url: string;
            /** Name */
            name: string;
            /** Platform Id */
            platform_id: string;
        };
        /**
         * PlatformBody
         * @description A platform as PUT by an admin or added from the CLI (the id comes from the URL).
         */
        PlatformBody: {
            /**
             * Auth Login Url
             * @description the platform's OIDC authorization URL
             */
            auth_login_url: string;
            /**
             * Auth Token Url
             * @description the platform's OAuth 2 token URL
             */
            auth_token_url: string;
            /**
             * Client Id
             * @description the tool's client id on that platform
             */
            client_id: string;
            /**
             * Deployment Ids
             * @description deployments accepted; empty: any, each recorded on its first launch
             */
            deployment_ids: string[];
            /**
             * Frame Origins
             * @description origins of the LMS pages that frame the tool (added to frame-ancestors)
             */
            frame_origins?: string[];
            /**
             * Issuer
             * @description the platform's `iss` (https URL, no query)
             */
            issuer: string;
            /**
             * Jwks Url
             * @description the platform's public key set
             */
            jwks_url: string;
            /** Name */
            name: string;
        };
        /** ProgressMatrix */
        ProgressMatrix: {
            /** Course Id */
            course_id: string;
            /** Materials */
            materials: components["schemas"]["MatrixMaterial"][];
            /** Next Cursor */
            next_cursor: string | null;
            /** Rows */
            rows: components["schemas"]["MatrixRow"][];
        };
        /** Readiness */
        Readiness: {
            buffer_durability: components["schemas"]["BufferDurability"];
            /** Mongodb */
            mongodb: string;
            /**
             * Outbox
             * @description Entries waiting in each outbox (xapi, webhook); null without Redis
             */
            outbox?: {
                [key: string]: number;
            } | null;
            /** Redis */
            redis: string;
        };
        /**
         * RegisteredPlatform
         * @description A registration as the admin's list shows it: with what its launches recorded.
         */
        RegisteredPlatform: {
            /**
             * Auth Login Url
             * @description the platform's OIDC authorization URL
             */
            auth_login_url: string;
            /**
             * Auth Token Url
             * @description the platform's OAuth 2 token URL
             */
            auth_token_url: string;
            /**
             * Client Id
             * @description the tool's client id on that platform
             */
            client_id: string;
            /**
             * Deployment Ids
             * @description deployments accepted; empty: any, each recorded on its first launch
             */
            deployment_ids: string[];
            /**
             * Frame Origins
             * @description origins of the LMS pages that frame the tool (added to frame-ancestors)
             */
            frame_origins?: string[];
            /**
             * Issuer
             * @description the platform's `iss` (https URL, no query)
             */
            issuer: string;
            /**
             * Jwks Url
             * @description the platform's public key set
             */
            jwks_url: string;
            /**
             * Last Launch At
             * @description the last launch that passed every check (none yet: null)
             */
            last_launch_at?: string | null;
            /** Name */
            name: string;
            /** Platform Id */
            platform_id: string;
            /**
             * Seen Deployment Ids
             * @description deployments recorded at launch (deployment_ids [])
             */
            seen_deployment_ids?: string[];
        };
        /** Retention */
        Retention: {
            /** Buckets */
            buckets: components["schemas"]["RetentionBucket"][];
            /** Duration */
            duration: number;
            /** Material Id */
            material_id: string;
            /** Viewers */
            viewers: number;
        };
        /** RetentionBucket */
        RetentionBucket: {
            /** End */
            end: number;
            /** Share */
            share: number;
            /** Start */
            start: number;
        };
        /** SessionToken */
        SessionToken: {
            /**
             * Expires At
             * @description when it expires (epoch seconds): renew before
             */
            expires_at: number;
            /**
             * Token
             * @description the renewed session token (bearer), signed by the tool
             */
            token: string;
        };
        /** SetAsidePage */
        SetAsidePage: {
            /** Next Cursor */
            next_cursor: string | null;
            /** Rows */
            rows: components["schemas"]["SetAsideRow"][];
        };
        /** SetAsideRow */
        SetAsideRow: {
            /**
             * Error
             * @description the error as it was raised
             */
            error: string;
            /**
             * Key
             * @description `<material_id>|<student_id>`, as `poison retry --key` takes it
             */
            key: string;
            /** Material Id */
            material_id: string;
            /**
             * Reason
             * @enum {string}
             */
            reason: "unreadable" | "invalid_document" | "write_error";
            /**
             * Set Aside At
             * Format: date-time
             * @description when a flush last set it aside
             */
            set_aside_at: string;
            /** Student Id */
            student_id: string;
        };
        /** StatusBatch */
        StatusBatch: {
            /** Statuses */
            statuses: {
                [key: string]: components["schemas"]["MaterialStatus"];
            };
            /** Unknown */
            unknown: string[];
        };
        /** StatusRequest */
        StatusRequest: {
            /** Material Ids */
            material_ids: string[];
        };
        /** StudentCourse */
        StudentCourse: {
            /** Completed Materials */
            completed_materials: number;
            /** Course Id */
            course_id: string;
            /** Last Active */
            last_active: string | null;
            /** Progress Percentage */
            progress_percentage: number;
            /** Title */
            title: string;
            /** Total Materials */
            total_materials: number;
        };
        /** StudentCourseProgress */
        StudentCourseProgress: {
            /** Completed Materials */
            completed_materials: string[];
            /** Course Id */
            course_id: string;
            /** Modules */
            modules: components["schemas"]["ModuleProgress"][];
            /**
             * Name
             * @description the LMS roster's name, for display
             */
            name?: string | null;
            /** Progress Percentage */
            progress_percentage: number;
            /** Student Id */
            student_id: string;
            /** Total Materials */
            total_materials: number;
            videos: components["schemas"]["VideoTotals"];
        };
        /** TaughtCourse */
        TaughtCourse: {
            /** Average Progress */
            average_progress: number;
            /** Completion Rate */
            completion_rate: number;
            /** Course Id */
            course_id: string;
            /** Enrolled */
            enrolled: number;
            /** Title */
            title: string;
        };
        /** TokenRequest */
        TokenRequest: {
            /**
             * Role
             * @enum {string}
             */
            role: "student" | "teacher" | "admin";
            /** User Id */
            user_id: string;
        };
        /** VideoTotals */
        VideoTotals: {
            /** Completed */
            completed: number;
            /** Started */
            started: number;
            /** Total */
            total: number;
            /** Total Seconds */
            total_seconds: number;
            /** Watched Seconds */
            watched_seconds: number;
        };
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    list_contexts_api_admin_lti_contexts_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LtiContexts"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    list_platforms_api_admin_lti_platforms_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LtiPlatforms"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    put_platform_api_admin_lti_platforms__platform_id__put: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the platform id (letters, digits, _ . : -) */
                platform_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PlatformBody"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Platform"];
                };
            };
            /** @description Created */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Platform"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    delete_platform_api_admin_lti_platforms__platform_id__delete: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the platform id (letters, digits, _ . : -) */
                platform_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    platform_grades_api_admin_lti_platforms__platform_id__grades_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the platform id (letters, digits, _ . : -) */
                platform_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LtiGrades"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    registration_invite_api_admin_lti_registration_invites_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LtiRegistrationInvite"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    set_aside_keys_api_admin_poison_get: {
        parameters: {
            query?: {
                cursor?: string | null;
                limit?: number;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SetAsidePage"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    erase_api_admin_progress_delete: {
        parameters: {
            query: {
                material_id?: string | null;
                /** @description the student */
                student_id: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: unknown;
                    };
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    export_student_api_admin_students__student_id__export_get: {
        parameters: {
            query?: {
                /** @description `xapi`: the student's data as xAPI statements (completed + queued) */
                format?: "json" | "xapi";
            };
            header?: never;
            path: {
                /** @description the student id (1-128 printable characters) */
                student_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: unknown;
                    };
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    get_course_api_courses__course_id__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Course"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    put_course_api_courses__course_id__put: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description letters, digits, _ . : - */
                course_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CourseBody"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Course"];
                };
            };
            /** @description Created */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Course"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    enroll_api_courses__course_id__enrollments__student_id__put: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
                /** @description the student id (1-128 printable characters) */
                student_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Already enrolled */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Enrollment"];
                };
            };
            /** @description Successful Response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Enrollment"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    unenroll_api_courses__course_id__enrollments__student_id__delete: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
                /** @description the student id (1-128 printable characters) */
                student_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    my_courses_api_me_courses_get: {
        parameters: {
            query?: {
                /** @description admins */
                cursor?: string | null;
                /** @description admins: courses per page */
                limit?: number;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MyCourses"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    get_course_progress_api_progress_course__course_id__get: {
        parameters: {
            query?: {
                /** @description admins: the student (1-128 printable characters) */
                student_id?: string | null;
            };
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CourseProgress"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    export_own_api_progress_export_get: {
        parameters: {
            query?: {
                /** @description `xapi`: the student's data as xAPI statements (completed + queued) */
                format?: "json" | "xapi";
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: unknown;
                    };
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    post_heartbeats_api_progress_heartbeats_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["HeartbeatBatch"];
            };
        };
        responses: {
            /** @description Successful Response */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BatchResults"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    post_complete_api_progress_material__material_id__complete_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the material id (1-128 printable characters) */
                material_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CompletionAccepted"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    get_status_api_progress_video__video_id__status_get: {
        parameters: {
            query?: {
                /** @description admins: the student (1-128 printable characters) */
                student_id?: string | null;
            };
            header?: never;
            path: {
                /** @description the material id (1-128 printable characters) */
                video_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MaterialStatus"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    post_watch_time_api_progress_video__video_id__watch_time_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the material id (1-128 printable characters) */
                video_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["HeartbeatBody"];
            };
        };
        responses: {
            /** @description Successful Response */
            202: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HeartbeatAccepted"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    post_statuses_api_progress_videos_status_post: {
        parameters: {
            query?: {
                /** @description admins: the student (1-128 printable characters) */
                student_id?: string | null;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["StatusRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["StatusBatch"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    progress_matrix_api_teacher_courses__course_id__matrix_get: {
        parameters: {
            query?: {
                cursor?: string | null;
                format?: ("json" | "csv") | null;
                limit?: number | null;
                /** @description student_id, progress, last_active, watched_seconds or unverified_seconds; prefix - to reverse */
                sort?: string;
            };
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ProgressMatrix"];
                    "text/csv": unknown;
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    class_progress_api_teacher_courses__course_id__progress_get: {
        parameters: {
            query?: {
                cursor?: string | null;
                format?: ("json" | "csv") | null;
                /** @description only students inactive for more than N days or never */
                inactive_days?: number | null;
                limit?: number;
                /** @description student id or name contains (any case) */
                q?: string | null;
                /** @description student_id, progress, last_active, watched_seconds or unverified_seconds; prefix - to reverse */
                sort?: string;
            };
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ClassPage"];
                    "text/csv": unknown;
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    course_stats_api_teacher_courses__course_id__stats_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CourseStats"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    student_progress_api_teacher_courses__course_id__students__student_id__progress_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the course id (1-128 printable characters) */
                course_id: string;
                /** @description the student id (1-128 printable characters) */
                student_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["StudentCourseProgress"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    material_retention_api_teacher_materials__material_id__retention_get: {
        parameters: {
            query?: {
                buckets?: number;
            };
            header?: never;
            path: {
                /** @description the material id (1-128 printable characters) */
                material_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Retention"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    demo_token_dev_token_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TokenRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: string;
                    };
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    demo_users_dev_users_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DemoUser"][];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    healthz_healthz_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: string;
                    };
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    jwks_lti_jwks_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Jwks"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    renew_session_lti_session_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionToken"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    metrics_metrics_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Prometheus text format */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": string;
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Service Unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    readyz_readyz_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Readiness"];
                };
            };
            /** @description Unauthorized */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Forbidden */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Not Found */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Request Entity Too Large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Unprocessable Entity */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Too Many Requests */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description Redis is unavailable */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Readiness"];
                };
            };
        };
    };
}
