"""Settings module for `rq worker -c workers.rq_settings` (and `rq cron`): the same Redis and
queue as the app, and the same logging (JSON lines in production) for the jobs' own loggers.
Loaded once at the process's start, it also logs the buffer's durability (AOF or not)."""

from shared.runtime.logs import configure_logging
from shared.settings import get_settings
from shared.storage.clients import buffer_client
from shared.storage.durability import log_buffer_durability

_settings = get_settings()
REDIS_URL = _settings.redis_url
QUEUES = [_settings.queue_name]
configure_logging(json_lines=_settings.environment == "production", level=_settings.log_level)

_buffer = buffer_client(_settings, socket_timeout=5, socket_connect_timeout=2)
log_buffer_durability(_buffer)
_buffer.close()
