"""Pairwise judging: a replay run's output against its baseline run's, item by item.

For each item both runs answered, the judge sees the pair twice, in both orders (A = the run,
B = the baseline; then swapped), which cancels position bias: when the two orders agree, that is
the verdict; when they disagree, it is a tie. Each comparison is stored as its own Evaluation of
the pairwise rubric, from the run's side (`a_better` = the run's output is better), on the
run's trace, with both verdicts' reasoning and the calls behind them. `gate --pairwise` counts
wins, losses and ties and asks a sign test (binomial test of the wins among wins and losses,
against 1/2, one-sided) whether the run loses more often than chance.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evaluator.core.errors import ConfigError, EvaluatorError
from evaluator.core.records import Evaluation, Status, evaluation_id_for, parse_trace
from evaluator.core.rows import JudgeCall
from evaluator.core.settings import Settings
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.judges.ledger import stamp
from evaluator.regression.datasets import DatasetItem
from evaluator.regression.gate import mcnemar_one_sided_p
from evaluator.rubrics import Rubric, render
from evaluator.store import Store
from evaluator.store import replay_queries as queries

SWAPPED = {"a_better": "b_better", "b_better": "a_better", "tie": "tie"}
CONCURRENCY = 16


@dataclass(frozen=True)
class PairwiseGate:
    rubric: str
    baseline: str
    wins: int
    losses: int
    ties: int
    unscored: int
    p_value: float | None
    """One-sided sign test: chance of this many losses or more among wins + losses at 1/2."""
    regression: bool

    def to_dict(self) -> dict[str, Any]:
        return {"rubric": self.rubric, "baseline": self.baseline, "wins": self.wins,
                "losses": self.losses, "ties": self.ties, "unscored": self.unscored,
                "sign_test_p": self.p_value, "regression": self.regression}

    def line(self) -> str:
        p = "-" if self.p_value is None else f"{self.p_value:.4g}"
        return (f"pairwise {self.rubric} vs {self.baseline}: {self.wins} wins, {self.losses} losses, "
                f"{self.ties} ties, {self.unscored} unscored; one-sided sign test p={p}: "
                f"{'regression' if self.regression else 'pass'}")


def sign_test(wins: int, losses: int) -> float | None:
    """P(losses or more | wins + losses comparisons, each a loss with chance 1/2), the gate's
    exact binomial tail (the tests check it against scipy's binomtest); None without any."""
    return None if wins + losses == 0 else mcnemar_one_sided_p(losses, wins)


def _outputs(store: Store, run_id: str) -> dict[str, tuple[str, DatasetItem, str]]:
    """item_id -> (trace_id, item, output judged) of a run's done items."""
    found = {}
    for row in queries.item_outputs(store, run_id):
        item = DatasetItem.model_validate_json(row.item_json)
        found[row.item_id] = (row.trace_id, item, item.output if row.output is None else row.output)
    return found


async def _compare(rubric: Rubric, judge: JudgeClient, trace_id: str, item: DatasetItem,
                   output: str, baseline_output: str, settings: Settings) -> list[JudgeVerdict]:
    forward = parse_trace(item.trace_payload(trace_id, output), settings.max_text_chars)
    backward = parse_trace(item.trace_payload(trace_id, baseline_output), settings.max_text_chars)
    prompts = [render(rubric, forward, baseline_output), render(rubric, backward, output)]
    verdicts = await asyncio.gather(judge.judge(rubric, forward, prompts[0]),
                                    judge.judge(rubric, backward, prompts[1]))
    for verdict, prompt in zip(verdicts, prompts, strict=True):
        verdict.raw_reply = json.dumps({"prompt_hash": prompt.prompt_hash, "reply": verdict.raw_reply})
    return list(verdicts)


def _evaluation(rubric: Rubric, judge: JudgeClient, run_id: str, baseline_id: str, trace_id: str,
                forward: JudgeVerdict, backward: JudgeVerdict) -> Evaluation:
    """One stored comparison from the run's side: both orders agree, else a tie."""
    labels = (forward.label, SWAPPED.get(backward.label or ""))
    status: Status = "scored"
    label, reason = labels[0], None
    if forward.status != "scored" or backward.status != "scored":
        failed = forward if forward.status != "scored" else backward
        status, label, reason = failed.status, None, f"{failed.status} in one order: {failed.reason}"
    elif labels[0] != labels[1]:
        label, reason = "tie", f"the two orders disagree ({labels[0]} vs {labels[1]} from the run's side)"
    evaluation = Evaluation(
        evaluation_id=evaluation_id_for(f"{trace_id}\x1f{baseline_id}", rubric.content_hash, judge.config_hash),
        trace_id=trace_id, rubric=rubric.criterion, rubric_version=rubric.version,
        rubric_hash=rubric.content_hash, judge=judge.name, judge_hash=judge.config_hash,
        label=label, score=rubric.labels[label] if label else None,
        passed=rubric.passes(rubric.labels[label]) if label else None,
        reasoning=f"A = this run, B = {baseline_id}: {forward.reasoning}\n"
                  f"A = {baseline_id}, B = this run: {backward.reasoning}",
        status=status, reason=reason if status != "scored" or label == "tie" else None,
        raw_reply=json.dumps([forward.raw_reply, backward.raw_reply]),
        usage=replace(forward.usage + backward.usage,  # the two orders are judged at once
                      latency_ms=max(v.usage.latency_ms or 0.0 for v in (forward, backward))),
        attempts=forward.attempts + backward.attempts, cached=forward.cached and backward.cached,
        sample_reason=f"pairwise vs {baseline_id}", run_id=run_id)
    stamp(forward.calls + backward.calls, evaluation.evaluation_id, trace_id, rubric.criterion, rubric.version, run_id)
    return evaluation


def judge_pairwise(db: Path, run_id: str, baseline_id: str, rubric: Rubric, judge: JudgeClient,
                   settings: Settings) -> list[Evaluation]:
    """Compare every item both runs answered, store the comparisons, return them."""
    if rubric.kind != "pairwise":
        raise ConfigError(f"rubric {rubric.ref} is not pairwise (kind {rubric.kind}); "
                          "--pairwise needs a rubric with kind: pairwise, e.g. preference")
    with Store(db, read_only=True) as store:
        ours, theirs = _outputs(store, run_id), _outputs(store, baseline_id)
    shared = [item_id for item_id in ours if item_id in theirs]
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(item_id: str) -> tuple[Evaluation, list[JudgeCall]]:
        trace_id, item, output = ours[item_id]
        async with limit:
            try:
                forward, backward = await _compare(rubric, judge, trace_id, item, output,
                                                   theirs[item_id][2], settings)
            except EvaluatorError as exc:  # e.g. the pair does not fit a prompt
                forward = backward = JudgeVerdict(status="error", reason=str(exc), attempts=0)
        evaluation = _evaluation(rubric, judge, run_id, baseline_id, trace_id, forward, backward)
        return evaluation, forward.calls + backward.calls

    async def every() -> list[tuple[Evaluation, list[JudgeCall]]]:
        return list(await asyncio.gather(*(one(item_id) for item_id in shared)))

    judged = asyncio.run(every())
    evaluations = [evaluation for evaluation, _ in judged]
    with Store(db) as store:
        store.write_batch(evaluations=evaluations, judge_calls=[c for _, calls in judged for c in calls])
    return evaluations


def pairwise_gate(rubric: str, baseline_id: str, evaluations: list[Evaluation],
                  alpha: float) -> PairwiseGate:
    labels = [e.label for e in evaluations if e.status == "scored"]
    wins, losses, ties = labels.count("a_better"), labels.count("b_better"), labels.count("tie")
    p_value = sign_test(wins, losses)
    return PairwiseGate(rubric, baseline_id, wins, losses, ties, len(evaluations) - len(labels),
                        p_value, p_value is not None and p_value < alpha)
