"""Settings module for `rq worker -c workers.rq_settings` (and `rq cron`): the same Redis and
queue as the app, and the same logging (JSON lines in production) for the jobs' own loggers."""

from shared.runtime.logs import configure_logging
from shared.settings import get_settings

_settings = get_settings()
REDIS_URL = _settings.redis_url
QUEUES = [_settings.queue_name]
configure_logging(json_lines=_settings.environment == "production", level=_settings.log_level)
