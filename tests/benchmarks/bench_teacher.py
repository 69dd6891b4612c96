"""Benchmark: the teacher routes over 2,000 students x 50 videos on the MongoDB stand-in.

    .venv/bin/python -m tests.benchmarks.bench_teacher [--students 200,2000] [--videos 50]
    .venv/bin/python -m tests.benchmarks.bench_teacher --videos 100 --rollups-only  # the matrix

Starts its own redis-server, nx-27017 and uvicorn, seeds the data directly into MongoDB
(watch_progress documents and enrollment rollups shaped exactly as the flush writes them), then
times each route over HTTP and prints the median and max of several runs beside its target,
and the documents MongoDB returns for one request of the routes that read the rollups (counted
by pymongo's command monitoring around the view the route calls). The stats are also timed in
process beside the whole-class read they replaced (before/after in one run). Each class size in
`--students` gets fresh services. "matrix, all rows" is how a 200-row page was read before
`?limit=` was served by MongoDB.
Numbers are for this machine and the stand-in. `--rollups-only` skips the watch_progress
documents (slow to seed at 100 videos) and the routes that read them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from shared.devtools.services import (
    Service,
    free_port,
    mongo_standin_service,
    procfile_commands,
    redis_service,
    start_procfile_process,
    wait_for_port,
)
from shared.domain import rollup
from shared.domain.analytics import course_stats
from shared.domain.catalog import Course
from shared.domain.progress import WatchState
from shared.domain.rollup import RollupEntry
from shared.ops import admin_ops, teacher_views
from shared.ops.rollups import entry_of
from shared.settings import Settings
from shared.storage import aggregate_store, rollup_store
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import (
    MongoStore,
    StateWrite,
    enrollment_id,
    progress_document,
    progress_id,
)
from shared.tokens import mint_token
from tests.benchmarks.benchstack import scratch_dir
from tests.helpers import DocumentsRead

SECRET = "bench-" + "0123456789abcdef" * 3


def bench_course(videos: int) -> Course:
    return Course(
        course_id="bench",
        title="Benchmark course",
        teacher_ids=["t-bench"],
        modules=[
            {
                "module_id": "m",
                "title": "All",
                "materials": [
                    {
                        "material_id": f"v{i:03d}",
                        "title": f"Video {i}",
                        "type": "video",
                        "duration": 600,
                    }
                    for i in range(videos)
                ],
            }
        ],
    )


def seed(
    mongo: MongoStore, r: redis.Redis, students: int, videos: int, progress_docs: bool = True
) -> None:
    course = bench_course(videos)
    admin_ops.save_course(mongo, r, course)
    rng = random.Random(7)
    now = time.time()
    fingerprint = rollup.course_fingerprint(course)
    for i in range(students):
        docs = []
        entries = {}
        for m in course.materials:
            start = rng.uniform(0, 300)
            end = min(600.0, start + rng.uniform(0, 600))
            state = WatchState(
                position=end,
                covered=[[start, end]],
                progress=round((end - start) / 6, 3),
                completed=(end - start) >= 480,
                last_watched=now - rng.uniform(0, 9e5),
            )
            write = StateWrite(f"s{i:05d}", m.material_id, "bench", 600.0, state, 1)
            docs.append({"_id": progress_id(write.student_id, write.material_id),
                         **progress_document(write), "flushes": 1})  # fmt: skip
            entries[m.material_id] = entry_of(write)
        if progress_docs:
            mongo.progress.insert_many(docs, ordered=False)
        ids, data = rollup.encode(entries, course)
        mongo.enrollments.insert_one(
            {"_id": enrollment_id(f"s{i:05d}", "bench"), "student_id": f"s{i:05d}",
             "course_id": "bench", "completed_materials": [], "progress_percentage": 0.0,
             "rollup": data, "rollup_ids": ids, "rollup_rev": 1, "rollup_course": fingerprint,
             "agg_seq": 0, **rollup.totals(entries, course).as_fields()}
        )  # fmt: skip

    aggregate_store.recount(mongo, "bench")  # the seeded enrollments are folded: count them


# Targets (issue 15), on this machine and the stand-in.
TARGET_MS = {"page": 50.0, "stats": 150.0, "matrix": 500.0}


def timed(
    client: httpx.Client, path: str, runs: int, **params: str | int
) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(runs):
        t = time.perf_counter()
        response = client.get(path, params=params)
        response.raise_for_status()
        times.append((time.perf_counter() - t) * 1000)
        size = len(response.content)
    return statistics.median(times), max(times), size


# The view each counted route calls, as the route calls it.
LIVE: list[LiveRollups] = []  # the run's live rollup records (`--active`), as the routes read


def live() -> LiveRollups | None:
    return LIVE[-1] if LIVE else None


VIEWS: dict[str, Callable[[MongoStore, Course], object]] = {
    "class table, first page of 100": lambda m, c: teacher_views.class_page(
        m, c, "student_id", 100, None, live=live()),
    "class table, page of 50 by -progress": lambda m, c: teacher_views.class_page(
        m, c, "-progress", 50, None, live=live()),
    "course stats": lambda m, c: teacher_views.stats(m, c, live=live()),
    "course stats from the whole class (before)": lambda m, c: whole_class_stats(m, c),
    "matrix, page of 200 by -progress": lambda m, c: teacher_views.matrix_page(
        m, c, "-progress", 200, None, live=live()),
    "matrix, all rows": lambda m, c: teacher_views.matrix(m, c, live=live()),
    "teacher's /api/me/courses": lambda m, c: teacher_views.summary(m, c, live=live()),
}  # fmt: skip


def make_active(mongo: MongoStore, r: redis.Redis, course: Course, share: float) -> int:
    """Give `share` of the students a live rollup record (a flush of one more video each, not
    yet persisted: what the views lay over MongoDB while a class watches). Returns how many."""
    students = sorted(mongo.enrolled_students("bench"))
    chosen = students[: round(len(students) * share)]
    store = LiveRollups(r)
    ids = [m.material_id for m in course.materials]
    for i in range(0, len(chosen), 500):
        incoming = {s: {ids[n % len(ids)]: RollupEntry(2, 600.0, 0.0, 100.0, True, time.time())}
                    for n, s in enumerate(chosen[i : i + 500], i)}  # fmt: skip
        store.merge(mongo, course, incoming, time.time())
    LIVE.append(store)
    return len(chosen)


def whole_class_stats(mongo: MongoStore, course: Course) -> dict[str, Any]:
    """The stats as they were read before the course aggregate: every enrollment's rollup."""
    sums = teacher_views.class_sums(rollup_store.course_rollups(mongo, course), course)
    return course_stats(sums, [m.material_id for m in course.materials])


def in_process(
    store: MongoStore, listener: DocumentsRead, course: Course, runs: int
) -> list[tuple[str, float, int]]:
    """(view, median ms, documents read) of the stats view and its whole-class predecessor,
    called in this process (no HTTP), in one run so that their ratio is meaningful."""
    found = []
    for name in ("course stats from the whole class (before)", "course stats"):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            VIEWS[name](store, course)
            times.append((time.perf_counter() - t) * 1000)
        found.append((name, statistics.median(times), int(documents_read(store, listener, name,
                                                                        course))))  # fmt: skip
    return found


def documents_read(store: MongoStore, listener: DocumentsRead, name: str, course: Course) -> str:
    view = VIEWS.get(name)
    if view is None:
        return ""
    before = listener.count
    view(store, course)
    return str(listener.count - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="2000", help="class sizes, comma-separated")
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--active", type=float, default=0.0,
        help="share of the students with a live rollup record (watching now), 0-1",
    )  # fmt: skip
    parser.add_argument(
        "--rollups-only",
        action="store_true",
        help="seed no watch_progress documents; time only the rollup routes",
    )
    args = parser.parse_args()
    for students in (int(n) for n in args.students.split(",")):
        run_size(students, args.videos, args.runs, args.rollups_only, args.active)


def run_size(students: int, videos: int, runs: int, rollups_only: bool, active: float) -> None:
    """One class size on servers of its own, stopped however the run ends."""
    with scratch_dir("bench-teacher-") as root, contextlib.ExitStack() as running:
        rsvc = redis_service(root / "redis").start()
        running.callback(rsvc.stop)
        msvc = mongo_standin_service(root / "mongo").start()
        running.callback(msvc.stop)
        measure_size(root, rsvc, msvc, students, videos, runs, rollups_only, active)


def measure_size(
    root: Path,
    rsvc: Service,
    msvc: Service,
    students: int,
    videos: int,
    runs: int,
    rollups_only: bool,
    active: float,
) -> None:
    port = free_port()
    env = dict(os.environ)
    env.update(
        REDIS_URL=f"redis://127.0.0.1:{rsvc.port}/0",
        MONGO_URL=f"mongodb://127.0.0.1:{msvc.port}/bench",
        APP_ENV="production",
        JWT_SECRET=SECRET,
        PORT=str(port),
        HOST="127.0.0.1",
        MONGO_TIMEOUT_MS="60000",
    )
    os.environ.update(env)
    settings = Settings()
    mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
    mongo.ensure_indexes()
    t = time.perf_counter()
    seed(mongo, redis.Redis.from_url(settings.redis_url), students, videos,
         progress_docs=not rollups_only)  # fmt: skip
    documents = students * videos
    elapsed = time.perf_counter() - t
    print(f"\nseeded {students} students x {videos} videos ({documents} docs) in {elapsed:.1f}s")
    course = bench_course(videos)
    if active:
        n = make_active(mongo, redis.Redis.from_url(settings.redis_url), course, active)
        print(f"{n} of them with a live rollup record (as if watching now)")
    listener = DocumentsRead()
    counted = MongoStore(settings.mongo_url, settings.mongo_timeout_ms, listeners=[listener])
    web = start_procfile_process(procfile_commands()["web"], env, root / "web.log")
    try:
        wait_for_port(port, 30, web)
        token = mint_token(settings, "t-bench", "teacher")
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            matrix = "/api/teacher/courses/bench/matrix"
            routes: list[tuple[str, str, dict[str, str | int], str | None]] = [
                ("class table, first page of 100", "/api/teacher/courses/bench/progress", {},
                 "page"),
                ("class table, page of 50 by -progress", "/api/teacher/courses/bench/progress",
                 {"sort": "-progress", "limit": 50}, "page"),
                ("class table, inactive 7 days, q=s01", "/api/teacher/courses/bench/progress",
                 {"inactive_days": 7, "q": "s01"}, "page"),
                ("class table as CSV (all rows)", "/api/teacher/courses/bench/progress",
                 {"format": "csv"}, None),
                ("course stats", "/api/teacher/courses/bench/stats", {}, "stats"),
                ("matrix, page of 200 by -progress", matrix, {"sort": "-progress", "limit": 200},
                 "page"),
                ("matrix, all rows", matrix, {}, "matrix"),
                ("matrix as CSV", matrix, {"format": "csv"}, "matrix"),
                ("teacher's /api/me/courses", "/api/me/courses", {}, None),
            ]  # fmt: skip
            if not rollups_only:
                routes += [
                    ("retention, 100 buckets", "/api/teacher/materials/v000/retention", {}, None),
                    ("one student's course view",
                     "/api/teacher/courses/bench/students/s00042/progress", {}, None),
                ]  # fmt: skip
            print(f"{'route':38} {'median ms':>10} {'max ms':>9} {'bytes':>9} {'target':>8}"
                  f" {'docs read':>10}")  # fmt: skip
            for name, path, params, target in routes:
                median, worst, size = timed(client, path, runs, **params)
                goal = f"{TARGET_MS[target]:.0f}" if target else ""
                read = documents_read(counted, listener, name, course)
                print(f"{name:38} {median:10.1f} {worst:9.1f} {size:9d} {goal:>8} {read:>10}")
            (before_name, before_ms, before_n), (_, after_ms, after_n) = in_process(
                counted, listener, course, runs
            )
            print(f"in process: stats {after_ms:.1f} ms / {after_n} docs read, from the whole "
                  f"class (before) {before_ms:.1f} ms / {before_n} docs read: "
                  f"{before_ms / max(after_ms, 1e-6):.0f}x faster")  # fmt: skip
    finally:
        LIVE.clear()
        counted.close()
        mongo.close()
        web.terminate()
        web.wait()


if __name__ == "__main__":
    main()
