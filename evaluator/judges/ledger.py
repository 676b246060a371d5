"""What a judge's ledger rows (evaluator.core.rows.JudgeCall) add up to, and tying them to the
Evaluation they produced."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evaluator.core.rows import JudgeCall


@dataclass(slots=True)
class CallTotals:
    """What a list of calls adds up to, as the Evaluation reports it."""

    attempts: int
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    latency_ms: float


def totals(calls: Sequence[JudgeCall]) -> CallTotals:
    """HTTP attempts, summed tokens and latency; cost is unknown if any call's is."""
    attempts = 0
    input_tokens = output_tokens = None
    cost: float | None = 0.0
    latency = 0.0
    for call in calls:
        if not call.cached:
            attempts += 1
        if call.input_tokens is not None:
            input_tokens = (input_tokens or 0) + call.input_tokens
        if call.output_tokens is not None:
            output_tokens = (output_tokens or 0) + call.output_tokens
        if call.cost_usd is None:
            cost = None
        elif cost is not None:
            cost += call.cost_usd
        latency += call.latency_ms or 0.0
    if not calls:
        cost = None
    return CallTotals(attempts, input_tokens, output_tokens, cost, round(latency, 3))


def stamp(calls: Iterable[JudgeCall], evaluation_id: str, trace_id: str, rubric: str,
          rubric_version: int, run_id: str | None) -> None:
    """Tie the calls to the Evaluation they produced."""
    for call in calls:
        call.evaluation_id, call.trace_id = evaluation_id, trace_id
        call.rubric, call.rubric_version, call.run_id = rubric, rubric_version, run_id
