"""The embedded main job: read traces, sample, evaluate through the in-process broker, store."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dramatiq

from evaluator.core.records import DeadLetter
from evaluator.core.settings import DEFAULTS, Settings
from evaluator.core.work import WorkItem
from evaluator.ingest.files import TraceFormat, WorkCounts, stream_work
from evaluator.judges.budget import RunBudget
from evaluator.judges.config import load_judge_config
from evaluator.queue.broker import build_broker
from evaluator.queue.channel import InMemoryChannel
from evaluator.queue.messages import QUEUE_NAME, ResultBatch, encode_items, work_message
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.config import check_rubric_names, sampling_policy
from evaluator.sampling.policy import SamplingPolicy
from evaluator.sampling.spend import BudgetPacer
from evaluator.store import RubricSummary, Scope, Store
from evaluator.store.ledger_spend import LedgerSpend
from evaluator.worker.actors import WorkerContext, register_evaluate_actor
from evaluator.worker.sink import Sink

MAX_WAITING_MESSAGES = 4
"""Work messages queued per worker thread before the reader waits."""
MAX_WAITING_RESULTS = 16
"""Results-channel entries waiting for the sink before the reader waits."""


@dataclass
class RunReport:
    run_id: str
    db_path: Path
    judge: str
    traces_read: int = 0
    invalid: int = 0
    reused_ids: int = 0
    """Dead letters (counted in `invalid` too) that reused an earlier trace's id."""
    sampled: int = 0
    sample_reasons: Counter = field(default_factory=Counter)
    dead_letter_reasons: Counter = field(default_factory=Counter)
    summaries: list[RubricSummary] = field(default_factory=list)
    elapsed_s: float = 0.0
    budget: RunBudget | None = None
    daily_budget: BudgetPacer | None = None
    """The daily budget's pacing when the sampling config sets one: spend before this run."""

    @property
    def evaluations(self) -> int:
        return sum(s.evaluated for s in self.summaries)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "db": str(self.db_path),
            "judge": self.judge,
            "traces_read": self.traces_read,
            "invalid": self.invalid,
            "reused_ids": self.reused_ids,
            "sampled": self.sampled,
            "sample_reasons": dict(self.sample_reasons),
            "dead_letter_reasons": dict(self.dead_letter_reasons.most_common(10)),
            "evaluations": self.evaluations,
            "elapsed_s": round(self.elapsed_s, 3),
            "rubrics": [s.to_dict() for s in self.summaries],
            **({"budget": {"max_cost_usd": self.budget.max_cost_usd,
                           "spent_usd": round(self.budget.spent_usd, 6),
                           "skipped": self.budget.refused}} if self.budget else {}),
            **({"daily_budget": self.daily_budget.to_dict()} if self.daily_budget else {}),
        }


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def run_embedded(
    traces_path: Path,
    db_path: Path,
    judge_name: str = "offline",
    sample_rate: float = 0.10,
    rubric_refs: Sequence[str] = (),
    settings: Settings | None = None,
    batch_size: int = 20,
    worker_threads: int = 4,
    fmt: TraceFormat = "jsonl",
    max_cost_usd: float | None = None,
) -> RunReport:
    """Evaluate a trace file in this process. With `max_cost_usd`, evaluations past the run's
    judge budget end as `skipped` (see evaluator.judges.budget)."""
    settings = settings or DEFAULTS
    budget = None if max_cost_usd is None else RunBudget(max_cost_usd)
    started = time.perf_counter()
    registry = RubricRegistry.load(settings.rubrics_dir)
    for ref in rubric_refs:  # fail before any work on a typo
        registry.get(ref)
    load_judge_config(judge_name, settings.judges_dir)
    policy = sampling_policy(sample_rate, settings.sampling_config, settings.daily_budget_usd)
    check_rubric_names(policy, registry.criteria())
    report = RunReport(run_id=new_run_id(), db_path=Path(db_path), judge=judge_name, budget=budget)
    params = {"traces": str(traces_path), "judge": judge_name, "sample_rate": sample_rate,
              "rubrics": list(rubric_refs), "max_cost_usd": max_cost_usd}
    with Store(db_path) as store:
        store.start_run(report.run_id, "run", params)
    try:
        counts = _evaluate(traces_path, db_path, judge_name, policy, rubric_refs, registry,
                           settings, budget, batch_size, worker_threads, fmt, report.run_id)
    except BaseException:
        with Store(db_path) as store:  # never leave the run 'running'
            store.finish_run(report.run_id, "failed")
        raise
    report.traces_read, report.invalid, report.reused_ids = (
        counts.traces_read, counts.invalid, counts.reused_ids)
    report.sampled, report.sample_reasons = counts.sampled, counts.sample_reasons
    report.daily_budget = counts.pacer
    report.dead_letter_reasons = counts.dead_letter_reasons
    with Store(db_path) as store:
        report.summaries = store.rubric_summary(Scope.run(report.run_id))
        report.elapsed_s = time.perf_counter() - started
        store.finish_run(report.run_id, "completed", summary=report.to_dict())
    return report


def _evaluate(traces_path: Path, db_path: Path, judge_name: str, policy: SamplingPolicy,
              rubric_refs: Sequence[str], registry: RubricRegistry, settings: Settings,
              budget: RunBudget | None, batch_size: int, worker_threads: int, fmt: TraceFormat,
              run_id: str) -> WorkCounts:
    """Stream the file through an in-process broker, workers and sink that run meanwhile. The
    reader waits while the work queue or the results channel is full: memory follows the batch
    size, not the file."""
    broker = build_broker(None)
    channel = InMemoryChannel()
    actor = register_evaluate_actor(broker, WorkerContext(registry, channel, settings.judges_dir,
                                                          budget, settings=settings))
    sink = Sink(channel, Path(db_path))
    stop = threading.Event()
    sink_thread = threading.Thread(target=sink.run, args=(stop,), name="evaluator-sink")
    sink_thread.start()
    worker = dramatiq.Worker(broker, worker_threads=worker_threads)
    work_queue = broker.queues[QUEUE_NAME]

    def send(items: list[WorkItem]) -> None:
        _wait_below(work_queue.qsize, MAX_WAITING_MESSAGES * worker_threads, sink_thread)
        actor.send(work_message(encode_items(items), judge_name, rubric_refs, run_id))

    def keep(dead: list[DeadLetter]) -> None:
        _wait_below(channel.depth, MAX_WAITING_RESULTS, sink_thread)
        channel.publish(ResultBatch(dead_letters=dead))

    try:
        worker.start()
        counts = stream_work(Path(traces_path), policy, send, keep, fmt,
                             LedgerSpend(Path(db_path)), batch_size, settings)
        broker.join(QUEUE_NAME, fail_fast=True)
    finally:
        worker.stop()
        stop.set()
        sink_thread.join()
        broker.close()
    return counts


def _wait_below(depth: Callable[[], int], limit: int, sink_thread: threading.Thread) -> None:
    """Back-pressure for the reader: wait while `depth()` is at `limit` (the workers and the sink
    drain it), unless the sink has stopped."""
    while depth() >= limit and sink_thread.is_alive():
        time.sleep(0.005)
