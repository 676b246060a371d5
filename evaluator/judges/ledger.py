"""What a judge's ledger rows (evaluator.core.rows.JudgeCall) add up to, and tying them to the
Evaluation they produced."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from evaluator.core.rows import JudgeCall
from evaluator.core.usage import FREE, Usage


@dataclass(slots=True)
class CallTotals:
    """What a list of calls adds up to, as the Evaluation reports it."""

    attempts: int
    """HTTP attempts: the cache hits are not."""
    usage: Usage
    """Summed tokens and latency; cost is unknown if any call's is, or without calls."""


def totals(calls: Sequence[JudgeCall]) -> CallTotals:
    """HTTP attempts, summed tokens and latency; cost is unknown if any call's is."""
    summed = sum((call.usage for call in calls), FREE)
    return CallTotals(sum(not call.cached for call in calls),
                      replace(summed, cost_usd=summed.cost_usd if calls else None,
                              latency_ms=round(summed.latency_ms or 0.0, 3)))


def stamp(calls: Iterable[JudgeCall], evaluation_id: str, trace_id: str, rubric: str,
          rubric_version: int, run_id: str | None) -> None:
    """Tie the calls to the Evaluation they produced."""
    for call in calls:
        call.evaluation_id, call.trace_id = evaluation_id, trace_id
        call.rubric, call.rubric_version, call.run_id = rubric, rubric_version, run_id
