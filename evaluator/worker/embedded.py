"""The embedded main job: read traces, sample, evaluate through the in-process broker, store."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evaluator.core.errors import EvaluatorError, ResultsNotStoredError
from evaluator.core.records import DeadLetter
from evaluator.core.settings import DEFAULTS, Settings
from evaluator.core.work import WorkItem
from evaluator.ingest.files import TraceFormat, WorkCounts, stream_work
from evaluator.ingest.reading_process import (
    ReadingProcess,
    ReadingProcessError,
    big_input,
    reads_in_a_process,
)
from evaluator.judges.budget import RunBudget
from evaluator.judges.config import load_judge_config
from evaluator.judges.runtime import JudgeRuntime
from evaluator.judges.scorers import check_scorers
from evaluator.queue.channel import InMemoryChannel, ResultChannel
from evaluator.queue.messages import ResultBatch
from evaluator.rubrics import Rubric, RubricRegistry, compile_templates
from evaluator.sampling.config import check_rubric_names, sampling_policy
from evaluator.sampling.policy import SamplingPolicy
from evaluator.sampling.spend import BudgetPacer
from evaluator.store import RubricSummary, Scope, Store, WriteResult
from evaluator.store.duckdb_store import RUN_WRITER_MEMORY_MB
from evaluator.store.ledger_spend import LedgerSpend
from evaluator.worker.actors import WorkerContext, process_items
from evaluator.worker.early_results import EarlyResults, publish_counted
from evaluator.worker.evaluation_events import evaluation_events
from evaluator.worker.judging_process import JudgingProcess
from evaluator.worker.prompts_ahead import with_prompts
from evaluator.worker.sink import MAX_ROWS, Sink

MAX_WAITING_CHUNKS = 16
"""Chunks of sampled traces read ahead of the judging loop before the reader waits."""
MAX_JUDGING_IN_FLIGHT = 400
"""Traces handed to a judging process and not judged yet before the reader waits."""
MAX_WAITING_RESULTS = 64
"""Results-channel entries (a chunk's results each) waiting for the sink before the reader waits.
They fill while the sink closes the file (a checkpoint after each SINK_HOLD_S hold: 1-5 s with
the run's other processes on 2 cores, the longest growing over the run), and the main process's
memory peaks with them, not with state kept per trace (rate 0.1, its peak PSS at 300,000 traces
241 MB at 64 and 208 at 16; at 1,000,000, 245 and 217). 16 cost ~0.93x traces/s at rate 1.0,
where the sink is the bottleneck (20,000 traces, medians of 3, load 3-4), none seen at 0.1."""
SINK_HOLD_S = 2.0
"""The sink keeps the store open across flushes while results keep coming, at most this long."""
HELD_SINK_MAX_ROWS = 2_000
"""Rows a sink that holds the store writes at most per batch. The results gathered meanwhile wait
in memory, so the batch bounds the run's memory; a held sink's write of new ids costs the batch,
not the store (evaluator.store.stored_keys), so smaller batches cost little more."""
SINK_POLL_MS = 20
"""How long one sink read waits: it bounds how long the sink takes to stop at the end."""
SINK_PATIENCE_S = 120.0
"""How long the embedded sink keeps trying a batch the store refuses (a lock held by another
process, a full disk) before the run fails: the reader waits for the sink meanwhile."""
WAIT_S = 0.05
"""How often the reader, waiting to hand a chunk over, checks that the judging loop still runs."""
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
    concurrent_chunks: int = 4,
    fmt: TraceFormat = "jsonl",
    max_cost_usd: float | None = None,
    on_progress: OnProgress | None = None,
    read_in_a_process: bool | None = None,
    judge_in_a_process: bool | None = None,
) -> RunReport:
    """Evaluate a trace file in this process. With `max_cost_usd`, evaluations past the run's
    judge budget end as `skipped` (see evaluator.judges.budget). `on_progress` hears how far
    the run is (see RunProgress), from the reading thread and the sink's. `read_in_a_process`:
    whether a process of its own reads, samples and masks the file while this one judges and
    stores (None: for a big file or a named pipe, see evaluator.ingest.reading_process)."""
    settings = settings or DEFAULTS
    budget = None if max_cost_usd is None else RunBudget(max_cost_usd)
    started = time.perf_counter()
    # One open of the file for the whole run (the sink writes with it and hands it back), made
    # while the rubrics compile: DuckDB's connect and commit leave the GIL.
    opening = _OpeningStore(Path(db_path))
    try:
        # every version is parsed and checked; only those the run uses are compiled (below)
        registry = RubricRegistry.load(settings.rubrics_dir, compile_all=False)
        # fail before any work on a typo, a bad code scorer or an unknown judge kind
        used = [registry.get(ref) for ref in rubric_refs] or registry.latest()
        check_scorers(used)
        compile_templates(used)
        load_judge_config(judge_name, settings.judges_dir)
        policy = sampling_policy(sample_rate, settings.sampling_config, settings.daily_budget_usd)
        check_rubric_names(policy, registry.criteria())
    except BaseException:
        opening.discard()
        raise
    report = RunReport(run_id=new_run_id(), db_path=Path(db_path), judge=judge_name, budget=budget)
    params = {"traces": str(traces_path), "judge": judge_name, "sample_rate": sample_rate,
              "rubrics": list(rubric_refs), "max_cost_usd": max_cost_usd}
    store = opening.store()
    try:
        store.start_run(report.run_id, "run", params)
    except BaseException:
        store.close()
        raise
    progress = _ProgressReporter(on_progress)
    try:
        counts, kept = _evaluate(traces_path, store, judge_name, policy, rubric_refs, registry,
                                 settings, budget, batch_size, concurrent_chunks, fmt,
                                 report.run_id, progress, read_in_a_process, judge_in_a_process)
    except BaseException as exc:
        with Store(db_path) as store:  # never leave the run 'running'
            store.finish_run(report.run_id, "failed", summary={"error": f"{type(exc).__name__}: {exc}"})
        raise
    report.traces_read, report.invalid, report.reused_ids = (
        counts.traces_read, counts.invalid, counts.reused_ids)
    report.sampled, report.sample_reasons = counts.sampled, counts.sample_reasons
    report.daily_budget = counts.pacer
    report.dead_letter_reasons = counts.dead_letter_reasons
    report.already_stored = progress.already_stored
    with kept or Store(db_path) as store:
        report.summaries = store.rubric_summary(Scope.run(report.run_id))
        if report.already_stored:
            report.stored_summaries = [s for s in store.rubric_summary(Scope.production())
                                       if s.judge == judge_name]
        report.elapsed_s = time.perf_counter() - started
        store.finish_run(report.run_id, "completed", summary=report.to_dict())
    return report


class _OpeningStore:
    """The run's store, opened (created and migrated when new) in a thread of its own."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._existed = path.exists()
        self._opener = ThreadPoolExecutor(1, thread_name_prefix="evaluator-open")
        self._opened = self._opener.submit(Store, path, memory_limit_mb=RUN_WRITER_MEMORY_MB)
        self._opener.shutdown(wait=False)

    def store(self) -> Store:
        """The open store (raises what opening it raised)."""
        return self._opened.result()

    def discard(self) -> None:
        """The run stops before it starts: close the store, and remove the file if this made it."""
        with suppress(Exception):  # the reason the run stops is the caller's to raise
            self._opened.result().close()
        if not self._existed:
            for made in (self._path, self._path.with_name(self._path.name + ".wal")):
                made.unlink(missing_ok=True)


class EmbeddedPipeline:
    """A judging loop (its own thread, `concurrency` chunks judged at once) and a sink thread
    writing `db_path`, running from construction until `close`. Work items and results are
    handed over as objects, in chunks. `send` and `keep` wait while too many chunks wait to be
    judged or too many results wait for the sink (memory follows the chunk size, not the
    input); `full` says whether they would. With `hold_s`, the sink keeps the store open across
    flushes up to that long (see Sink); given `store` (open on `db_path`), it starts with it, and
    `close` returns the store the sink holds at the end, open."""

    def __init__(self, db_path: Path, judge_name: str, rubric_refs: Sequence[str],
                 registry: RubricRegistry, settings: Settings, budget: RunBudget | None = None,
                 concurrency: int = 4, run_id: str | None = None,
                 on_written: Callable[[ResultBatch, WriteResult], None] | None = None,
                 hold_s: float = 0.0, store: Store | None = None,
                 judging_process: bool = False) -> None:
        self.channel = InMemoryChannel()
        self._stop = threading.Event()
        self._events = evaluation_events(settings)
        self._sink = Sink(self.channel, Path(db_path), max_rows=HELD_SINK_MAX_ROWS if hold_s else MAX_ROWS,
                          on_written=on_written, events=self._events,
                          hold_s=hold_s, poll_ms=SINK_POLL_MS, store=store,
                          keep_store=store is not None, memory_limit_mb=RUN_WRITER_MEMORY_MB)
        self._sink_thread = threading.Thread(target=self._sink.run, args=(self._stop,),
                                             kwargs={"patience_s": SINK_PATIENCE_S},
                                             name="evaluator-sink")
        self._chunks: queue.Queue[list[WorkItem] | None] = queue.Queue(maxsize=MAX_WAITING_CHUNKS)
        self._process: JudgingProcess | None = None
        if judging_process:  # forked before this process starts its threads
            if budget is not None:
                raise ValueError("a run budget is kept in the judging thread: judge in this process")

            def make_context(channel: ResultChannel) -> WorkerContext:
                return WorkerContext(registry, channel, settings.judges_dir, settings=settings,
                                     runtime=JudgeRuntime.from_settings(settings, db_path))

            def run_chunks(context: WorkerContext, chunks: queue.Queue[list[WorkItem] | None],
                           on_judged: Callable[[list[WorkItem]], None]) -> Coroutine[Any, Any, None]:
                return _judge_chunks(context, chunks, judge_name, tuple(rubric_refs), run_id,
                                     concurrency, on_judged)

            lost_context = WorkerContext(registry, self.channel, settings.judges_dir, settings=settings)
            self._process = JudgingProcess(make_context, run_chunks, self.channel.publish,
                                           lost_context, judge_name, rubric_refs, run_id,
                                           MAX_JUDGING_IN_FLIGHT)
            try:  # rendered here, ahead: the judging process bounds the run
                self._render: Sequence[Rubric] = lost_context.rubrics(rubric_refs)
            except EvaluatorError:  # the judging process stores the reason for each trace
                self._render = ()
            self._judging: Future = Future()
            self._judging.set_result(None)
        else:
            context = WorkerContext(registry, self.channel, settings.judges_dir, budget,
                                    settings=settings,
                                    runtime=JudgeRuntime.from_settings(settings, db_path))
            self._judging_thread = ThreadPoolExecutor(1, thread_name_prefix="evaluator-judging")
            self._judging = self._judging_thread.submit(asyncio.run, _judge_chunks(
                context, self._chunks, judge_name, tuple(rubric_refs), run_id, concurrency))
        self._sink_thread.start()

    def full(self) -> bool:
        if self._process is not None:
            return self.channel.depth() >= MAX_WAITING_RESULTS
        return self._chunks.full() or self.channel.depth() >= MAX_WAITING_RESULTS

    def send(self, items: list[WorkItem]) -> None:
        self._wait_for_the_sink()
        self._hand_over(items)

    def keep(self, dead: list[DeadLetter]) -> None:
        self._wait_for_the_sink()
        self.channel.publish(ResultBatch(dead_letters=dead))

    def _wait_for_the_sink(self) -> None:
        """Back-pressure; raises once the sink gave up (`close` then says what was not stored)."""
        _wait_below(self.channel.depth, MAX_WAITING_RESULTS, self._sink_thread)
        if self._sink.unstored is not None:
            raise ResultsNotStoredError(f"the sink stopped writing {self._sink.db_path}: "
                                        f"{self._sink.unstored.reason}")

    def join(self) -> None:
        """Wait until every chunk sent is judged (raises what the judging loop raised); send
        nothing after it."""
        if self._process is not None:
            self._process.join()
            return
        self._hand_over(None)
        self._judging.result()

    def close(self) -> Store | None:
        """End the judging loop (unjudged chunks are dropped: call join first to judge them),
        then let the sink write what is left, and stop it. Raises ResultsNotStoredError, saying
        how many and why, when the sink could not write them all. Returns the store the sink
        still holds when it was given one (the caller closes it), else None."""
        if self._process is not None:
            self._process.close()
        elif not self._judging.done():
            _drain(self._chunks)
            self._chunks.put(None)
        if self._process is None:
            self._judging_thread.shutdown(wait=True)
        self._stop.set()
        self.channel.close()  # everything judged is published: the sink stops waiting for more
        self._sink_thread.join()
        if self._events is not None:
            self._events.shutdown()
        unstored = self._sink.unstored
        if unstored is not None:
            for _, left in self.channel.read(max_entries=self.channel.depth(), block_ms=0):
                unstored.batch.extend(left)  # type: ignore[arg-type]  # in process: batches
            raise ResultsNotStoredError(
                f"{unstored.describe()} could not be stored in {self._sink.db_path}: "
                f"{unstored.reason}. Make the store writable and evaluate these traces again "
                "(what was stored is not stored twice)")
        return self._sink.take_store()

    def _hand_over(self, chunk: list[WorkItem] | None) -> None:
        if self._process is not None and chunk is not None:
            self._process.send([with_prompts(item, self._render) for item in chunk])
            return
        while True:
            if self._judging.done():  # it stopped early: raise what stopped it
                self._judging.result()
                raise RuntimeError("the judging loop stopped before every chunk was handed over")
            try:
                self._chunks.put(chunk, timeout=WAIT_S)
                return
            except queue.Full:
                continue


def _evaluate(traces_path: Path, store: Store, judge_name: str, policy: SamplingPolicy,
              rubric_refs: Sequence[str], registry: RubricRegistry, settings: Settings,
              budget: RunBudget | None, batch_size: int, concurrency: int, fmt: TraceFormat,
              run_id: str, progress: _ProgressReporter,
              read_in_a_process: bool | None,
              judge_in_a_process: bool | None) -> tuple[WorkCounts, Store | None]:
    """Stream the file through an embedded pipeline that runs meanwhile; its sink holds the
    store across flushes (this process is the only writer while the run lasts), starting with
    `store` (now the pipeline's), and gives back the one it holds at the end, if any. The file
    is read here, or by a reading process started before the pipeline's threads."""
    db_path = store.path
    if read_in_a_process is None:
        read_in_a_process = reads_in_a_process(Path(traces_path), policy)
    if judge_in_a_process is None:
        judge_in_a_process = budget is None and big_input(Path(traces_path))
    reader = (ReadingProcess(Path(traces_path), policy, fmt, batch_size, settings)
              if read_in_a_process else None)
    try:
        pipeline = EmbeddedPipeline(db_path, judge_name, rubric_refs, registry, settings, budget,
                                    concurrency, run_id, on_written=progress.written,
                                    hold_s=SINK_HOLD_S, store=store,
                                    judging_process=judge_in_a_process)
    except BaseException:
        if reader is not None:
            reader.stop()
        store.close()
        raise
    try:
        if reader is not None:
            counts = reader.stream(pipeline.send, pipeline.keep, progress.read)
        else:
            counts = stream_work(Path(traces_path), policy, pipeline.send, pipeline.keep, fmt,
                                 LedgerSpend(db_path, beside_writer=True), batch_size, settings,
                                 progress.read)
        progress.reading_done(counts)
        pipeline.join()
    except BaseException as exc:
        if isinstance(exc, ReadingProcessError):  # judge and store what it handed over
            with suppress(Exception):
                pipeline.join()
        kept = pipeline.close()
        if kept is not None:
            kept.close()
        raise
    kept = pipeline.close()
    progress.finish()
    return counts, kept


async def _judge_chunks(context: WorkerContext, chunks: queue.Queue[list[WorkItem] | None],
                        judge_name: str, rubric_refs: Sequence[str], run_id: str | None,
                        concurrency: int,
                        on_judged: Callable[[list[WorkItem]], None] | None = None) -> None:
    """Judge the chunks as they come, `concurrency` at a time, until the None that ends them.
    Each chunk's results reach the channel as they complete (as a worker's do), then
    `on_judged` hears the chunk. A chunk that raises stops the loop, and the loop raises it
    once the chunks being judged are done."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()

    async def judge(items: list[WorkItem]) -> None:
        try:
            early = EarlyResults(context.channel, context.spend)
            rest = early.rest(await process_items(context, items, [], judge_name, rubric_refs,
                                                  run_id, early))
            if len(rest):
                publish_counted(context.channel, context.spend, rest)
            if on_judged is not None:
                on_judged(items)
        finally:
            slots.release()

    failed: list[BaseException] = []

    def done(task: asyncio.Task) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failed.append(task.exception())  # type: ignore[arg-type]

    while not failed:
        await slots.acquire()
        try:  # a chunk already waiting is taken without waking a thread to wait for it
            items = chunks.get_nowait()
        except queue.Empty:
            items = await loop.run_in_executor(None, chunks.get)
        if items is None:
            break
        task = asyncio.create_task(judge(items))
        running.add(task)
        task.add_done_callback(done)
    await asyncio.gather(*running, return_exceptions=True)
    if failed:  # a bug, not bad input (that ends as dead letters): the run fails
        raise failed[0]


def _drain(chunks: queue.Queue) -> None:
    """Empty the queue, so the None put after it is the next thing read."""
    try:
        while True:
            chunks.get_nowait()
    except queue.Empty:
        pass


def _wait_below(depth: Callable[[], int], limit: int, sink_thread: threading.Thread) -> None:
    """Back-pressure for the reader: wait while `depth()` is at `limit` (the sink drains it),
    unless the sink has stopped."""
    while depth() >= limit and sink_thread.is_alive():
        time.sleep(0.005)
