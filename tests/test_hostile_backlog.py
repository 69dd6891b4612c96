"""One student's backlog never holds up another student's requests (API.md: no request of one
user may slow, block or change what another user gets).

The batch route buffers heartbeats without computing a state, so a student can leave up to
MAX_PENDING_PER_KEY heartbeats on one key, each with up to 50 played ranges, for the next reply
to fold. In process, over real Redis and the MongoDB stand-in: that fold leaves the event loop
free again and again, so the process goes on serving others meanwhile; and the state it gives
is the one the played ranges make."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ingest.app import create_app
from ingest.progress_service import ProgressService
from shared.clock import MockedClock
from shared.domain.catalog import Material, MaterialRef
from shared.domain.progress import WatchState
from shared.storage.keys import ProgressKey
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings

NOW = 1_800_000_000.0
# 200 half-second ranges, 3 s apart, in the 600 s video: together 100 s, fewer intervals than
# a state keeps before closing gaps (256), so the union is exactly their sum.
STARTS = [3.0 * k for k in range(200)]
BATCHES, PER_BATCH, RANGES = 30, 80, 50  # 2,400 heartbeats of 50 ranges: 120,000 ranges


def hostile(i: int) -> dict[str, Any]:
    """Heartbeat i plays a quarter of the ranges (one in four, by i), all 200 after four."""
    played = [[a, a + 0.5] for a in STARTS[i % 4 :: 4]]
    assert len(played) == RANGES
    return {"material_id": "v-600", **heartbeat(5, 600, session_id="tab", seq=i, played=played)}


def test_a_students_long_backlog_is_folded_with_the_event_loop_free_between_slices(
    redis_url: str, mongo_url: str
) -> None:
    # The per-minute limit is not what is tested here: out of the way.
    settings = make_settings(redis_url, mongo_url, rate_limit_per_minute=10**6)
    app = create_app(settings, clock=MockedClock(NOW))

    async def scenario() -> tuple[int, dict[str, Any], int, int]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://app") as c,
        ):
            admin = bearer(settings, "root", "admin", now=NOW)
            assert (await c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin)).is_success
            r = await c.put(f"/api/courses/{COURSE_ID}/enrollments/s-flood", headers=admin)
            assert r.is_success
            flood = bearer(settings, "s-flood", now=NOW)
            for b in range(BATCHES):
                items = [hostile(b * PER_BATCH + i) for i in range(PER_BATCH)]
                r = await c.post("/api/progress/heartbeats", json={"heartbeats": items},
                                 headers=flood)  # fmt: skip
                assert r.status_code == 202 and all(x["accepted"] for x in r.json()["results"])
            # The fold a reply makes, on the view Redis gives of the backlog: no I/O in it, so
            # each turn the other task gets is one the fold left it.
            service: ProgressService = app.state.progress
            key = ProgressKey("s-flood", "v-600", service.ctx.key_schema)
            # As a process that knows nothing of the key sees it when no process offered a
            # preview (the batches' replies leave one: this one goes, as if its process died).
            await service.ctx.hot.client.hdel(key.state, "pv", "pn", "pl", "pm")
            _, [view] = await service.ctx.hot.read("s-flood", [key], [None])
            ref = MaterialRef(COURSE_ID, Material(material_id="v-600", title="Forces",
                                                  type="video", duration=600))  # fmt: skip
            turns = 0

            async def other_work() -> None:  # stands for every other request in flight
                nonlocal turns
                while True:
                    turns += 1
                    await asyncio.sleep(0)

            other = asyncio.create_task(other_work())
            await asyncio.sleep(0)
            before = turns
            await service._fold_view(key, ref, view, WatchState(), keep=False)
            during = turns - before
            other.cancel()
            status = await c.get("/api/progress/video/v-600/status", headers=flood)
            return status.status_code, status.json(), len(view.tail), during

    code, state, folded, during = asyncio.run(scenario())
    assert folded == BATCHES * PER_BATCH  # the whole backlog was the reply's to fold
    assert code == 200
    assert state["watched_seconds"] == 100.0  # the 200 ranges' union, each once
    # Other work ran at least once per thousand ranges folded (the fold yields about every
    # 400); a fold in one go gives it no turn at all.
    assert during >= BATCHES * PER_BATCH * RANGES // 1000
