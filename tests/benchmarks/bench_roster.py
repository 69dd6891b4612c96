"""Benchmark: an NRPS roster sync of 2,000 members on the MongoDB stand-in.

    .venv/bin/python -m tests.benchmarks.bench_roster [--members 2000] [--page-size 100]

Starts its own redis-server and nx-27017, plays the LMS with the suite's platform
(tests/lti_platform.py `Gradebook`: its strict token endpoint and the roster in pages linked
by `Link` headers), and times the sync the worker job runs (shared/lti/roster.py
`sync_class`, in this process): the first sync (every member new: enrolled, mirrored to Redis,
a rollup each), the same roster again (nothing changes), and a roster where a tenth left and as
many joined.
Numbers are for this machine and the stand-in.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx
import redis

from shared.clock import SystemClock
from shared.domain.catalog import Course
from shared.lti.classes import ClassStore, Context
from shared.lti.keys import ToolKeys
from shared.lti.registry import PlatformBody, PlatformRegistry
from shared.lti.roster import SyncOutcome, sync_class
from shared.lti.services import AsyncServiceTokens, ServiceTokens
from shared.ops import admin_ops
from shared.settings import Settings
from shared.storage.keys import KeySchema
from shared.storage.mongo_store import MongoStore
from tests.benchmarks.benchstack import bare_stores
from tests.helpers import COURSE, COURSE_ID
from tests.lti_platform import LEARNER, PLATFORM_ID, Gradebook, Lms

SECRET = "bench-" + "0123456789abcdef" * 3


def member(i: int) -> dict[str, object]:
    return {"user_id": f"m-{i:05d}", "name": f"Learner {i:05d}", "given_name": "Learner",
            "family_name": f"{i:05d}", "roles": [LEARNER]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    with bare_stores("bench-roster-") as (redis_url, mongo_url):
        os.environ.update(
            REDIS_URL=redis_url,
            MONGO_URL=mongo_url,
            APP_ENV="production",
            JWT_SECRET=SECRET,
            MONGO_TIMEOUT_MS="60000",
        )
        settings, clock, lms = Settings(), SystemClock(), Lms()
        mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
        buffer = redis.Redis.from_url(settings.redis_url)
        try:
            mongo.ensure_indexes()
            course = Course.model_validate({"course_id": COURSE_ID, **COURSE})
            admin_ops.save_course(mongo, buffer, course)
            platforms = PlatformRegistry(mongo.db)
            body = PlatformBody.model_validate(lms.registration_body(["dep-1"]))
            platforms.save(PLATFORM_ID, body, clock.time())
            keys = ToolKeys(settings, mongo.db, clock)
            services = Gradebook(lms, keys.jwks)
            roster = [member(i) for i in range(args.members)]
            url = services.serve_roster("/nrps/bench", roster, args.page_size)
            store = ClassStore(mongo, buffer, KeySchema.from_settings(settings))
            store.ensure_indexes()
            context = Context(PLATFORM_ID, "dep-1", "ctx-bench", "Bench", None, url)
            store.record_context(context, COURSE_ID, clock.time())
            pages = -(-args.members // args.page_size)
            print(f"{args.members} members, {pages} pages of {args.page_size}")
            print(f"{'sync':34} {'seconds':>8} {'members/s':>10} {'active':>7} {'left':>5}")
            for name, change in [
                ("first (all new)", None),
                ("again (no change)", None),
                ("a tenth left, as many joined", args.members // 10),
            ]:
                if change:
                    del roster[:change]
                    roster += [member(args.members + i) for i in range(change)]
                t = time.perf_counter()
                outcome = asyncio.run(run(store, platforms, keys, context.class_id, settings))
                elapsed = time.perf_counter() - t
                assert outcome is not None
                rate = args.members / elapsed
                print(f"{name:34} {elapsed:8.2f} {rate:10.0f} {outcome.active:7d} "
                      f"{outcome.deactivated:5d}")  # fmt: skip
            enrolled = mongo.enrollments.count_documents({"course_id": COURSE_ID})
            print(f"enrolled afterwards: {enrolled}")
        finally:
            lms.close()
            mongo.close()


async def run(
    store: ClassStore, platforms: PlatformRegistry, keys: ToolKeys, class_id: str, s: Settings
) -> SyncOutcome | None:
    async with httpx.AsyncClient(timeout=60) as http:
        tokens = AsyncServiceTokens(
            ServiceTokens(redis.Redis.from_url(s.redis_url), keys, SystemClock())
        )
        return await sync_class(
            store, platforms, tokens, http, class_id, time.time(),
            s.lti_roster_max_pages,
        )  # fmt: skip


if __name__ == "__main__":
    main()
