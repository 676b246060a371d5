"""`evaluator replay`: judge every item of a dataset, after regenerating its output with the app
under test when a target is given, as a stored run that Ctrl-C leaves resumable.

Each item is judged as the trace `<run_id>/<item_id>`, so a run's evaluations never collide with
another run's (evaluation ids hash the trace id); `replay_items` maps them back to item ids.
Results are written in batches, each batch's items marked done after its evaluations are stored
(evaluator.regression.replay_writer).
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluator.core.errors import ConfigError, DatasetError, EvaluatorError
from evaluator.core.records import Evaluation, Trace, evaluation_id_for, parse_trace
from evaluator.core.settings import Settings
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.base import JudgeClient
from evaluator.judges.budget import RunBudget
from evaluator.judges.factory import load_judge
from evaluator.judges.runtime import JudgeRuntime
from evaluator.judges.scorers import check_scorers
from evaluator.pii.masking import ingest_masker, payload_masker, storage_masker
from evaluator.regression.datasets import DatasetItem, hash_lines, read_dataset, read_manifest
from evaluator.regression.replay_writer import ItemResult, ReplayWriter
from evaluator.regression.targets import Target, load_target
from evaluator.rubrics import Rubric, RubricRegistry
from evaluator.store import RubricSummary, Scope, Store
from evaluator.store import replay_queries as queries
from evaluator.store.scope import REPLAY_KIND
from evaluator.worker.pipeline import evaluate_batch, scorer_for

REPLAY_DECISION = SampleDecision(True, "replay", 1.0)
DEFAULT_CONCURRENCY = 16
BATCH_ITEMS = 2000
FLUSH_INTERVAL_S = 2.0
"""A batch is stored every FLUSH_INTERVAL_S or BATCH_ITEMS items, whichever comes first, by
evaluator.regression.replay_writer (in a thread of its own, one write at a time)."""
MAX_ERROR_CHARS = 400

Progress = Callable[[int, int], None]
"""Called with (items done, items in the run) once before the first item, then after each."""


def replay_trace_id(run_id: str, item_id: str) -> str:
    return f"{run_id}/{item_id}"


def new_replay_id() -> str:
    return time.strftime("replay-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """The commit the app under test is at and whether tracked files differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


@dataclass
class ReplayReport:
    run_id: str
    db: Path
    status: str
    """`completed`, or `interrupted` (finish it with `evaluator replay --resume RUN`)."""
    total: int = 0
    done: int = 0
    done_this_session: int = 0
    target_errors: int = 0
    judge_calls: int = 0
    """Judge calls made by this session, retries included, cached replies excluded."""
    cached: int = 0
    elapsed_s: float = 0.0
    summaries: list[RubricSummary] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.done_this_session / self.elapsed_s if self.elapsed_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "db": str(self.db), "status": self.status,
            "total": self.total, "done": self.done, "done_this_session": self.done_this_session,
            "target_errors": self.target_errors, "judge_calls": self.judge_calls,
            "cached": self.cached, "elapsed_s": round(self.elapsed_s, 3),
            "rubrics": [s.to_dict() for s in self.summaries],
        }


@dataclass(frozen=True)
class _Setup:
    rubrics: list[Rubric]
    judge: JudgeClient
    target: Target | None
    manifest: dict[str, Any]
    """What a run records about how it was judged (start) or must still match (resume)."""
    settings: Settings
    """The text limit and PII masking of the traces built from items."""


def _setup(settings: Settings, db: Path, rubric_refs: Sequence[str], judge_name: str,
           target_spec: str | None, budget: RunBudget | None = None) -> _Setup:
    registry = RubricRegistry.load(settings.rubrics_dir)
    rubrics = [registry.get(ref) for ref in rubric_refs] or registry.latest()
    check_scorers(rubrics)
    judge = load_judge(judge_name, settings.judges_dir, JudgeRuntime.from_settings(settings, db))
    if budget is not None:
        judge = budget.wrap(judge)
    key = settings.target_api_key
    target = load_target(target_spec, key.get_secret_value() if key is not None else None) if target_spec else None
    manifest = {
        "git": git_state(),
        "rubrics": {rubric.ref: rubric.content_hash for rubric in rubrics},
        "judge": {"name": judge.name, "hash": judge.config_hash},
        "target": target_spec,
    }
    return _Setup(rubrics, judge, target, manifest, settings)


def start_replay(dataset: Path, db: Path, settings: Settings, rubric_refs: Sequence[str] = (),
                 judge_name: str | None = None, target: str | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, run_id: str | None = None,
                 progress: Progress | None = None,
                 max_cost_usd: float | None = None) -> ReplayReport:
    """Replay every item of `dataset` as a new run in `db`. With `max_cost_usd`, items past the
    run's judge budget are stored as `skipped` (see evaluator.judges.budget)."""
    _check_concurrency(concurrency)
    items = read_dataset(dataset)
    if not items:
        raise DatasetError(f"dataset {dataset} has no items: nothing to replay")
    judge_name = judge_name or settings.judge
    budget = None if max_cost_usd is None else RunBudget(max_cost_usd)
    setup = _setup(settings, db, rubric_refs, judge_name, target, budget)
    built = read_manifest(dataset)
    lines = [item.line() for item in items]
    setup.manifest["dataset"] = {
        "path": str(dataset), "name": built.name if built else dataset.stem,
        "version": built.version if built else None, "content_hash": hash_lines(lines),
        "item_count": len(items),
    }
    run_id = run_id or new_replay_id()
    params = {"dataset": str(dataset), "rubrics": [r.ref for r in setup.rubrics],
              "judge": judge_name, "target": target, "concurrency": concurrency,
              "max_cost_usd": max_cost_usd}
    pending = [(replay_trace_id(run_id, item.id), item) for item in items]
    with Store(db) as store:
        store.start_run(run_id, REPLAY_KIND, params)
        queries.set_running(store, run_id, setup.manifest)
        queries.add_items(store, run_id, [(item.id, trace_id, line)
                                               for (trace_id, item), line in zip(pending, lines, strict=True)])
        counts = queries.item_counts(store, run_id)
    return _execute(run_id, db, setup, pending, concurrency, progress, counts)


def resume_replay(run_id: str, db: Path, settings: Settings, concurrency: int | None = None,
                  progress: Progress | None = None) -> ReplayReport:
    """Finish an interrupted replay: only the items not done yet, with the run's own settings."""
    with Store(db) as store:
        run = store.run(run_id)
        if run is None or run.kind != REPLAY_KIND:
            found = ", ".join(r.run_id for r in store.runs(kind=REPLAY_KIND, limit=5)) or "none"
            raise ConfigError(f"no replay run {run_id!r} in {db} (latest replays: {found})")
        if run.status == "completed":
            raise ConfigError(f"replay {run_id} is already complete; start a new one with "
                              "`evaluator replay DATASET`")
        params, manifest = run.params, run.manifest or {}
        budget = None
        if params.get("max_cost_usd") is not None:  # what the run spent before counts too
            budget = RunBudget(params["max_cost_usd"], queries.run_cost(store, run_id))
        setup = _setup(settings, db, params["rubrics"], params["judge"], params["target"], budget)
        for what, now in (("rubrics", setup.manifest["rubrics"]), ("judge", setup.manifest["judge"])):
            if manifest.get(what) != now:
                raise ConfigError(
                    f"the {what} of replay {run_id} changed since it started ({manifest.get(what)} "
                    f"-> {now}); a run is judged by one configuration: start a new replay")
        concurrency = concurrency or params["concurrency"]
        _check_concurrency(concurrency)
        pending = [(item.trace_id, DatasetItem.model_validate_json(item.item_json))
                   for item in queries.pending_items(store, run_id)]
        queries.set_running(store, run_id)
        counts = queries.item_counts(store, run_id)
    return _execute(run_id, db, setup, pending, concurrency, progress, counts)


def _check_concurrency(concurrency: int) -> None:
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


class _Session:
    """One process's pass over a run's pending items: bounded concurrency, batched writes."""

    def __init__(self, run_id: str, db: Path, setup: _Setup, concurrency: int,
                 total: int, done_before: int, progress: Progress | None):
        self.run_id, self.db, self.setup = run_id, db, setup
        self.concurrency = concurrency
        self.total, self.done_before, self.done = total, done_before, done_before
        self.progress = progress
        self.buffer: list[ItemResult] = []
        self.last_flush = time.monotonic()
        self.writer = ReplayWriter(db, run_id)
        self.last_round = False
        self.mask_for_judge = ingest_masker(setup.settings)
        self.mask_for_store = storage_masker(setup.settings)
        self.mask_text = payload_masker(setup.settings)

    async def run(self, pending: Sequence[tuple[str, DatasetItem]]) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)
        queue = iter(pending)
        workers = min(self.concurrency, len(pending))
        try:
            await asyncio.gather(*(self._worker(queue) for _ in range(workers)))
        finally:
            await self.writer.finish(self._taken())
            if self.setup.target is not None:
                await self.setup.target.close()

    async def _worker(self, queue: Iterator[tuple[str, DatasetItem]]) -> None:
        for trace_id, item in queue:
            result = await self._replay(trace_id, item)
            self.buffer.append(result)  # after the await: a write may have taken the buffer
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.total)
            if (len(self.buffer) >= BATCH_ITEMS
                    or time.monotonic() - self.last_flush >= FLUSH_INTERVAL_S):
                self._start_write()
        if not self.last_round:  # every item has started: open the file for the last writes
            self.last_round = True
            self.writer.hold_open(self._taken())

    async def _replay(self, trace_id: str, item: DatasetItem) -> ItemResult:
        setup = self.setup
        output = context = latency_ms = None
        if setup.target is not None:
            try:
                generated = await setup.target.generate(item)
            except Exception as exc:  # the app under test failed on this item: record why
                error = f"target {setup.target.spec} failed: {self._storable(_short(exc))}"
                return ItemResult(queries.ItemDone(item.id, None, error, None),
                                   [self._error(trace_id, rubric, error) for rubric in setup.rubrics])
            output, context, latency_ms = generated.output, generated.context, generated.latency_ms
        try:
            trace = parse_trace(item.trace_payload(trace_id, output, context),
                                self.setup.settings.max_text_chars)
        except EvaluatorError as exc:
            error = f"cannot judge the output: {exc}"
            done = queries.ItemDone(item.id, self._storable(output), error, latency_ms)
            return ItemResult(done, [self._error(trace_id, rubric, error)
                                      for rubric in setup.rubrics])
        trace, stored = self._masked(trace)
        judged = await evaluate_batch([WorkItem(trace, REPLAY_DECISION)], setup.rubrics,
                                      setup.judge, self.run_id)
        return ItemResult(queries.ItemDone(item.id, stored if output is not None else None, None,
                                            latency_ms), judged.evaluations, judged.judge_calls)

    def _storable(self, output: str | None) -> str | None:
        """App text that is not a trace (an output that could not become one, an error message),
        masked, lone surrogates escaped (`\\ud800`)."""
        if output is None:
            return None
        output = output.encode("utf-8", "backslashreplace").decode("utf-8")
        return self.mask_text(output) if self.mask_text else output

    def _masked(self, trace: Trace) -> tuple[Trace, str]:
        """Like any trace at ingest: the judge gets it masked (unless EVALUATOR_PII_JUDGE_SEES=raw);
        the output stored in replay_items is always masked (unless EVALUATOR_PII_MODE=off)."""
        if self.mask_for_judge is not None:  # the storage masker itself
            trace = self.mask_for_judge(trace)
            return trace, trace.output
        return trace, (self.mask_for_store(trace) if self.mask_for_store else trace).output

    def _error(self, trace_id: str, rubric: Rubric, reason: str) -> Evaluation:
        """The row an item gets per rubric when there is no output to judge."""
        judge = scorer_for(rubric, self.setup.judge)
        return Evaluation(
            evaluation_id=evaluation_id_for(trace_id, rubric.content_hash, judge.config_hash),
            trace_id=trace_id, rubric=rubric.criterion, rubric_version=rubric.version,
            rubric_hash=rubric.content_hash, judge=judge.name, judge_hash=judge.config_hash,
            status="error", reason=reason, sample_reason=REPLAY_DECISION.reason,
            sample_weight=REPLAY_DECISION.weight, run_id=self.run_id,
        )

    def _start_write(self) -> None:
        """Store the finished items, unless a write is still running (the buffer waits for the
        next check then); a failed write raises here."""
        if not self.writer.busy():
            self.writer.start(self._taken())

    def _taken(self) -> list[ItemResult]:
        taken, self.buffer = self.buffer, []
        self.last_flush = time.monotonic()
        return taken


def _execute(run_id: str, db: Path, setup: _Setup, pending: list[tuple[str, DatasetItem]],
             concurrency: int, progress: Progress | None,
             counts: queries.ItemCounts) -> ReplayReport:
    started = time.perf_counter()
    session = _Session(run_id, db, setup, concurrency, counts.total, counts.done, progress)
    status = "interrupted"
    # What exists now (the items, the libraries loaded) outlives the run: the collector's full
    # passes skip it meanwhile (each walked every object of the process: ~0.1 ms per item and
    # pauses of ~0.1 s that held every call in flight).
    gc.freeze()
    try:
        asyncio.run(session.run(pending))
        status = "completed"
    except KeyboardInterrupt:
        pass  # what finished is stored; the run stays resumable
    except BaseException:
        _finish(run_id, db, "failed", session, time.perf_counter() - started)
        raise
    finally:
        gc.unfreeze()
    return _finish(run_id, db, status, session, time.perf_counter() - started)


def _finish(run_id: str, db: Path, status: str, session: _Session, elapsed_s: float) -> ReplayReport:
    with Store(db) as store:
        counts = queries.item_counts(store, run_id)
        report = ReplayReport(
            run_id=run_id, db=db, status=status, total=counts.total, done=counts.done,
            done_this_session=counts.done - session.done_before,
            target_errors=counts.target_errors, judge_calls=session.writer.judge_calls,
            cached=session.writer.cached, elapsed_s=elapsed_s,
            summaries=store.rubric_summary(Scope.run(run_id)),
        )
        store.finish_run(run_id, status, summary=report.to_dict())
    return report
