"""Benchmark: the teacher routes over 2,000 students x 50 videos on the MongoDB stand-in.

    .venv/bin/python -m tests.benchmarks.bench_teacher [--students 2000] [--videos 50]

Starts its own redis-server, nx-27017 and uvicorn, seeds the data directly into MongoDB
(documents shaped exactly as the flush writes them), then times each route over HTTP and
prints the median and max of several runs. Numbers are for this machine and the stand-in;
a real MongoDB is much faster on aggregations.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import redis

from shared.devtools.services import (
    free_port,
    mongo_standin_service,
    procfile_commands,
    redis_service,
    start_procfile_process,
    wait_for_port,
)
from shared.domain.catalog import Course
from shared.domain.progress import WatchState
from shared.ops import admin_ops
from shared.settings import Settings
from shared.storage.mongo_store import (
    MongoStore,
    StateWrite,
    enrollment_id,
    progress_document,
    progress_id,
)
from shared.tokens import mint_token

SECRET = "bench-" + "0123456789abcdef" * 3


def seed(mongo: MongoStore, r: redis.Redis, students: int, videos: int) -> None:
    course = Course(
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
    admin_ops.save_course(mongo, r, course)
    rng = random.Random(7)
    mongo.enrollments.insert_many(
        [
            {
                "_id": enrollment_id(f"s{i:05d}", "bench"),
                "student_id": f"s{i:05d}",
                "course_id": "bench",
                "completed_materials": [],
                "progress_percentage": 0.0,
            }
            for i in range(students)
        ]
    )
    now = time.time()
    for i in range(students):
        docs = []
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
            docs.append(
                {
                    "_id": progress_id(write.student_id, write.material_id),
                    **progress_document(write),
                    "flushes": 1,
                }
            )
        mongo.progress.insert_many(docs, ordered=False)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-teacher-"))
    rsvc = redis_service(root / "redis").start()
    msvc = mongo_standin_service(root / "mongo").start()
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
    seed(mongo, redis.Redis.from_url(settings.redis_url), args.students, args.videos)
    documents = args.students * args.videos
    elapsed = time.perf_counter() - t
    print(
        f"seeded {args.students} students x {args.videos} videos ({documents} docs)"
        f" in {elapsed:.1f}s"
    )
    web = start_procfile_process(procfile_commands()["web"], env, root / "web.log")
    try:
        wait_for_port(port, 30, web)
        token = mint_token(settings, "t-bench", "teacher")
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            routes = [
                ("class table, first page of 100", "/api/teacher/courses/bench/progress", {}),
                (
                    "class table, by -progress",
                    "/api/teacher/courses/bench/progress",
                    {"sort": "-progress"},
                ),
                (
                    "class table as CSV (all rows)",
                    "/api/teacher/courses/bench/progress",
                    {"format": "csv"},
                ),
                ("course stats", "/api/teacher/courses/bench/stats", {}),
                ("retention, 100 buckets", "/api/teacher/materials/v000/retention", {}),
                (
                    "one student's course view",
                    "/api/teacher/courses/bench/students/s00042/progress",
                    {},
                ),
            ]
            print(f"\n{'route':38} {'median ms':>10} {'max ms':>9} {'bytes':>9}")
            for name, path, params in routes:
                median, worst, size = timed(client, path, args.runs, **params)
                print(f"{name:38} {median:10.1f} {worst:9.1f} {size:9d}")
    finally:
        web.terminate()
        web.wait()
        msvc.stop()
        rsvc.stop()


if __name__ == "__main__":
    main()
