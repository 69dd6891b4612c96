"""Prometheus metrics of the ingest tier (prometheus-client)."""

from prometheus_client import Counter

HEARTBEATS_ACCEPTED = Counter(
    "videoprogress_heartbeats_accepted_total", "Heartbeats durably buffered (answered 202)"
)
HEARTBEATS_REJECTED = Counter(
    "videoprogress_heartbeats_rejected_total", "Heartbeats refused, by reason", ["reason"]
)
