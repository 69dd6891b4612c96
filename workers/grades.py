"""AGS scores (docs/lti.md, Grades): queued by the flush, posted by the delivery job, through
the `grade` outbox (shared/integrations/outbox.py: leased, retried with backoff, never lost).

- Queueing (`announce_grades`, after the flush's MongoDB write): each written key of an LTI
  learner with a grade target queues the entry `<target>:<n>`, `n` the target's current score
  interval (LTI_SCORE_INTERVAL_S, offset per target so posts spread), due when that interval
  ends. Ids are deterministic: a flush in the same interval adds nothing. A crash before the
  push leaves the key dirty, so a later flush writes and queues again. An entry the outbox's
  bound drops (or a push that failed) is queued again by the repair pass (`repair_grades`,
  in the maintenance job): a learner's latest credited score reaches the gradebook.
- Posting (`send_due_grades`): the score is read when it is posted, from the stored (credited)
  progress, never from the entry: the post at the interval's end carries everything flushed
  in it. It is the highest of that and the score already sent (a score never goes down);
  nothing is posted when it would repeat the last score sent. One target is posted by one
  worker at a time (a Redis lease), at most once per interval, with a timestamp strictly
  after the last one used (recorded before the post, so a retry takes a new one).
- Answers: 2xx sent; `429` holds the platform until `Retry-After`; `401` drops the token and
  retries; `409` (a timestamp the platform holds a later one than) retries with a new
  timestamp; `5xx`, timeouts and connection errors retry with backoff (OUTBOX_RETRY_BASE_S,
  doubled up to OUTBOX_RETRY_MAX_S, for as long as it takes); any other `4xx` (400, 403, 404,
  422: Moodle and D2L refuse users who cannot be graded) refuses the learner: recorded on the
  target (shown to admins), the entry set aside, and nothing queued for them again until their
  next launch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import redis
from pymongo.errors import PyMongoError

from shared.domain.progress import WatchState
from shared.errors import PlatformCallFailed, Unavailable
from shared.integrations.bounded_http import fetch
from shared.integrations.outbox import GRADE, Limits, Outbox, OutboxEntry, Settled, backoff_s
from shared.lti.grades import (
    LINEITEM_TYPE,
    LINEITEMS_TYPE,
    SCORE_TYPE,
    TAG,
    USED_SCOPES,
    GradeTarget,
    GradeTargets,
    line_item_body,
    next_timestamp,
    score_body,
    scores_url,
)
from shared.lti.registry import Platform, PlatformRegistry, service_url
from shared.lti.services import ANSWER_MAX_BYTES, ServiceTokens
from shared.storage.keys import (
    lti_grade_hold,
    lti_grade_lock,
    lti_grade_repair_cursor,
    lti_line_item_lock,
)
from shared.storage.mongo_store import StateWrite
from shared.storage.set_aside import describe
from workers.context import WorkerContext, get_context

log = logging.getLogger(__name__)

LTI_USER_PREFIX = "lti-"  # shared/lti/identity.py: every LTI user's id
GRADE_BATCH = 50
BUSY_RETRY_S = 1.0  # another worker is posting the same target
MAX_RETRY_AFTER_S = 3600.0  # the longest `Retry-After` a platform is granted
REPAIR_BATCH = 2000  # grade targets the repair pass examines a run
# 4xx that say "not now" (a token, a timeout, a timestamp, a rate); any other 4xx (400, 403,
# 404, 422 above all) says the platform will not take this score.
RETRIED_4XX = frozenset({401, 408, 409, 425, 429})


def refuses(status: int | None) -> bool:
    return status is not None and 400 <= status < 500 and status not in RETRIED_4XX


def window(target_id: str, now: float, interval_s: float) -> tuple[int, float]:
    """(the target's score interval holding `now`, when it ends). Each target's intervals are
    offset by a fraction of the interval taken from its id, so that targets spread out."""
    offset = int(target_id[-8:], 16) % 1000 / 1000 * interval_s
    n = math.floor((now - offset) / interval_s)
    return n, offset + (n + 1) * interval_s


def announce_grades(ctx: WorkerContext, writes: Iterable[StateWrite], now: float) -> int:
    """Queue a grade entry for each written key of an LTI learner with a grade target (see
    the module doc). Raises Unavailable when MongoDB is down (the flush is postponed and
    retried); returns how many entries were offered."""
    written = {(w.student_id, w.material_id): w for w in writes}
    pairs = [p for p in written if p[0].startswith(LTI_USER_PREFIX)]
    if not pairs:
        return 0
    targets = ctx.lti_grades.of_keys(pairs)
    made = [(t, written[(t.user_id, t.material_id)].version) for t in targets]
    _queue(ctx, made, now)
    return len(targets)


def _queue(ctx: WorkerContext, made: list[tuple[GradeTarget, int]], now: float) -> int:
    """Push each (target, the state's version it was made from) as `<target>:<n>`, due at the
    end of the target's current interval; one round trip. Returns how many were dropped (the
    outbox's bound: the repair pass queues them again)."""
    by_due: dict[float, list[OutboxEntry]] = {}
    for t, version in made:
        n, due = window(t.id, now, ctx.settings.lti_score_interval_s)
        payload = {"target": t.id, "window": n}
        basis = ((t.material_id, version),)
        entry = OutboxEntry(f"{t.id}:{n}", t.user_id, payload, now, t.material_id, basis=basis)
        by_due.setdefault(due, []).append(entry)
    if not by_due:
        return 0
    outbox, limits = Outbox(ctx.redis, GRADE), Limits.of(ctx.settings)
    pipe = ctx.redis.pipeline(transaction=False)
    for due, entries in by_due.items():
        outbox.push_in(pipe, entries, limits, due)
    return sum(int(counts[2]) for counts in pipe.execute())


# ---- repair ----------------------------------------------------------------------------------


def repair_grades(ctx: WorkerContext, limit: int = REPAIR_BATCH) -> int:
    """Queue a score for each grade target the platform is behind on, examining at most
    `limit` targets a run (by `_id`, resuming where the last run stopped, from the first again
    after the last): not refused, its platform registered, its stored (credited) progress
    above the score last sent or completed when that was not, or nothing sent yet, and no
    entry of it queued. Returns how many it offered to the outbox.

    Why a repair pass and not grade entries exempt from the outbox's bound: an entry is one per
    target *and score interval*, so while a platform is down they grow with traffic, not with
    the targets; the bound must hold for them too. What the bound drops (and what a flush could
    not queue, `grade_errors`) is found here from MongoDB, the record of what was credited and
    what was sent, so a learner who stopped watching still gets their latest score to the
    gradebook: within a cycle of the pass once the outbox has room. Idempotent: ids are the
    flush's (`<target>:<n>`, so a flush's entry in the same interval is the same one), a target
    with an entry queued is left alone (at most one from here per target), and the post reads
    the score then, never lower than the one sent, nothing when it would repeat it."""
    stored = ctx.redis.get(lti_grade_repair_cursor())
    after = stored.decode() if isinstance(stored, bytes) else (stored or "")
    page = ctx.lti_grades.page_after(after, limit)
    registered = {p.platform_id for p in PlatformRegistry(ctx.mongo.db).all()}
    merged = ctx.lti_grades.merge_duplicates({t.user_id for t in page})  # one per line item
    live = [t for t in page if not t.refused and t.platform_id in registered and t.id not in merged]
    states = ctx.mongo.find_states({(t.user_id, t.material_id) for t in live})
    made = []
    for t in live:
        found = states.get((t.user_id, t.material_id))
        if found is not None and found.state is not None and _behind(t, found.state):
            made.append((t, found.version))
    made = _not_queued(ctx, made)
    _queue(ctx, made, ctx.clock.time())
    ctx.redis.set(lti_grade_repair_cursor(), page[-1].id if len(page) == limit else "")
    return len(made)


def _behind(target: GradeTarget, state: WatchState) -> bool:
    """Whether a post would say something new: nothing sent yet, a higher score (to the
    hundredth a score is sent with), or the completion not sent yet. `_plan` posts only then,
    and the repair pass queues only then."""
    if target.sent_score is None:
        return True
    newer = round(state.progress, 2) > target.sent_score
    return newer or (state.completed and not target.sent_completed)


def _not_queued(
    ctx: WorkerContext, made: list[tuple[GradeTarget, int]]
) -> list[tuple[GradeTarget, int]]:
    """Those of `made` whose target has no entry queued (its post will read the latest)."""
    outbox = Outbox(ctx.redis, GRADE)
    queued: set[str] = set()
    for user_id in {t.user_id for t, _ in made}:
        queued.update(str(d["payload"].get("target")) for d in outbox.entries_of(user_id)[0])
    return [(t, v) for t, v in made if t.id not in queued]


# ---- delivery --------------------------------------------------------------------------------


def deliver_grades() -> dict[str, int]:
    """RQ job: `send_due_grades` with this process's connections, for half a tick (the flush
    jobs of the tick are not kept waiting); when it stopped with scores still due, a follow-up
    job goes on at once (a backlog after an outage drains at a worker's rate, not a tick's)."""
    ctx = get_context()
    totals = send_due_grades(ctx, max(1.0, ctx.settings.outbox_tick_s / 2))
    if totals["more_due"]:
        ctx.queue.enqueue(deliver_grades, job_timeout=300, result_ttl=0)
    return totals


@dataclass
class _Run:
    """One delivery run: its connections and what it learnt about the platforms."""

    ctx: WorkerContext
    loop: asyncio.AbstractEventLoop  # the run's own, for its platform calls (one thread)
    http: httpx.AsyncClient  # its connections kept for the run
    tokens: ServiceTokens
    store: GradeTargets
    platforms: dict[str, Platform] = field(default_factory=dict)
    failing: dict[str, float] = field(default_factory=dict)  # platform -> retry from
    totals: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("posted", "unchanged", "retried", "refused", "more_due"), 0
        )
    )
    tokens_held: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)

    def token(self, platform: Platform, scopes: list[str]) -> str:
        """The service token, asked of the shared cache once per run."""
        key = (platform.platform_id, tuple(scopes))
        if key not in self.tokens_held:
            self.tokens_held[key] = self.tokens.access_token(platform, scopes, self._post_form)
        return self.tokens_held[key]

    def _post_form(self, url: str, form: dict[str, str]) -> httpx.Response:
        """A token request, bounded as every call of the run (`_call`)."""
        timeout_s = self.ctx.settings.delivery_timeout_s
        call = fetch(self.http, "POST", url, timeout_s=timeout_s, max_bytes=ANSWER_MAX_BYTES,
                     data=form)  # fmt: skip
        return self.loop.run_until_complete(call)


def lease_s(timeout_s: float) -> float:
    """How long a batch's entries and targets are leased: longer than a batch whose every
    platform times out on each of its calls (token, line items, score)."""
    return max(60.0, 20 * timeout_s)


def send_due_grades(ctx: WorkerContext, budget_s: float | None = None) -> dict[str, int]:
    """Post due scores until none is due or the time budget is spent. A platform that fails
    or asks to wait is not called again in the same run. Returns the counts, and `more_due`
    1 when the budget ran out with scores still due."""
    outbox = Outbox(ctx.redis, GRADE)
    clock, started = ctx.clock, ctx.clock.monotonic()
    lease = lease_s(ctx.settings.delivery_timeout_s)
    loop = asyncio.new_event_loop()
    http = httpx.AsyncClient(timeout=ctx.settings.delivery_timeout_s)
    run = _Run(ctx, loop, http, ctx.lti_tokens, ctx.lti_grades)
    try:
        while True:
            if budget_s is not None and clock.monotonic() - started >= budget_s:
                due = outbox.redis.zcount(GRADE.due, "-inf", clock.time())
                run.totals["more_due"] = int(due > 0)
                break
            batch = outbox.claim(clock.time(), lease, GRADE_BATCH)
            if not batch:
                break
            settled = Settled([], [], [])
            _attempt_batch(run, batch, settled, lease)
            outbox.settle(settled, clock.time(), 0)
    finally:
        loop.run_until_complete(http.aclose())
        loop.close()
    return run.totals


def _attempt_batch(run: _Run, batch: list[OutboxEntry], out: Settled, lease: float) -> None:
    """Lease the batch's targets (one worker posts a target at a time), then read them under
    the lease, with their stored states, and attempt each."""
    groups: dict[str, list[OutboxEntry]] = {}
    for entry in batch:
        groups.setdefault(str(entry.payload.get("target")), []).append(entry)
    now = run.ctx.clock.time()
    leased = _lease_targets(run, list(groups), lease)
    for target_id in groups.keys() - leased.keys():  # another worker is posting it
        out.retry.extend((e, now + BUSY_RETRY_S) for e in groups[target_id])
    try:
        targets = run.store.get(leased)
        if any(t.platform_id not in run.platforms for t in targets.values()):
            run.platforms = {p.platform_id: p for p in PlatformRegistry(run.ctx.mongo.db).all()}
        pairs = {(t.user_id, t.material_id) for t in targets.values() if not t.refused}
        states = run.ctx.mongo.find_states(pairs)
        _read_holds(run, {t.platform_id for t in targets.values()}, now)
        scores = []
        for target_id in leased:
            target = targets.get(target_id)
            if target is None or target.refused:  # erased, or refused meanwhile: nothing to send
                out.sent.extend(groups[target_id])
                continue
            stored = states.get((target.user_id, target.material_id))
            state = stored.state if stored else None
            if (planned := _plan(run, target, state, groups[target_id], out)) is not None:
                scores.append(planned)
        _post_all(run, scores, out)
    finally:
        _release_targets(run, leased)


def _lease_targets(run: _Run, ids: list[str], lease: float) -> dict[str, str]:
    """The targets this worker leased (target id -> its lease token), in one round trip."""
    tokens = [secrets.token_hex(8) for _ in ids]
    pipe = run.ctx.redis.pipeline(transaction=False)
    for target_id, token in zip(ids, tokens, strict=True):
        pipe.set(lti_grade_lock(target_id), token, nx=True, px=int(lease * 1000))
    got = pipe.execute()
    return {i: t for i, t, ok in zip(ids, tokens, got, strict=True) if ok}


_RELEASE = """if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"""


def _release_targets(run: _Run, leased: dict[str, str]) -> None:
    """Give back the leases still ours (a lease that ran out may be another worker's now)."""
    if not leased:
        return
    release = run.ctx.redis.register_script(_RELEASE)
    pipe = run.ctx.redis.pipeline(transaction=False)
    for target_id, token in leased.items():
        release(keys=[lti_grade_lock(target_id)], args=[token], client=pipe)
    pipe.execute()


def _read_holds(run: _Run, platform_ids: set[str], now: float) -> None:
    """The `Retry-After` holds other workers recorded, into this run's `failing`."""
    ids = sorted(platform_ids - run.failing.keys())
    if not ids:
        return
    held = run.ctx.redis.mget([lti_grade_hold(p) for p in ids])
    for platform_id, until in zip(ids, held, strict=True):
        if until is not None and float(until) > now:
            run.failing[platform_id] = float(until)


@dataclass
class _Score:
    """A score to post: what, where, with which token and timestamp."""

    target: GradeTarget
    platform: Platform
    entries: list[OutboxEntry]
    score: float
    completed: bool
    lineitem: str
    token: str
    ts: float = 0.0


def _plan(
    run: _Run,
    target: GradeTarget,
    state: WatchState | None,
    entries: list[OutboxEntry],
    out: Settled,
) -> _Score | None:
    """The score to post for one leased target; None when it is settled already (nothing
    new to say, the platform held or gone, no token or line item to be had)."""
    now = run.ctx.clock.time()
    platform = run.platforms.get(target.platform_id)
    if platform is None:
        out.dead.extend((e, "the platform is no longer registered") for e in entries)
        return None
    hold = run.failing.get(platform.platform_id, 0.0)
    if target.sent_at is not None:  # at most one post per interval
        hold = max(hold, target.sent_at + run.ctx.settings.lti_score_interval_s)
    if hold > now:
        out.retry.extend((e, hold) for e in entries)
        return None
    # Erased (a tombstone) or never stored, or nothing new to say since the last post.
    if state is None or not _behind(target, state):
        _settle_target(run, platform, target, entries, "unchanged", out)
        return None
    score = round(max(state.progress, target.sent_score or 0.0), 2)
    completed = state.completed or target.sent_completed
    try:
        with _platform_answers("token or line item"):
            token = run.token(platform, _scopes(target))
            lineitem = target.lineitem or _line_item(run, platform, target, token)
    except PlatformCallFailed as exc:
        if refuses(exc.status):  # the token's or the column's trouble, not the learner's
            exc = PlatformCallFailed(str(exc), None, "(the platform's setup: retried)")
        _settle_target(run, platform, target, entries, exc, out)
        return None
    return _Score(target, platform, entries, score, completed, lineitem, token)


def _post_all(run: _Run, scores: list[_Score], out: Settled) -> None:
    """Stamp the scores (strictly after each target's last timestamp, recorded first), post
    them one by one, record those accepted. A platform that fails is not called again."""
    now = run.ctx.clock.time()
    for s in scores:
        s.ts = next_timestamp(now, s.target.last_ts)
    run.store.use_timestamps({s.target.id: s.ts for s in scores})
    accepted = []
    for s in scores:
        if (hold := run.failing.get(s.platform.platform_id)) is not None:
            out.retry.extend((e, hold) for e in s.entries)
            continue
        headers = {"Authorization": f"Bearer {s.token}", "Content-Type": SCORE_TYPE}
        body = score_body(s.target.sub, s.score, s.completed, s.ts)
        try:
            with _platform_answers("score"):
                _call(run, "POST", scores_url(s.lineitem), "score", headers=headers, json=body)
        except PlatformCallFailed as exc:
            _settle_target(run, s.platform, s.target, s.entries, exc, out)
            continue
        accepted.append(s)
    run.store.record_sent((s.target.id, s.score, s.completed, s.ts) for s in accepted)
    for s in accepted:
        _settle_target(run, s.platform, s.target, s.entries, "posted", out)


def _settle_target(
    run: _Run,
    platform: Platform,
    target: GradeTarget,
    entries: list[OutboxEntry],
    outcome: str | PlatformCallFailed,
    out: Settled,
) -> None:
    ctx, now, s = run.ctx, run.ctx.clock.time(), run.ctx.settings
    if isinstance(outcome, str):
        run.totals[outcome] += 1
        out.sent.extend(entries)
        return
    status = outcome.status
    if refuses(status):
        log.warning(
            "platform %s refused the grade of %s: %s", platform.platform_id, target.user_id, outcome
        )
        run.store.record_refused(target.id, status, outcome.detail, now)
        run.totals["refused"] += 1
        out.dead.extend((e, str(outcome)) for e in entries)
        return
    attempts = max(e.attempts for e in entries) + 1
    due = now + backoff_s(attempts, s.outbox_retry_base_s, s.outbox_retry_max_s)
    if status == 429:
        wait = outcome.retry_after_s if outcome.retry_after_s is not None else due - now
        due = now + max(wait, 0.001)
        ctx.redis.set(
            lti_grade_hold(platform.platform_id), repr(due), px=max(1, int((due - now) * 1000))
        )
    if status is None or status >= 500 or status == 429:
        run.failing[platform.platform_id] = due  # not called again in this run
    if status == 401:
        run.tokens.forget(platform, _scopes(target))
        run.tokens_held.pop((platform.platform_id, tuple(_scopes(target))), None)
    run.store.record_error(target.id, str(outcome), now)
    run.totals["retried"] += 1
    out.retry.extend((e, due) for e in entries)


@contextmanager
def _platform_answers(what: str) -> Iterator[None]:
    """What a platform said or named that cannot be used (a line item URL that does not parse,
    an answer that is no JSON, or JSON too deep, a value out of range) is that platform's
    failure: PlatformCallFailed, so that its target is retried and every other platform's
    scores in the batch go on. Our own stores' errors (Redis, MongoDB) are not caught."""
    try:
        yield
    except (PlatformCallFailed, Unavailable, redis.RedisError, PyMongoError):
        raise
    except Exception as exc:
        log.warning("a platform's %s could not be used: %s", what, describe(exc))
        raise PlatformCallFailed(what, None, describe(exc)) from None


def _scopes(target: GradeTarget) -> list[str]:
    """The token's scopes: what the tool uses of what the launch offered."""
    return sorted(set(target.scopes) & USED_SCOPES)


def _call(run: _Run, method: str, url: str, what: str, **kwargs: object) -> httpx.Response:
    """One platform call, DELIVERY_TIMEOUT_S in all and its answer at most ANSWER_MAX_BYTES
    (shared/integrations/bounded_http.py: a platform that trickles its answer is cut off, and
    marked failing for the run); PlatformCallFailed unless it answered 2xx."""
    timeout_s = run.ctx.settings.delivery_timeout_s
    call = fetch(run.http, method, url, timeout_s=timeout_s, max_bytes=ANSWER_MAX_BYTES,
                 **kwargs)  # type: ignore[arg-type]  # fmt: skip
    try:
        reply = run.loop.run_until_complete(call)
    except httpx.HTTPError as exc:
        raise PlatformCallFailed(what, None, describe(exc)) from None
    if 200 <= reply.status_code < 300:
        return reply
    detail = _quoted(reply, kwargs.get("headers"))
    raise PlatformCallFailed(what, reply.status_code, detail, _retry_after(reply))


def _quoted(reply: httpx.Response, headers: object) -> str:
    """The start of a refusal's body, for the admin (a score's `user not in course`), with the
    bearer token the call carried cut out: a platform that echoes the request must not put the
    tool's token into the admin's grade health or the logs."""
    text = reply.text
    auth = headers.get("Authorization") if isinstance(headers, dict) else None
    if isinstance(auth, str) and (token := auth.removeprefix("Bearer ").strip()):
        text = text.replace(token, "[token]")
    return text[:300]


def _retry_after(reply: httpx.Response) -> float | None:
    """`Retry-After` in seconds (RFC 9110 §10.2.3; an HTTP date is read as no value), at most
    MAX_RETRY_AFTER_S (a platform cannot park its own scores for ever, or overflow a timer)."""
    try:
        seconds = float(reply.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def _line_item(run: _Run, platform: Platform, target: GradeTarget, token: str) -> str:
    """The resource link's line item, created once when the launch named none (AGS 2.0
    §3.2): under a Redis lease, the platform's line items of that resource link and our tag
    are read first (a creation whose answer was lost is found, not repeated)."""
    assert target.lineitems is not None  # a target without a line item has the container
    link = "\n".join((target.platform_id, target.lineitems, target.resource_link_id))
    lock = lti_line_item_lock(hashlib.sha256(link.encode()).hexdigest()[:40])
    if not run.ctx.redis.set(lock, "1", nx=True, px=60_000):
        raise PlatformCallFailed("line item being created by another worker", 409, "")
    try:
        fresh = run.store.get([target.id]).get(target.id)
        if fresh is not None and fresh.lineitem:
            return fresh.lineitem
        auth = {"Authorization": f"Bearer {token}"}
        params = {"resource_link_id": target.resource_link_id, "tag": TAG}
        found = _call(
            run,
            "GET",
            target.lineitems,
            "line items",
            headers={**auth, "Accept": LINEITEMS_TYPE},
            params=params,
        )
        items = [
            i
            for i in found.json()
            if i.get("resourceLinkId") == target.resource_link_id and i.get("tag") == TAG
        ]
        if items:
            url = str(items[0]["id"])
        else:
            headers = {**auth, "Content-Type": LINEITEM_TYPE}
            made = _call(
                run,
                "POST",
                target.lineitems,
                "line item",
                headers=headers,
                json=line_item_body(target),
            )
            url = str(made.json()["id"])
        if service_url(url) is None:
            raise PlatformCallFailed("line item", None, "its id is no URL the tool calls")
        run.store.set_line_item(target, url)
        return url
    finally:
        run.ctx.redis.delete(lock)
