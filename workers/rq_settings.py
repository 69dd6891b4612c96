"""Settings module for `rq worker -c workers.rq_settings`: the same Redis and queue as the app."""

from shared.settings import get_settings

_settings = get_settings()
REDIS_URL = _settings.redis_url
QUEUES = [_settings.queue_name]
