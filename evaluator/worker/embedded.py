"""The embedded main job: read traces, sample, evaluate through the in-process broker, store."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
from evaluator.store import RubricSummary, Scope, Store, WriteResult
from evaluator.store.ledger_spend import LedgerSpend
from evaluator.worker.actors import WorkerContext, register_evaluate_actor
from evaluator.worker.evaluation_events import evaluation_events
from evaluator.worker.sink import Sink

MAX_WAITING_MESSAGES = 4
"""Work messages queued per worker thread before the reader waits."""
MAX_WAITING_RESULTS = 16
"""Results-channel entries waiting for the sink before the reader waits."""
PROGRESS_INTERVAL_S = 0.1
"""At most one progress report this often, plus the last one."""


@dataclass(frozen=True)
class RunProgress:
    """How far a run is: traces read and sampled so far, sampled traces evaluated and stored."""

    read: int = 0
    sampled: int = 0
    evaluated: int = 0
    reading_done: bool = False

    @property
    def total(self) -> int | None:
        """The traces to evaluate, known once the whole file is read."""
        return self.sampled if self.reading_done else None


OnProgress = Callable[[RunProgress], None]


class _ProgressReporter:
    """Counts from the reader (main thread) and the sink (its thread), reported at most every
    PROGRESS_INTERVAL_S; `finish` reports the final counts. It also counts the evaluations the
    store already had (same trace, rubric version and judge: not inserted again)."""

    def __init__(self, on_progress: OnProgress | None) -> None:
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._state = RunProgress()
        self._last = 0.0
        self.already_stored = 0

    def read(self, counts: WorkCounts) -> None:
        self._update(read=counts.traces_read, sampled=counts.sampled)

    def written(self, batch: ResultBatch, inserted: WriteResult) -> None:
        with self._lock:
            self.already_stored += len(batch.evaluations) - inserted.evaluations
        self._update(evaluated=self._state.evaluated + len(batch.traces))

    def reading_done(self, counts: WorkCounts) -> None:
        self._update(force=True, read=counts.traces_read, sampled=counts.sampled, reading_done=True)

    def finish(self) -> None:
        self._update(force=True)

    def _update(self, force: bool = False, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)
            now = time.monotonic()
            if self._on_progress is None or not (force or now - self._last >= PROGRESS_INTERVAL_S):
                return
            self._last = now
            self._on_progress(self._state)


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
    already_stored: int = 0
    """Evaluations this run made that the store already had (same trace, rubric version and
    judge), so not stored again: an earlier run evaluated these traces."""
    stored_summaries: list[RubricSummary] = field(default_factory=list)
    """When some were already stored: the stored summary of production traffic for this judge."""
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
            "already_stored": self.already_stored,
            **({"stored_rubrics": [s.to_dict() for s in self.stored_summaries]}
               if self.already_stored else {}),
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
    on_progress: OnProgress | None = None,
) -> RunReport:
    """Evaluate a trace file in this process. With `max_cost_usd`, evaluations past the run's
    judge budget end as `skipped` (see evaluator.judges.budget). `on_progress` hears how far
    the run is (see RunProgress), from the reading thread and the sink's."""
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
    progress = _ProgressReporter(on_progress)
    try:
        counts = _evaluate(traces_path, db_path, judge_name, policy, rubric_refs, registry,
                           settings, budget, batch_size, worker_threads, fmt, report.run_id,
                           progress)
    except BaseException:
        with Store(db_path) as store:  # never leave the run 'running'
            store.finish_run(report.run_id, "failed")
        raise
    report.traces_read, report.invalid, report.reused_ids = (
        counts.traces_read, counts.invalid, counts.reused_ids)
    report.sampled, report.sample_reasons = counts.sampled, counts.sample_reasons
    report.daily_budget = counts.pacer
    report.dead_letter_reasons = counts.dead_letter_reasons
    report.already_stored = progress.already_stored
    with Store(db_path) as store:
        report.summaries = store.rubric_summary(Scope.run(report.run_id))
        if report.already_stored:
            report.stored_summaries = [s for s in store.rubric_summary(Scope.production())
                                       if s.judge == judge_name]
        report.elapsed_s = time.perf_counter() - started
        store.finish_run(report.run_id, "completed", summary=report.to_dict())
    return report


class EmbeddedPipeline:
    """The in-process broker, `worker_threads` workers and a sink thread writing `db_path`, all
    running from construction until `close`. `send` and `keep` wait while the work queue or the
    results channel is full (memory follows the batch size); `full` says whether they would."""

    def __init__(self, db_path: Path, judge_name: str, rubric_refs: Sequence[str],
                 registry: RubricRegistry, settings: Settings, budget: RunBudget | None = None,
                 worker_threads: int = 4, run_id: str | None = None,
                 on_written: Callable[[ResultBatch, WriteResult], None] | None = None) -> None:
        self._judge_name = judge_name
        self._rubric_refs = tuple(rubric_refs)
        self._run_id = run_id
        self._worker_threads = worker_threads
        self.broker = build_broker(None)
        self.channel = InMemoryChannel()
        self._actor = register_evaluate_actor(self.broker, WorkerContext(
            registry, self.channel, settings.judges_dir, budget, settings=settings))
        self._stop = threading.Event()
        self._events = evaluation_events(settings)
        self._sink_thread = threading.Thread(target=Sink(self.channel, Path(db_path),
                                                         on_written=on_written, events=self._events).run,
                                             args=(self._stop,), name="evaluator-sink")
        self._sink_thread.start()
        self._worker = dramatiq.Worker(self.broker, worker_threads=worker_threads)
        self._work_queue = self.broker.queues[QUEUE_NAME]
        self._worker.start()

    def full(self) -> bool:
        return (self._work_queue.qsize() >= MAX_WAITING_MESSAGES * self._worker_threads
                or self.channel.depth() >= MAX_WAITING_RESULTS)

    def send(self, items: list[WorkItem]) -> None:
        _wait_below(self._work_queue.qsize, MAX_WAITING_MESSAGES * self._worker_threads,
                    self._sink_thread)
        self._actor.send(work_message(encode_items(items), self._judge_name, self._rubric_refs,
                                      self._run_id))

    def keep(self, dead: list[DeadLetter]) -> None:
        _wait_below(self.channel.depth, MAX_WAITING_RESULTS, self._sink_thread)
        self.channel.publish(ResultBatch(dead_letters=dead))

    def join(self) -> None:
        """Wait until every message sent so far is judged (raises what a worker raised)."""
        self.broker.join(QUEUE_NAME, fail_fast=True)

    def close(self) -> None:
        """Stop the workers, then let the sink write what is left, and stop it."""
        self._worker.stop()
        self._stop.set()
        self._sink_thread.join()
        self.broker.close()
        if self._events is not None:
            self._events.shutdown()


def _evaluate(traces_path: Path, db_path: Path, judge_name: str, policy: SamplingPolicy,
              rubric_refs: Sequence[str], registry: RubricRegistry, settings: Settings,
              budget: RunBudget | None, batch_size: int, worker_threads: int, fmt: TraceFormat,
              run_id: str, progress: _ProgressReporter) -> WorkCounts:
    """Stream the file through an embedded pipeline that runs meanwhile."""
    pipeline = EmbeddedPipeline(db_path, judge_name, rubric_refs, registry, settings, budget,
                                worker_threads, run_id, on_written=progress.written)
    try:
        counts = stream_work(Path(traces_path), policy, pipeline.send, pipeline.keep, fmt,
                             LedgerSpend(Path(db_path)), batch_size, settings, progress.read)
        progress.reading_done(counts)
        pipeline.join()
    finally:
        pipeline.close()
    progress.finish()
    return counts


def _wait_below(depth: Callable[[], int], limit: int, sink_thread: threading.Thread) -> None:
    """Back-pressure for the reader: wait while `depth()` is at `limit` (the workers and the sink
    drain it), unless the sink has stopped."""
    while depth() >= limit and sink_thread.is_alive():
        time.sleep(0.005)
