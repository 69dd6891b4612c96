"""Benchmark: LTI scores posted per second by one worker (workers/grades.py).

    .venv/bin/python -m tests.benchmarks.bench_grades [--learners 1000] [--rounds 2]

A redis-server and the MongoDB stand-in of its own (nx-27017: its write times are in the
figure, ARCHITECTURE.md), the tests' LMS (tests/lti_platform.py: lti1p3platform's tokens, the
harness's gradebook, checking every bearer token) in this process, and the delivery job in a
separate process, as an RQ worker runs it. Each round: every learner has a grade target and a
stored state with a higher score than the last round's, and one due entry in the grade outbox;
the worker drains the outbox (`send_due_grades`, no time budget) and reports how long it took.
Per post the worker reads nothing alone (targets and states are read per batch of 50) and
writes twice to MongoDB (the timestamp before the post, the score after) beside the HTTP call.
Prints each round's posts and posts/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from shared.domain.progress import WatchState
from shared.integrations.outbox import GRADE, Limits, Outbox, OutboxEntry
from shared.lti.grades import GradeTargets, record_launch
from shared.lti.identity import user_id_of
from shared.lti.launch import CLAIM, ROLES, Launch
from shared.lti.registry import PlatformBody, PlatformRegistry
from shared.storage.mongo_store import StateWrite
from tests.benchmarks.benchstack import bare_stores
from tests.helpers import SECRET, make_settings, present
from tests.lti_platform import CLIENT_ID, DEPLOYMENT, LEARNER, PLATFORM_ID, Gradebook, Lms
from workers.context import WorkerContext, build_context

WORKER = """
import json, time
from workers.context import get_context
from workers.grades import send_due_grades
ctx = get_context()
started = time.perf_counter()
totals = send_due_grades(ctx)
print(json.dumps({"seconds": time.perf_counter() - started, **totals}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    lms = Lms()
    with bare_stores("bench-grades-", "videoprogress") as (redis_url, mongo_url):
        try:
            settings = make_settings(redis_url, mongo_url, lti_score_interval_s=0.001)
            ctx = build_context(settings)
            book = Gradebook(lms, ctx.lti_keys.jwks)
            item = book.add_line_item("Speed")
            registry = PlatformRegistry(ctx.mongo.db)
            body = PlatformBody.model_validate(lms.registration_body([DEPLOYMENT]))
            registry.save(PLATFORM_ID, body, time.time())
            platform = present(registry.find(lms.base, CLIENT_ID))
            targets = GradeTargets(ctx.mongo.db)
            users = []
            for i in range(args.learners):
                sub = f"u-{i}"
                claims = {"sub": sub, ROLES: [LEARNER], CLAIM + "resource_link": {"id": "rl-1"}}
                launch = Launch(platform, {**claims, **book.claim(item)}, DEPLOYMENT, False)
                users.append(user_id_of(PLATFORM_ID, sub))
                record_launch(targets, launch, users[-1], "v-100", "Speed", time.time())
            env = {**os.environ, "REDIS_URL": redis_url, "MONGO_URL": mongo_url}
            env.update(JWT_SECRET=SECRET, LTI_SCORE_INTERVAL_S="0.001", APP_ENV="production")
            print(f"{args.learners} learners, one line item, worker in its own process")
            for round_ in range(1, args.rounds + 1):
                posted_before = book.score_posts
                seed(ctx, targets, users, round_)
                argv = [sys.executable, "-c", WORKER]
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                posts = book.score_posts - posted_before
                print(
                    f"round {round_}: {posts} posts in {result['seconds']:.2f} s = "
                    f"{posts / result['seconds']:.0f} posts/s ({result})"
                )
        finally:
            lms.close()


def seed(ctx: WorkerContext, targets: GradeTargets, users: list[str], round_: int) -> None:
    """Every learner's state at `10 * round_` % and one due grade entry per learner."""
    state = WatchState(progress=10.0 * round_, credited=10.0 * round_)
    ctx.mongo.write_states(
        [StateWrite(u, "v-100", "phys-101", 100.0, state, 1000 * round_) for u in users]
    )
    found = targets.of_keys([(u, "v-100") for u in users])
    now = time.time()
    entries = [
        OutboxEntry(f"{t.id}:{round_}", t.user_id, {"target": t.id, "window": round_}, now)
        for t in found
    ]
    Outbox(ctx.redis, GRADE).push(entries, Limits(10**7), now)


if __name__ == "__main__":
    main()
