"""One trace as `evaluator show` presents it: the stored (masked) trace, every evaluation of it,
and the prompt each judge saw, rendered again and checked against the stored prompt hash.

A replayed trace (id `<run_id>/<item_id>`) is not in the `traces` table: it is rebuilt from its
dataset item and the output the replay stored, as the replay built it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evaluator.core.errors import EvaluatorError, StoreError
from evaluator.core.records import MAX_TEXT_CHARS, Evaluation, Trace, parse_trace
from evaluator.core.usage import spread_usage
from evaluator.judges.scorers.base import CODE_JUDGE_PREFIX
from evaluator.regression.datasets import DatasetItem
from evaluator.rubrics import RubricRegistry, render
from evaluator.store import Store
from evaluator.store.trace_queries import replay_item, trace_ids_like

MAX_MATCHES = 5
PromptVerdict = Literal["matches", "differs", "not checked"]


@dataclass(frozen=True)
class PromptCheck:
    verdict: PromptVerdict
    note: str
    messages: tuple[dict[str, str], ...] = ()
    """The re-rendered prompt (empty when it could not be rendered)."""
    prompt_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "note": self.note, "prompt_hash": self.prompt_hash,
                "messages": list(self.messages)}


@dataclass(frozen=True)
class TraceView:
    trace_id: str
    trace: Trace | None
    origin: str
    """Where the trace comes from: sampled traffic (why, with what weight) or a replay item."""
    evaluations: list[tuple[Evaluation, PromptCheck]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "origin": self.origin,
            "trace": None if self.trace is None else self.trace.model_dump(mode="json"),
            "evaluations": [{**spread_usage(evaluation.model_dump(mode="json")),
                             "prompt": check.to_dict()}
                            for evaluation, check in self.evaluations],
        }


def view_trace(db_path: Path, trace_id: str, registry: RubricRegistry,
               rubric: str | None = None, max_text_chars: int = MAX_TEXT_CHARS,
               lake: Path | None = None) -> TraceView:
    """The trace with id `trace_id` (or the one trace whose id starts with it) and its
    evaluations, oldest first, from DuckDB and the Parquet `lake` together; `rubric` keeps only
    that criterion's. A replayed item is rebuilt as a trace cut to `max_text_chars`, as the
    replay did."""
    with Store(db_path, read_only=True, lake=lake) as store:
        trace_id = _resolve(store, trace_id, lake)
        stored = store.traces([trace_id])
        evaluations = store.evaluations(trace_id=trace_id, rubric=rubric)
        if stored:
            trace: Trace | None = stored[0].trace
            origin = (f"sampled traffic ({stored[0].sample_reason}, weight "
                      f"{stored[0].sample_weight:g})")
        else:
            trace, origin = _replayed(store, trace_id, max_text_chars)
    return TraceView(trace_id, trace, origin,
                     [(e, check_prompt(e, trace, registry)) for e in evaluations])


def _resolve(store: Store, trace_id: str, lake: Path | None) -> str:
    found = trace_ids_like(store, trace_id, MAX_MATCHES)
    if trace_id in found or len(found) == 1:
        return trace_id if trace_id in found else found[0]
    if found:
        more = "+" if len(found) == MAX_MATCHES else ""
        raise StoreError(f"{len(found)}{more} trace ids start with {trace_id!r} "
                         f"({', '.join(found)}): give more of the id")
    raise StoreError(f"no trace or evaluation with id {trace_id!r} in {store.path}: it was not "
                     "sampled (only sampled traces are stored; evaluate it with `evaluator run "
                     "--traces FILE --sample-rate 1` on a file holding it), or it was rejected "
                     "(`evaluator dead-letters` lists those), or it is in another store (--db)"
                     + ("" if lake is not None else ", or its day moved to the Parquet lake "
                        "(set EVALUATOR_LAKE_DIR to read it too)"))


def _replayed(store: Store, trace_id: str, max_text_chars: int) -> tuple[Trace | None, str]:
    row = replay_item(store, trace_id)
    if row is None:
        return None, "not stored (only its evaluations are)"

    item = DatasetItem.model_validate_json(row.item_json)
    origin = (f"dataset item {item.id!r} of replay {row.run_id}"
              f"{', the output the target regenerated' if row.output is not None else ''}")
    try:
        return parse_trace(item.trace_payload(trace_id, row.output), max_text_chars), origin
    except EvaluatorError as exc:
        return None, f"{origin}; it is not a valid trace: {exc}"


def check_prompt(evaluation: Evaluation, trace: Trace | None,
                 registry: RubricRegistry) -> PromptCheck:
    """Render the evaluation's rubric version for `trace` again and compare the hash."""
    if evaluation.prompt_hash is None and evaluation.judge.startswith(CODE_JUDGE_PREFIX):
        return PromptCheck("not checked", f"no judge prompt: a code scorer ({evaluation.judge}) "
                                          "scored it")
    if evaluation.prompt_hash is None:
        return PromptCheck("not checked", f"no judge prompt: the evaluation is "
                                          f"{evaluation.status} ({evaluation.reason or 'no reason'})")
    if trace is None:
        return PromptCheck("not checked", "the trace is not stored, so its prompt cannot be "
                                          "rendered again")
    ref = f"{evaluation.rubric}@v{evaluation.rubric_version}"
    try:
        rubric = registry.get(ref)
        prompt = render(rubric, trace)
    except EvaluatorError as exc:
        return PromptCheck("not checked", f"cannot render {ref} again: {exc}")
    if prompt.prompt_hash == evaluation.prompt_hash:
        return PromptCheck("matches", "this is the exact prompt the judge saw (same sha256 as "
                                      "the stored prompt_hash)", prompt.messages, prompt.prompt_hash)
    why = ("the rubric file changed since (its hash differs from the evaluation's rubric_hash)"
           if rubric.content_hash != evaluation.rubric_hash else
           "the judge saw other text (EVALUATOR_PII_JUDGE_SEES=raw sends unmasked text, and a "
           "replay target's regenerated context is not stored)")
    return PromptCheck("differs", f"rendered again, the prompt differs from the one judged: {why}",
                       prompt.messages, prompt.prompt_hash)
