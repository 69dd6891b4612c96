"""Prometheus metrics (prometheus-client): this process's request counters, plus the system's
backlog and the workers' flush statistics, read from Redis at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from rq.registry import FailedJobRegistry

from shared.clock import Clock
from shared.integrations.outbox import DROP_REASONS, OUTBOXES
from shared.storage.clients import Buffer
from shared.storage.keys import KeySchema
from shared.storage.scripts import NODE_DOWN, by_node
from shared.storage.set_aside import REASONS
from shared.storage.stats import BATCH_BUCKETS, read_stats

HEARTBEATS_ACCEPTED = Counter(
    "videoprogress_heartbeats_accepted_total", "Heartbeats durably buffered (answered 202)"
)
HEARTBEATS_REJECTED = Counter(
    "videoprogress_heartbeats_rejected_total", "Heartbeats refused, by reason", ["reason"]
)
READS_RATE_LIMITED = Counter(
    "videoprogress_reads_rate_limited_total",
    "Reads and exports refused by the per-user read limit (429)",
)
INGEST_SECONDS = Histogram(
    "videoprogress_ingest_seconds",
    "Time to answer a single-heartbeat request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)

_COUNTERS = {
    "flushes": "Flush jobs that claimed keys",
    "flushed_keys": "Keys written to MongoDB (one document each)",
    "flushed_heartbeats": "Heartbeats folded into written states",
    "stale_writes": "Writes MongoDB refused as superseded (harmless repeats)",
    "takeovers": "Keys taken over from a worker that did not finish",
    "completions": "Materials that crossed the completion threshold",
    "flush_failures": "Flushes postponed because MongoDB was unavailable",
    "overclaimed_heartbeats": "Heartbeats whose claims went over the verified-watching budget",
    "interop_errors": "Flushes whose xAPI statements could not be queued (the flush went on)",
}

# Per outbox (label `outbox`: xapi, webhook), from `vp:stats` fields `<outbox>_<field>`.
_OUTBOX_COUNTERS = {
    "sent": "Outbox entries delivered (2xx)",
    "retried": "Delivery attempts that failed and were scheduled again (5xx, timeout, ...)",
    "dead": "Entries set aside: refused by the LRS (4xx), or webhooks past WEBHOOK_MAX_AGE_S",
}


class SystemCollector(Collector):
    """Backlog (the buffer's partitions, summed) and worker statistics (RQ's Redis), shared by
    every process through Redis."""

    def __init__(
        self,
        buffer: Buffer,
        schema: KeySchema,
        r: redis.Redis,
        due_delay_s: float,
        queue_name: str,
        clock: Clock,
    ) -> None:
        self.buffer, self.schema, self.clock = buffer, schema, clock
        self.redis = r
        self.due_delay_s = due_delay_s
        self.failed_jobs = FailedJobRegistry(name=queue_name, connection=r)

    def collect(self) -> Iterator[Metric]:
        replies, unreachable = self._partition_figures()
        dirty = sum(replies[0::3])
        pending = sum(int(p or 0) for p in replies[1::3])
        firsts = [o[0] for o in replies[2::3] if o]
        oldest = [min(firsts, key=lambda item: item[1])] if firsts else []
        pipe = self.redis.pipeline(transaction=False)  # the outboxes live on RQ's Redis
        for box in OUTBOXES:
            pipe.hlen(box.entries)
            pipe.hlen(box.dead)
        outbox_sizes = pipe.execute()
        stats = read_stats(self.redis)
        yield GaugeMetricFamily(
            "videoprogress_failed_jobs",
            "RQ jobs that failed for good (RQ's failed registry)",
            value=self.failed_jobs.count,
        )
        yield GaugeMetricFamily(
            "videoprogress_buffer_dirty_keys",
            "(student, material) keys not yet in MongoDB",
            value=dirty,
        )
        yield GaugeMetricFamily(
            "videoprogress_buffer_unreachable_partitions",
            "Buffer partitions whose Redis did not answer (a cluster primary down)",
            value=unreachable,
        )
        yield GaugeMetricFamily(
            "videoprogress_buffer_pending_heartbeats",
            "Accepted heartbeats not yet folded",
            value=pending,
        )
        age = max(0.0, self.clock.time() - (oldest[0][1] - self.due_delay_s)) if oldest else 0.0
        yield GaugeMetricFamily(
            "videoprogress_buffer_oldest_unflushed_seconds",
            "About how long the longest-waiting dirty key has waited for MongoDB",
            value=round(age, 3),
        )
        for name, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"videoprogress_{name}", doc, value=stats.get(name, 0.0))
        set_aside = CounterMetricFamily(
            "videoprogress_quarantined",
            "Keys set aside in the poison sets (a flush could not store them), by reason",
            labels=["reason"],
        )
        for reason in REASONS:
            set_aside.add_metric([reason], stats.get(f"quarantined:{reason}", 0.0))
        yield set_aside
        yield from _outbox_metrics(stats, outbox_sizes)
        buckets, running = [], 0.0
        for bound in (*BATCH_BUCKETS, "inf"):
            running += stats.get(f"batch_le_{bound}", 0.0)
            buckets.append(("+Inf" if bound == "inf" else str(bound), running))
        yield HistogramMetricFamily(
            "videoprogress_flush_batch_documents",
            "Documents per MongoDB bulk write",
            buckets=buckets,
            sum_value=stats.get("flushed_keys", 0.0),
        )
        writes = stats.get("mongo_writes", 0.0)
        seconds = stats.get("mongo_write_seconds", 0.0)
        yield CounterMetricFamily(
            "videoprogress_mongo_bulk_writes", "MongoDB bulk writes by flushes", value=writes
        )
        yield CounterMetricFamily(
            "videoprogress_mongo_write_seconds", "Time spent in MongoDB bulk writes", value=seconds
        )

    def _partition_figures(self) -> tuple[list[Any], int]:
        """Each partition's (dirty keys, pending heartbeats, oldest due entry), flattened, in one
        pipelined read per node; a node that does not answer leaves its partitions out (their
        number is returned too)."""
        parts = self.schema.partitions()
        replies: list[Any] = []
        unreachable = 0
        for _, group in by_node(self.buffer, [part.dirty for part in parts]):
            pipe = self.buffer.pipeline(transaction=False)  # the client's: it follows a MOVED
            for part in (parts[i] for i in group):
                pipe.zcard(part.dirty)
                pipe.get(part.pending)
                pipe.zrange(part.dirty, 0, 0, withscores=True)
            try:
                replies += pipe.execute()
            except NODE_DOWN:
                unreachable += len(group)
        return replies, unreachable


def _outbox_metrics(stats: dict[str, float], sizes: list[int]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "videoprogress_outbox_depth", "Entries waiting in the outbox", labels=["outbox"]
    )
    dead = GaugeMetricFamily(
        "videoprogress_outbox_dead_entries", "Entries set aside for an operator", labels=["outbox"]
    )
    for i, box in enumerate(OUTBOXES):
        depth.add_metric([box.name], sizes[2 * i])
        dead.add_metric([box.name], sizes[2 * i + 1])
    yield depth
    yield dead
    for field, doc in _OUTBOX_COUNTERS.items():
        family = CounterMetricFamily(f"videoprogress_outbox_{field}", doc, labels=["outbox"])
        for box in OUTBOXES:
            family.add_metric([box.name], stats.get(f"{box.name}_{field}", 0.0))
        yield family
    dropped = CounterMetricFamily(
        "videoprogress_outbox_dropped",
        "Entries not queued, by reason: a student quota (quota_student, quota_session), the "
        "outbox full for all but completions (full), or full (reserve_full)",
        labels=["outbox", "reason"],
    )
    for box in OUTBOXES:
        for reason in DROP_REASONS:
            dropped.add_metric([box.name, reason], stats.get(f"{box.name}_dropped_{reason}", 0.0))
    yield dropped


def render(system: CollectorRegistry) -> bytes:
    """This process's metrics followed by the system's (blocking: call from a thread)."""
    return generate_latest(REGISTRY) + generate_latest(system)


def system_registry(
    buffer: Buffer,
    schema: KeySchema,
    r: redis.Redis,
    due_delay_s: float,
    queue_name: str,
    clock: Clock,
) -> CollectorRegistry:
    """The system's figures, read at scrape time; ages are measured on `clock`, the one the
    ingest stamps the buffer with."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SystemCollector(buffer, schema, r, due_delay_s, queue_name, clock))
    return registry
