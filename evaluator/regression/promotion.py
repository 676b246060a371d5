"""Rubric promotion check: is a candidate rubric version at least as good as the current one?

Both versions judge the same human-labelled golden items with the same judge. The candidate
fails when its kappa against the humans is lower than the current version's by more than
`max_kappa_drop`, or when more than `max_flip_rate` of the items change label between the
two. Both kappas are computed on the same items: those the humans labelled with a label both
versions offer, and both versions scored. Too few such items, or an undefined kappa, is no
decision (exit 2), never a pass.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluator.core.errors import ConfigError, DatasetError, InvalidTraceError, RubricError
from evaluator.core.records import MAX_TEXT_CHARS, Trace, parse_trace
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.humans.agreement.bootstrap import DEFAULT_N_BOOT
from evaluator.humans.agreement.from_store import labels_order
from evaluator.humans.agreement.report import kappa_with_ci
from evaluator.humans.agreement.results import KappaEstimate
from evaluator.humans.agreement.stats import KappaWeights
from evaluator.judges.base import JudgeClient
from evaluator.regression.datasets import read_dataset
from evaluator.rubrics import LOCK_FILE_NAME, Rubric, RubricRegistry
from evaluator.worker.pipeline import evaluate_items

EXIT_PASS, EXIT_FAIL, EXIT_UNDECIDED = 0, 1, 2
GOLDEN = SampleDecision(True, "golden", 1.0)
MAX_LISTED_FLIPS = 20


@dataclass(frozen=True)
class GoldenItem:
    trace: Trace
    expected_label: str


def read_golden(path: Path, criterion: str, max_text_chars: int = MAX_TEXT_CHARS
                ) -> tuple[list[GoldenItem], dict[str, int]]:
    """Human-labelled items that expect a label for `criterion`, and counts of those left out.

    Each item is judged as a trace whose trace_id is the item id (text cut to `max_text_chars`)."""
    items: list[GoldenItem] = []
    left_out = {"not_human_labelled": 0, "no_expected_label": 0}
    for item in read_dataset(Path(path)):
        if item.label_source != "human":
            left_out["not_human_labelled"] += 1
        elif criterion not in item.expected_labels:
            left_out["no_expected_label"] += 1
        else:
            try:
                trace = parse_trace(item.trace_payload(item.id), max_text_chars)
            except InvalidTraceError as exc:
                raise DatasetError(f"{path}: item {item.id!r} is not a valid trace: {exc}"
                                   ) from None
            items.append(GoldenItem(trace, item.expected_labels[criterion]))
    return items, left_out


def published_versions(registry: RubricRegistry, criterion: str) -> list[int]:
    """Versions recorded in the rubrics lock (every version found, when there is no lock)."""
    versions = [r.version for r in registry.all() if r.criterion == criterion]
    lock_path = registry.directory / LOCK_FILE_NAME if registry.directory else None
    if lock_path is None or not lock_path.is_file():
        return versions
    try:
        locked = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RubricError(f"{lock_path}: unreadable ({exc}); restore it from git") from None
    return [v for v in versions if f"{criterion}@v{v}" in locked]


def current_version(registry: RubricRegistry, candidate: Rubric) -> Rubric:
    """The latest published version other than the candidate: what it would replace."""
    others = [v for v in published_versions(registry, candidate.criterion)
              if v != candidate.version]
    if not others:
        raise RubricError(f"no published version of {candidate.criterion} other than "
                          f"{candidate.ref} to compare with: pass --against NAME@vN")
    return registry.get(f"{candidate.criterion}@v{max(others)}")


@dataclass
class PromotionCheck:
    candidate: str
    current: str
    judge: str
    golden: str
    statistic: str
    max_kappa_drop: float
    max_flip_rate: float
    items: int = 0
    compared: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    candidate_kappa: KappaEstimate | None = None
    current_kappa: KappaEstimate | None = None
    kappa_drop: float | None = None
    flip_rate: float | None = None
    flipped_items: list[str] = field(default_factory=list)
    decision: str = "undecided"
    reasons: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(self.decision, EXIT_UNDECIDED)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def _judge_labels(items: list[GoldenItem], rubrics: list[Rubric], judge: JudgeClient
                  ) -> dict[tuple[str, int], str]:
    """(item id, rubric version) -> label, for the scored evaluations."""
    work = [WorkItem(item.trace, GOLDEN) for item in items]
    evaluations = asyncio.run(evaluate_items(work, rubrics, judge))
    return {(e.trace_id, e.rubric_version): e.label for e in evaluations
            if e.status == "scored" and e.label is not None}


def _decide(check: PromotionCheck, min_items: int) -> None:
    if check.compared < min_items:
        check.reasons.append(f"only {check.compared} golden items could be compared (need "
                             f"{min_items}): label more items for {check.candidate.split('@')[0]}")
        return
    candidate, current, flip_rate = check.candidate_kappa, check.current_kappa, check.flip_rate
    if candidate is None or current is None or flip_rate is None:
        raise RuntimeError(f"bug: {check.compared} golden items were compared but the kappas or "
                           "the flip rate are missing; please report it")
    if candidate.value is None or current.value is None:
        check.reasons += [f"the {name}'s {check.statistic} is undefined: {result.reason}"
                          for name, result in (("candidate", candidate), ("current", current))
                          if result.value is None]
        return
    check.kappa_drop = current.value - candidate.value
    if check.kappa_drop > check.max_kappa_drop:
        check.reasons.append(f"{check.statistic} drops by {check.kappa_drop:.3f} "
                             f"({current.value:.3f} -> {candidate.value:.3f}), more than "
                             f"the allowed {check.max_kappa_drop:g}")
    if flip_rate > check.max_flip_rate:
        check.reasons.append(f"{flip_rate:.1%} of the items change label, more than the "
                             f"allowed {check.max_flip_rate:.1%}")
    check.decision = "fail" if check.reasons else "pass"


def check_promotion(candidate: Rubric, current: Rubric, golden: Path, judge: JudgeClient,
                    max_kappa_drop: float = 0.05, max_flip_rate: float = 0.10,
                    min_items: int = 20, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                    max_text_chars: int = MAX_TEXT_CHARS) -> PromotionCheck:
    """Replay the golden items with both versions and decide whether the candidate may replace
    the current version (build the judge with evaluator.judges.factory.load_judge)."""
    if min_items < 1:
        raise ConfigError(f"min_items must be at least 1, got {min_items}")
    if candidate.criterion != current.criterion:
        raise RubricError(f"cannot compare {candidate.ref} with {current.ref}: different rubrics")
    if candidate.version == current.version:
        raise RubricError(f"{candidate.ref} would be compared with itself: pass --against "
                          "another version")
    ordinal = len(candidate.labels) > 2 and len(current.labels) > 2
    check = PromotionCheck(
        candidate=candidate.ref, current=current.ref, judge=judge.name, golden=str(golden),
        statistic="quadratic-weighted kappa" if ordinal else "kappa",
        max_kappa_drop=max_kappa_drop, max_flip_rate=max_flip_rate)
    items, check.left_out = read_golden(golden, candidate.criterion, max_text_chars)
    check.items = len(items)
    on_both_menus = [i for i in items
                     if i.expected_label in candidate.labels and i.expected_label in current.labels]
    check.left_out["expected_label_not_on_both_menus"] = len(items) - len(on_both_menus)
    labels = _judge_labels(on_both_menus, [candidate, current], judge)
    compared = [i for i in on_both_menus if (i.trace.trace_id, candidate.version) in labels
                and (i.trace.trace_id, current.version) in labels]
    check.left_out["not_scored_by_both"] = len(on_both_menus) - len(compared)
    check.compared = len(compared)
    if compared:
        expected = [i.expected_label for i in compared]
        weights: KappaWeights = "quadratic" if ordinal else None
        judged = {rubric.version: [labels[(i.trace.trace_id, rubric.version)] for i in compared]
                  for rubric in (candidate, current)}
        check.candidate_kappa, check.current_kappa = (
            kappa_with_ci(judged[rubric.version], expected, labels_order(rubric), weights,
                          n_boot=n_boot, seed=seed)
            for rubric in (candidate, current))
        flipped = [i.trace.trace_id for i, a, b in
                   zip(compared, judged[candidate.version], judged[current.version], strict=True) if a != b]
        check.flip_rate = len(flipped) / len(compared)
        check.flipped_items = flipped[:MAX_LISTED_FLIPS]
    _decide(check, min_items)
    return check
