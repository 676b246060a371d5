"""What travels through the queue and the results channel, as plain JSON-ready dicts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import MAX_TEXT_CHARS, DeadLetter, Evaluation, Trace, parse_trace
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.core.usage import gather_usage, spread_usage
from evaluator.core.work import SampleDecision, WorkItem

QUEUE_NAME = "evaluator"
ACTOR_NAME = "evaluate_batch"
"""The actor every work message is sent to (registered by evaluator.worker.actors)."""


def work_message(items: list[dict[str, Any]], judge: str, rubrics: Sequence[str] | None,
                 run_id: str | None) -> dict[str, Any]:
    """One work message: encoded items (`encode_items`), the judge and rubrics to use."""
    return {"items": items, "judge": judge, "rubrics": list(rubrics or []), "run_id": run_id}


def encode_items(items: Sequence[WorkItem]) -> list[dict[str, Any]]:
    return [_encode_item(item) for item in items]


def _encode_item(item: WorkItem) -> dict[str, Any]:
    entry = {
        "trace": item.trace.model_dump(mode="json", exclude_defaults=True),
        "sample_reason": item.decision.reason,
        "sample_weight": item.decision.weight,
    }
    if item.decision.rubric_rates:  # only when rubrics sample at different rates
        entry["sample_rate"] = item.decision.rate
        entry["rubric_rates"] = dict(item.decision.rubric_rates)
    return entry


def _decision(entry: dict[str, Any]) -> SampleDecision:
    rubric_rates = entry.get("rubric_rates") or {}
    if not isinstance(rubric_rates, dict):
        raise InvalidTraceError("invalid work item: rubric_rates must be an object",
                                field="rubric_rates")
    rate = entry.get("sample_rate")
    return SampleDecision(
        True, str(entry.get("sample_reason", "unknown")), float(entry.get("sample_weight", 1.0)),
        None if rate is None else float(rate),
        {str(criterion): float(value) for criterion, value in rubric_rates.items()},
    )


def decode_items(payload: Sequence[Any], source: str,
                 max_text_chars: int = MAX_TEXT_CHARS) -> tuple[list[WorkItem], list[DeadLetter]]:
    """Re-validate traces at the worker's boundary (text cut to `max_text_chars`, as at ingest):
    a bad one becomes a dead letter, not a crash."""
    items: list[WorkItem] = []
    dead: list[DeadLetter] = []
    for entry in payload:
        try:
            if not isinstance(entry, dict):
                raise InvalidTraceError("invalid work item: expected an object", field="<root>")
            trace = parse_trace(entry.get("trace"), max_text_chars)
            decision = _decision(entry)
        except (InvalidTraceError, TypeError, ValueError) as exc:
            dead.append(DeadLetter.from_error(source, entry, exc))
            continue
        items.append(WorkItem(trace, decision))
    return items, dead


@dataclass
class ResultBatch:
    """Everything one evaluated batch sends to the sink; written in one transaction."""

    evaluations: list[Evaluation] = field(default_factory=list)
    traces: list[StoredTrace] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    judge_calls: list[JudgeCall] = field(default_factory=list)
    """The cost ledger rows behind the evaluations."""

    def __len__(self) -> int:
        return (len(self.evaluations) + len(self.traces) + len(self.dead_letters)
                + len(self.judge_calls))

    def extend(self, other: ResultBatch) -> None:
        self.evaluations.extend(other.evaluations)
        self.traces.extend(other.traces)
        self.dead_letters.extend(other.dead_letters)
        self.judge_calls.extend(other.judge_calls)

    def to_json(self) -> str:
        return json.dumps(
            {
                "evaluations": [spread_usage(e.model_dump(mode="json")) for e in self.evaluations],
                "traces": [
                    {
                        "trace": t.trace.model_dump(mode="json", exclude_defaults=True),
                        "sample_reason": t.sample_reason,
                        "sample_weight": t.sample_weight,
                    }
                    for t in self.traces
                ],
                "dead_letters": [d.model_dump(mode="json") for d in self.dead_letters],
                "judge_calls": [c.to_json() for c in self.judge_calls],
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ResultBatch:
        """Parsed and validated in one pass by pydantic-core: half the sink's decode CPU of
        json.loads plus one model_validate per record."""
        data = _WireBatch.model_validate_json(text)
        return cls(
            evaluations=data.evaluations,
            traces=[StoredTrace(t.trace, t.sample_reason, t.sample_weight) for t in data.traces],
            dead_letters=data.dead_letters,
            judge_calls=[JudgeCall.from_json(c) for c in data.judge_calls],
        )


class _WireTrace(BaseModel):
    trace: Trace
    sample_reason: str
    sample_weight: float


class _WireBatch(BaseModel):
    """The JSON form of a ResultBatch, as to_json writes it."""

    evaluations: list[Annotated[Evaluation, BeforeValidator(gather_usage)]]
    traces: list[_WireTrace]
    dead_letters: list[DeadLetter]
    judge_calls: list[dict[str, Any]] = []
