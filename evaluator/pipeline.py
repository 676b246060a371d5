"""The pure middle of the service: a sampled trace in, one terminal Evaluation per rubric out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from evaluator.errors import EvaluatorError
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.logging_setup import evaluation_context
from evaluator.records import Evaluation, Trace, evaluation_id_for
from evaluator.rubrics import Rubric, missing_inputs, render
from evaluator.sampling import SampleDecision


@dataclass(frozen=True)
class WorkItem:
    """A sampled trace on its way to the judge, with why it was sampled."""

    trace: Trace
    decision: SampleDecision


def _evaluation(
    item: WorkItem,
    rubric: Rubric,
    judge: JudgeClient,
    run_id: str | None,
    verdict: JudgeVerdict,
    prompt_hash: str | None,
) -> Evaluation:
    score = verdict.score
    passed = None
    if verdict.status == "scored" and verdict.label is not None:
        # Pass/fail follows the label (the rubric's menu and threshold), so a label and its
        # verdict never disagree; `score` keeps a judge's finer-grained value when it has one.
        passed = rubric.passes(rubric.score_for(verdict.label))
        if score is None:
            score = rubric.score_for(verdict.label)
    return Evaluation(
        evaluation_id=evaluation_id_for(item.trace.trace_id, rubric.content_hash, judge.config_hash),
        trace_id=item.trace.trace_id,
        rubric=rubric.criterion,
        rubric_version=rubric.version,
        rubric_hash=rubric.content_hash,
        judge=judge.name,
        judge_hash=judge.config_hash,
        label=verdict.label if verdict.status == "scored" else None,
        score=score if verdict.status == "scored" else None,
        passed=passed,
        reasoning=verdict.reasoning,
        status=verdict.status,
        reason=verdict.reason,
        raw_reply=verdict.raw_reply,
        input_tokens=verdict.input_tokens,
        output_tokens=verdict.output_tokens,
        cost_usd=verdict.cost_usd,
        latency_ms=verdict.latency_ms,
        attempts=verdict.attempts,
        cached=verdict.cached,
        prompt_hash=prompt_hash,
        sample_reason=item.decision.reason,
        sample_weight=item.decision.weight,
        truncated=bool(item.trace.truncated),
        run_id=run_id,
    )


async def evaluate_rubric(
    item: WorkItem, rubric: Rubric, judge: JudgeClient, run_id: str | None = None
) -> Evaluation:
    """Apply one rubric to one trace. Always returns a terminal Evaluation, never raises.
    Log lines emitted meanwhile carry its trace_id and evaluation_id."""
    evaluation_id = evaluation_id_for(item.trace.trace_id, rubric.content_hash, judge.config_hash)
    with evaluation_context(item.trace.trace_id, evaluation_id):
        return await _evaluate_rubric(item, rubric, judge, run_id)


async def _evaluate_rubric(
    item: WorkItem, rubric: Rubric, judge: JudgeClient, run_id: str | None
) -> Evaluation:
    missing = missing_inputs(rubric, item.trace)
    if missing:
        verdict = JudgeVerdict(
            status="skipped",
            reason=f"not applicable: the trace has no {' and no '.join(missing)}",
            attempts=0,
        )
        return _evaluation(item, rubric, judge, run_id, verdict, None)
    try:
        prompt = render(rubric, item.trace)
    except EvaluatorError as exc:
        verdict = JudgeVerdict(status="error", reason=str(exc), attempts=0)
        return _evaluation(item, rubric, judge, run_id, verdict, None)
    try:
        verdict = await judge.judge(rubric, item.trace, prompt)
    except Exception as exc:  # a judge must not raise; if one does, keep the row with the reason
        verdict = JudgeVerdict(status="error", reason=f"judge {judge.name} raised {exc!r}")
    if verdict.status == "scored" and verdict.label not in rubric.labels:
        verdict = JudgeVerdict(
            status="unscored",
            reason=f"judge returned off-menu label {verdict.label!r}",
            raw_reply=verdict.raw_reply,
            input_tokens=verdict.input_tokens,
            output_tokens=verdict.output_tokens,
            cost_usd=verdict.cost_usd,
            latency_ms=verdict.latency_ms,
            attempts=verdict.attempts,
        )
    return _evaluation(item, rubric, judge, run_id, verdict, prompt.prompt_hash)


async def evaluate_items(
    items: Sequence[WorkItem],
    rubrics: Sequence[Rubric],
    judge: JudgeClient,
    run_id: str | None = None,
) -> list[Evaluation]:
    """Judge every trace x rubric of a batch concurrently (the judge bounds its own in-flight)."""
    tasks = [evaluate_rubric(item, rubric, judge, run_id) for item in items for rubric in rubrics]
    return list(await asyncio.gather(*tasks))
