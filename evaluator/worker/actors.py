"""The evaluate actor: one message = a batch of sampled traces, judged concurrently."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq

from evaluator.core.errors import EvaluatorError
from evaluator.core.records import DeadLetter, Trace
from evaluator.core.retry import Backoff, RetryPolicy, retry_call_async
from evaluator.core.rows import StoredTrace
from evaluator.core.settings import DEFAULTS, Settings
from evaluator.core.work import WorkItem
from evaluator.judges.base import JudgeClient
from evaluator.judges.budget import RunBudget
from evaluator.judges.factory import load_judge
from evaluator.judges.runtime import JudgeRuntime
from evaluator.pii.masking import storage_masker
from evaluator.queue.channel import ResultChannel
from evaluator.queue.messages import ACTOR_NAME, QUEUE_NAME, ResultBatch, decode_items
from evaluator.rubrics import Rubric, RubricRegistry
from evaluator.sampling.spend import SpendRecorder
from evaluator.worker.early_results import EarlyResults, publish_counted
from evaluator.worker.metrics import metrics
from evaluator.worker.pipeline import evaluate_batch

PUBLISH_PATIENCE_S = 600.0
"""How long a worker waits for Redis to come back before it gives the message up to a retry."""
PUBLISH_BACKOFF = Backoff(base_s=0.1, cap_s=5.0, jitter="none")
"""Between tries to publish: 0.1 s doubling to 5 s."""

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What a worker process needs to evaluate: rubrics, judges (built once) and the channel."""

    registry: RubricRegistry
    channel: ResultChannel
    judges_dir: Path
    budget: RunBudget | None = None
    """A run's judge budget (`evaluator run --max-cost`): every judge asks it before a call."""
    spend: SpendRecorder | None = None
    """Where the cost of judge calls is added up per day (the daily budget, evaluator.sampling.spend)."""
    settings: Settings | None = None
    """The entry point's: the text limit traces are validated to, the PII masking of stored
    traces and the judges' runtime. None (library use, tests): the defaults, and the judges get
    the process's current runtime."""
    runtime: JudgeRuntime = field(default_factory=JudgeRuntime)
    """What the judges share (cache, rate limits, breakers): the entry point's, built from its
    settings (JudgeRuntime.from_settings). The default: one of this context's own, no cache."""
    _judges: dict[str, JudgeClient] = field(default_factory=dict)

    def judge(self, name: str) -> JudgeClient:
        if name not in self._judges:
            judge = load_judge(name, self.judges_dir, self.runtime)
            self._judges[name] = self.budget.wrap(judge) if self.budget else judge
        return self._judges[name]

    def rubrics(self, refs: Sequence[str] | None) -> list[Rubric]:
        if not refs:
            return self.registry.latest()
        return [self.registry.get(ref) for ref in refs]


async def process_message(context: WorkerContext, message: dict[str, Any],
                          early: EarlyResults | None = None) -> ResultBatch:
    """Evaluate one work message into a ResultBatch of all its results. Bad traces and bad
    config become dead letters with the reason; nothing in the message is dropped. Meanwhile
    each judge call is counted as spend and published, and each trace's results too, as soon
    as they complete (`early`, evaluator.worker.early_results): `early.rest(batch)` is what is
    left to publish."""
    settings = context.settings or DEFAULTS
    items, dead = decode_items(message.get("items") or [], _source(message.get("run_id")),
                               settings.max_text_chars)
    return await process_items(context, items, dead, str(message.get("judge") or "offline"),
                               message.get("rubrics"), message.get("run_id"), early)


def _source(run_id: str | None) -> str:
    return f"queue:{run_id or 'service'}"


async def process_items(context: WorkerContext, items: list[WorkItem], dead: list[DeadLetter],
                        judge_name: str, rubric_refs: Sequence[str] | None, run_id: str | None,
                        early: EarlyResults | None = None) -> ResultBatch:
    """process_message for items already decoded (the embedded run hands them over in
    process); `dead` are the message's dead letters so far."""
    settings = context.settings or DEFAULTS
    try:
        judge = context.judge(judge_name)
        rubrics = context.rubrics(rubric_refs)
    except EvaluatorError as exc:
        dead.extend(DeadLetter.from_error(_source(run_id), {"trace": i.trace.model_dump(mode="json")}, exc)
                    for i in items)
        return ResultBatch(dead_letters=dead)
    traces = [stored_trace(item, settings) for item in items]
    early = early or EarlyResults(context.channel, context.spend)
    early.expect(traces, len(rubrics))
    judged = await evaluate_batch(items, rubrics, judge, run_id, early.judged, early.called)
    metrics().record_evaluations(judged.evaluations)
    return ResultBatch(evaluations=judged.evaluations, traces=traces, dead_letters=dead,
                       judge_calls=judged.judge_calls)


def stored_trace(item: WorkItem, settings: Settings) -> StoredTrace:
    """A work item's trace as the store keeps it, with its sampling decision."""
    return StoredTrace(_for_storage(item.trace, settings), item.decision.reason, item.decision.weight)


def _for_storage(trace: Trace, settings: Settings) -> Trace:
    """Traces masked at ingest pass through; raw ones (judge sees raw) are masked here."""
    if trace.pii_masked:
        return trace
    mask = storage_masker(settings)
    return mask(trace) if mask else trace


async def publish_patiently(channel: ResultChannel, batch: ResultBatch,
                            spend: SpendRecorder | None = None,
                            patience_s: float = PUBLISH_PATIENCE_S) -> None:
    """Publish the results, waiting out a Redis outage (a restart, a failover) instead of
    failing the message: dramatiq's retry of a failed message needs Redis too, and when that
    enqueue fails as well the message is acknowledged later and its results are lost."""
    # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
    import redis

    def outage(exc: BaseException) -> bool:
        return isinstance(exc, (redis.ConnectionError, redis.TimeoutError))

    def warn(exc: BaseException, attempts: int, wait_s: float) -> None:
        log.warning("publishing results failed (%r); retrying in %.1fs", exc, wait_s)

    async def publish() -> None:
        publish_counted(channel, spend, batch)

    await retry_call_async(publish, RetryPolicy(PUBLISH_BACKOFF, outage, deadline_s=patience_s),
                           on_retry=warn)


def register_evaluate_actor(broker: dramatiq.Broker, context: WorkerContext) -> dramatiq.Actor:
    """Declare the actor on this broker. Publishing the results waits out a Redis outage; if it
    still fails, the actor raises and dramatiq retries the message: at-least-once, never lost.
    A worker killed meanwhile leaves the message unacknowledged, so another worker runs it."""

    async def evaluate_batch(message: dict[str, Any]) -> None:
        early = EarlyResults(context.channel, context.spend)
        rest = early.rest(await process_message(context, message, early))
        if len(rest):
            await publish_patiently(context.channel, rest, context.spend)

    return dramatiq.Actor(
        evaluate_batch,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={"max_retries": 20, "min_backoff": 500, "max_backoff": 60_000,
                 "time_limit": 15 * 60_000},
    )
