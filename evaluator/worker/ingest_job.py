"""`evaluator ingest` in service mode: a trace file's sampled traces go to Redis for
`evaluator worker`, its dead letters to the results channel for `evaluator sink`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evaluator.core.settings import Settings
from evaluator.core.work import WorkItem
from evaluator.ingest.files import TraceFormat, WorkCounts, stream_work
from evaluator.queue.backpressure import QueueGauge
from evaluator.queue.broker import build_producer_broker, redis_client
from evaluator.queue.channel import RedisStreamChannel
from evaluator.queue.messages import ResultBatch
from evaluator.queue.persistence import warn_if_not_persistent
from evaluator.queue.producer import enqueue
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.config import check_rubric_names, sampling_policy
from evaluator.sampling.spend import RedisSpend
from evaluator.worker.service import require_redis


def ingest_to_queue(path: Path, settings: Settings, judge: str, sample_rate: float,
                    rubrics: Sequence[str] = (), batch_size: int = 20,
                    fmt: TraceFormat = "jsonl") -> tuple[WorkCounts, int]:
    """Service mode: sampled traces go to Redis for `evaluator worker`; dead letters go to the
    results channel, a bounded chunk per entry, so `evaluator sink` stores them. Returns the
    counts and the messages sent.

    While the work queue is full (settings.max_queue_depth), this waits for the workers, and
    raises QueueFullError after settings.queue_wait_s."""
    url = require_redis(settings)
    policy = sampling_policy(sample_rate, settings.sampling_config, settings.daily_budget_usd)
    if policy.named_rubrics:
        check_rubric_names(policy, RubricRegistry.load(settings.rubrics_dir).criteria())
    broker = build_producer_broker(url)
    warn_if_not_persistent(broker.client, "ingest")
    channel = RedisStreamChannel(redis_client(url))
    gauge = QueueGauge(broker.client, settings.max_queue_depth)
    sent = 0

    def send(items: list[WorkItem]) -> None:
        nonlocal sent
        sent += enqueue(broker, items, judge, rubrics, batch_size=batch_size,
                        before_each=lambda: gauge.reserve(settings.queue_wait_s))

    try:
        counts = stream_work(path, policy, send,
                             lambda dead: channel.publish(ResultBatch(dead_letters=dead)), fmt,
                             RedisSpend.from_url(url), batch_size, settings)
    finally:
        broker.close()
    return counts, sent
