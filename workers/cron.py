"""`rq cron workers.cron`: enqueue a flush every FLUSH_TICK_S, so that keys nobody writes to
any more are flushed too, and a maintenance pass every few minutes."""

from rq import cron

from shared.settings import get_settings
from workers.flush import flush_pending
from workers.maintenance import rebuild_rollups, reconcile_completions

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
cron.register(
    rebuild_rollups,
    queue_name=_settings.queue_name,
    interval=600,
    job_timeout=1800,
    result_ttl=600,
)
