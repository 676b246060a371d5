"""The pure middle of the service: a sampled trace in, one terminal Evaluation per rubric out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from evaluator.core.errors import EvaluatorError
from evaluator.core.logging_setup import evaluation_context
from evaluator.core.records import Evaluation, Trace, evaluation_id_for
from evaluator.core.rows import JudgeCall
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.judges.ledger import stamp
from evaluator.judges.ledger_rows import CallListener, calls_heard_by
from evaluator.judges.scorers import code_scorer
from evaluator.judges.scorers.base import CODE_JUDGE_PREFIX
from evaluator.rubrics import Rubric, missing_inputs
from evaluator.worker.prompts_ahead import prompt_for


@dataclass
class JudgedBatch:
    """A batch's evaluations and the ledger of judge calls behind them."""

    evaluations: list[Evaluation] = field(default_factory=list)
    judge_calls: list[JudgeCall] = field(default_factory=list)


def _evaluation(
    item: WorkItem,
    rubric: Rubric,
    judge: JudgeClient,
    run_id: str | None,
    verdict: JudgeVerdict,
    prompt_hash: str | None,
    decision: SampleDecision,
) -> Evaluation:
    score = verdict.score
    passed = None
    if verdict.status == "scored" and verdict.label is not None:
        # Pass/fail follows the label (the rubric's menu and threshold), so a label and its
        # verdict never disagree; `score` keeps a judge's finer-grained value when it has one.
        passed = rubric.passes(rubric.score_for(verdict.label))
        if score is None:
            score = rubric.score_for(verdict.label)
    evaluation = Evaluation(
        # keyed on the judge asked for, so a retry is idempotent even if a fallback answered
        evaluation_id=evaluation_id_for(item.trace.trace_id, rubric.content_hash, judge.config_hash),
        trace_id=item.trace.trace_id,
        rubric=rubric.criterion,
        rubric_version=rubric.version,
        rubric_hash=rubric.content_hash,
        judge=verdict.judge or judge.name,
        judge_hash=verdict.judge_hash or judge.config_hash,
        label=verdict.label if verdict.status == "scored" else None,
        score=score if verdict.status == "scored" else None,
        passed=passed,
        reasoning=verdict.reasoning,
        status=verdict.status,
        reason=verdict.reason,
        raw_reply=verdict.raw_reply,
        usage=verdict.usage,
        attempts=verdict.attempts,
        cached=verdict.cached,
        prompt_hash=prompt_hash,
        sample_reason=decision.reason,
        sample_weight=decision.weight,
        truncated=bool(item.trace.truncated),
        run_id=run_id,
        stability=verdict.stability if verdict.status == "scored" else None,
        claims=verdict.claims if verdict.status == "scored" else None,
    )
    stamp(verdict.calls, evaluation.evaluation_id, evaluation.trace_id, rubric.criterion,
          rubric.version, run_id)
    return evaluation


async def evaluate_rubric(
    item: WorkItem, rubric: Rubric, judge: JudgeClient, run_id: str | None = None
) -> Evaluation:
    """Apply one rubric to one trace. Always returns a terminal Evaluation, never raises."""
    evaluation, _ = await _judged(item, rubric, judge, run_id)
    return evaluation


async def _judged(item: WorkItem, rubric: Rubric, judge: JudgeClient, run_id: str | None,
                  on_call: CallListener | None = None) -> tuple[Evaluation, list[JudgeCall]]:
    """The Evaluation and the judge calls behind it. Log lines emitted meanwhile carry its
    trace_id and evaluation_id; `on_call` hears each call as its request ends, already tied to
    the evaluation it is for."""
    trace_id = item.trace.trace_id
    judge = scorer_for(rubric, judge)
    evaluation_id = evaluation_id_for(trace_id, rubric.content_hash, judge.config_hash)
    with evaluation_context(trace_id, evaluation_id):
        if on_call is None:
            return await _evaluate_rubric(item, rubric, judge, run_id)

        def heard(call: JudgeCall) -> None:
            stamp([call], evaluation_id, trace_id, rubric.criterion, rubric.version, run_id)
            on_call(call)

        with calls_heard_by(heard):
            return await _evaluate_rubric(item, rubric, judge, run_id)


class UnbuiltScorer:
    """A code-scorer rubric whose scorer cannot be built (unknown kind, bad params, a plugin
    that failed to load): its evaluations are `error` with the reason, under the scorer's name."""

    def __init__(self, rubric: Rubric, error: EvaluatorError):
        self.name = CODE_JUDGE_PREFIX + rubric.kind
        self.config_hash = "unbuilt-" + rubric.kind
        self.error = error

    async def judge(self, rubric: Rubric, trace: Trace, prompt: object) -> JudgeVerdict:
        return JudgeVerdict(status="error", reason=str(self.error), attempts=0)


def scorer_for(rubric: Rubric, judge: JudgeClient) -> JudgeClient:
    """Who scores this rubric: the judge for a template, else the rubric's code scorer."""
    if rubric.templated:
        return judge
    try:
        return code_scorer(rubric)
    except EvaluatorError as exc:
        return UnbuiltScorer(rubric, exc)


def _context_note(trace: Trace) -> str:
    """Why a trace that retrieved has no context, as the OTel normalizer recorded it."""
    otel = trace.metadata.get("otel")
    note = otel.get("context_missing") if isinstance(otel, dict) else None
    return f" ({note})" if isinstance(note, str) and note else ""


async def _evaluate_rubric(
    item: WorkItem, rubric: Rubric, judge: JudgeClient, run_id: str | None
) -> tuple[Evaluation, list[JudgeCall]]:
    decision = item.decision.for_rubric(rubric.criterion, item.trace.trace_id)
    if not decision.sampled:
        verdict = JudgeVerdict(status="skipped", attempts=0, reason=(
            f"not sampled for {rubric.criterion} at its rate {decision.rate:g} (another "
            f"rubric's rate {item.decision.weight ** -1:g} picked the trace)"))
        return _evaluation(item, rubric, judge, run_id, verdict, None, decision), []
    missing = missing_inputs(rubric, item.trace)
    if missing:
        verdict = JudgeVerdict(
            status="skipped",
            reason=f"not applicable: the trace has no {' and no '.join(missing)}"
                   f"{_context_note(item.trace) if 'context' in missing else ''}",
            attempts=0,
        )
        return _evaluation(item, rubric, judge, run_id, verdict, None, decision), []
    try:
        prompt = prompt_for(item, rubric) if rubric.templated else None
    except EvaluatorError as exc:
        verdict = JudgeVerdict(status="error", reason=str(exc), attempts=0)
        return _evaluation(item, rubric, judge, run_id, verdict, None, decision), []
    try:
        verdict = await judge.judge(rubric, item.trace, prompt)  # type: ignore[arg-type]
    except Exception as exc:  # a judge must not raise; if one does, keep the row with the reason
        verdict = JudgeVerdict(status="error", reason=f"judge {judge.name} raised {exc!r}")
    if verdict.status == "scored" and verdict.label not in rubric.labels:
        verdict = replace(verdict, status="unscored", label=None, score=None, reasoning=None,
                          stability=None, reason=f"judge returned off-menu label {verdict.label!r}")
    return (_evaluation(item, rubric, judge, run_id, verdict, prompt.prompt_hash if prompt else None, decision),
            verdict.calls)


OnJudged = Callable[[Evaluation, list[JudgeCall]], None]


async def evaluate_batch(
    items: Sequence[WorkItem],
    rubrics: Sequence[Rubric],
    judge: JudgeClient,
    run_id: str | None = None,
    on_judged: OnJudged | None = None,
    on_call: CallListener | None = None,
) -> JudgedBatch:
    """Judge every trace x rubric of a batch concurrently (the judge bounds its own in-flight).
    `on_call` hears each judge call as its request ends; `on_judged` sees each evaluation and
    its judge calls as soon as they are done."""

    async def judged(item: WorkItem, rubric: Rubric) -> tuple[Evaluation, list[JudgeCall]]:
        evaluation, calls = await _judged(item, rubric, judge, run_id, on_call)
        if on_judged is not None:
            on_judged(evaluation, calls)
        return evaluation, calls

    pairs = [(item, rubric) for item in items for rubric in rubrics]
    if getattr(judge, "never_waits", False) and all(rubric.templated for rubric in rubrics):
        # nothing to wait for: in turn, in the order gather would finish them (a task each
        # cost ~10 % of the offline judge's batch)
        done = [await judged(item, rubric) for item, rubric in pairs]
    else:
        done = await asyncio.gather(*(judged(item, rubric) for item, rubric in pairs))
    batch = JudgedBatch()
    for evaluation, calls in done:
        batch.evaluations.append(evaluation)
        batch.judge_calls.extend(calls)
    return batch


async def evaluate_items(
    items: Sequence[WorkItem],
    rubrics: Sequence[Rubric],
    judge: JudgeClient,
    run_id: str | None = None,
) -> list[Evaluation]:
    """The evaluations of evaluate_batch, for callers that keep no cost ledger."""
    return (await evaluate_batch(items, rubrics, judge, run_id)).evaluations
