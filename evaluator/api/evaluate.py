"""`evaluate`: score one output or a list with named rubrics and a judge, in this process.

Each item becomes a Trace (validated and PII-masked like any ingested trace) and goes through
the pipeline every worker runs, so it gets the same Evaluation record, provenance and ids. The
judge is built the usual way (cache, rate limits, breaker, ledger) on a runtime of its own: an
in-memory cache and per-process rate limits, unless `settings` is given (then its Redis and
cache, as a worker's). Nothing is stored unless `db=` names a DuckDB file.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluator.core.errors import ConfigError
from evaluator.core.records import Evaluation, Message, Trace, canonical_json, parse_trace, sha256_hex
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.core.settings import Settings
from evaluator.core.usage import FREE
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.base import JudgeClient
from evaluator.rubrics import Rubric, RubricRegistry

if TYPE_CHECKING:
    from evaluator.judges.runtime import JudgeRuntime

API_DECISION = SampleDecision(True, "api", 1.0)
ITEM_FIELDS = frozenset({"id", "input", "output", "context", "expected", "metadata", "system"})

Item = str | Mapping[str, Any] | Trace
"""An output to score: its text, a mapping of ITEM_FIELDS, or a Trace."""


@dataclass
class Evaluated:
    """The evaluations (per item, per rubric, in order) and the ledger of judge calls."""

    evaluations: list[Evaluation]
    judge_calls: list[JudgeCall] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    """The traces as judged (masked), one per item."""

    def __iter__(self) -> Iterator[Evaluation]:
        return iter(self.evaluations)

    def __len__(self) -> int:
        return len(self.evaluations)

    def __getitem__(self, index: int) -> Evaluation:
        return self.evaluations[index]

    @property
    def passed(self) -> bool:
        """Every evaluation scored and passed (skipped ones do not count against it)."""
        judged = [e for e in self.evaluations if e.status != "skipped"]
        return bool(judged) and all(e.status == "scored" and e.passed for e in judged)

    @property
    def cost_usd(self) -> float | None:
        """What the judge calls cost; None when any cost is unknown."""
        return sum((call.usage for call in self.judge_calls), FREE).cost_usd


def _trace(item: Item, defaults: Mapping[str, Any], max_text_chars: int) -> Trace:
    if isinstance(item, Trace):
        return item
    values: dict[str, Any] = {"output": item} if isinstance(item, str) else dict(item)
    unknown = sorted(set(values) - ITEM_FIELDS)
    if unknown:
        raise ConfigError(f"unknown item field(s) {', '.join(unknown)}; an item has "
                          f"{', '.join(sorted(ITEM_FIELDS))}")
    values = {**{k: v for k, v in defaults.items() if v is not None}, **values}
    trace_id = values.pop("id", None) or "api-" + sha256_hex(canonical_json(values))[:16]
    if isinstance(values.get("input"), list):
        values["input"] = [m.model_dump() if isinstance(m, Message) else m for m in values["input"]]
    return parse_trace({"trace_id": trace_id, **values}, max_text_chars)


def _rubrics(registry: RubricRegistry, names: str | Sequence[str] | None) -> list[Rubric]:
    if names is None:
        return registry.latest()
    return [registry.get(name) for name in ([names] if isinstance(names, str) else names)]


@functools.cache
def _in_memory_runtime() -> JudgeRuntime:
    """The API's runtime when no settings are given: one per process, so its in-memory cache
    answers a repeated call and its rate limits hold across calls."""
    from evaluator.judges.cache import JudgeCache
    from evaluator.judges.runtime import JudgeRuntime  # lazy: the judge chain loads on first use

    return JudgeRuntime(cache=JudgeCache())


_shared_runtimes: dict[tuple[object, ...], JudgeRuntime] = {}
_shared_lock = threading.Lock()


def _shared_runtime(settings: Settings) -> JudgeRuntime:
    """The API's runtime for `settings`: one per process for each Redis, cache and database the
    callers' settings name, so repeated calls share its cache, rate limits and breakers."""
    from evaluator.judges.runtime import JudgeRuntime  # lazy: the judge chain loads on first use

    key = (settings.redis_url, settings.judge_cache, settings.db_path, settings.judge_cache_max_entries)
    with _shared_lock:
        if key not in _shared_runtimes:
            _shared_runtimes[key] = JudgeRuntime.from_settings(settings)
        return _shared_runtimes[key]


def judge_for(name: str, settings: Settings, shared: bool = False) -> JudgeClient:
    """Judge `name` on the API's in-memory runtime (cache, per-process rate limits), or on the
    API's runtime for `settings` when `shared` (its Redis and cache)."""
    from evaluator.judges.factory import load_judge  # lazy: the judge chain loads on first use

    runtime = _shared_runtime(settings) if shared else _in_memory_runtime()
    return load_judge(name, settings.judges_dir, runtime)


async def evaluate_async(items: Item | Sequence[Item], *, rubrics: str | Sequence[str] | None = None,
                         judge: str | JudgeClient = "offline", settings: Settings | None = None,
                         db: Path | str | None = None, run_id: str | None = None,
                         **defaults: Any) -> Evaluated:
    """`evaluate` for callers already in an event loop."""
    shared = settings is not None
    settings = settings or Settings.from_env()
    from evaluator.judges.scorers import check_scorers
    from evaluator.pii.masking import ingest_masker
    from evaluator.worker.pipeline import evaluate_batch  # lazy: `import evaluator` stays light

    chosen = _rubrics(RubricRegistry.load(settings.rubrics_dir), rubrics)
    check_scorers(chosen)
    listed: Sequence[Item] = ([items] if isinstance(items, (str, Mapping, Trace)) else items)
    traces = [_trace(item, defaults, settings.max_text_chars) for item in listed]
    mask = ingest_masker(settings)
    if mask is not None:
        traces = [trace if trace.pii_masked else mask(trace) for trace in traces]
    client = judge_for(judge, settings, shared) if isinstance(judge, str) else judge
    judged = await evaluate_batch([WorkItem(trace, API_DECISION) for trace in traces], chosen, client,
                                  run_id)
    result = Evaluated(judged.evaluations, judged.judge_calls, traces)
    if db is not None:
        _store(Path(db), result, settings)
    return result


def evaluate(items: Item | Sequence[Item], *, rubrics: str | Sequence[str] | None = None,
             judge: str | JudgeClient = "offline", settings: Settings | None = None,
             db: Path | str | None = None, run_id: str | None = None,
             **defaults: Any) -> Evaluated:
    """Score `items` (one output or a list: text, mappings with input, output, context,
    expected, metadata, system and id, or Traces) with `rubrics` (names, NAME@vN; default all
    latest) and `judge` (a judge config name, or a JudgeClient). Keyword `defaults` (input=,
    context=, expected=, ...) apply to every item that does not set them. `settings` (e.g.
    Settings.from_env()) shares the service's Redis rate limits and cache; `db` also stores
    the traces, evaluations and ledger rows in that DuckDB file; `run_id` tags the evaluations
    with a run (the pytest plugin's replay run)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(evaluate_async(items, rubrics=rubrics, judge=judge, settings=settings,
                                          db=db, run_id=run_id, **defaults))
    raise ConfigError("evaluate() was called inside a running event loop: await "
                      "evaluate_async(...) instead")


def _store(db: Path, result: Evaluated, settings: Settings) -> None:
    from evaluator.pii.masking import storage_masker
    from evaluator.store import Store  # lazy: DuckDB only when asked

    mask = storage_masker(settings)
    stored = [StoredTrace(trace if trace.pii_masked or mask is None else mask(trace),
                          API_DECISION.reason, API_DECISION.weight) for trace in result.traces]
    with Store(db) as store:
        store.write_batch(evaluations=result.evaluations, traces=stored,
                          judge_calls=result.judge_calls)
