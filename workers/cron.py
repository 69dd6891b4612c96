"""`rq cron workers.cron`: enqueue a flush every FLUSH_TICK_S, so that keys nobody writes to
any more are flushed too, a maintenance pass every few minutes (the repair of LTI scores the
grade outbox dropped among it), the deliveries of xAPI statements and webhooks every
OUTBOX_TICK_S when they are configured, the LTI scores' delivery every OUTBOX_TICK_S
(platforms are registered at run time: one cheap claim a tick when there is nothing to post),
and the LTI roster syncs that are due (LTI_ROSTER_SYNC_INTERVAL_S)."""

from rq import cron

from shared.settings import get_settings
from workers.deliver import deliver_statements, deliver_webhooks
from workers.flush import flush_pending
from workers.grades import deliver_grades
from workers.maintenance import (
    delete_expired_tombstones,
    migrate_states,
    rebuild_rollups,
    reconcile_completions,
    repair_grades,
)
from workers.roster import sync_rosters

_settings = get_settings()
cron.register(
    flush_pending,
    queue_name=_settings.queue_name,
    interval=_settings.flush_tick_s,
    job_timeout=300,
    result_ttl=0,
)
cron.register(
    reconcile_completions,
    queue_name=_settings.queue_name,
    interval=600,
    job_timeout=1800,
    result_ttl=600,
)
cron.register(  # each pass examines REPAIR_BATCH grade targets, the next pass the next ones
    repair_grades,
    queue_name=_settings.queue_name,
    interval=600,
    job_timeout=1800,
    result_ttl=600,
)
cron.register(
    rebuild_rollups,
    queue_name=_settings.queue_name,
    interval=600,
    job_timeout=1800,
    result_ttl=600,
)
cron.register(
    delete_expired_tombstones,
    queue_name=_settings.queue_name,
    interval=600,
    job_timeout=1800,
    result_ttl=600,
)
cron.register(  # runs when the clock starts (after an upgrade), then daily
    migrate_states,
    queue_name=_settings.queue_name,
    interval=86400,
    job_timeout=3600,
    result_ttl=600,
)
cron.register(  # each pass enqueues the classes whose roster is older than the interval
    sync_rosters,
    queue_name=_settings.queue_name,
    interval=min(600, _settings.lti_roster_sync_interval_s),
    job_timeout=300,
    result_ttl=600,
)
deliveries = [
    job
    for job, on in (
        (deliver_statements, bool(_settings.xapi_lrs_url)),
        (deliver_webhooks, bool(_settings.webhook_receivers)),
        (deliver_grades, True),
    )
    if on
]
for delivery in deliveries:  # only what is configured: no idle jobs in the queue
    cron.register(
        delivery,
        queue_name=_settings.queue_name,
        interval=_settings.outbox_tick_s,
        job_timeout=300,
        result_ttl=0,
    )
