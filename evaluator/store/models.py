"""Plain values the store returns (it accepts the records of evaluator.core: Evaluation, DeadLetter,
StoredTrace, JudgeCall)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class WriteResult:
    """Rows actually inserted per table (duplicates of stored keys are not counted)."""

    evaluations: int = 0
    traces: int = 0
    dead_letters: int = 0
    judge_calls: int = 0
    new_evaluation_ids: frozenset[str] = frozenset()
    """The evaluations this write stored (a redelivered one is not among them)."""

    @property
    def total(self) -> int:
        return self.evaluations + self.traces + self.dead_letters + self.judge_calls


@dataclass
class RubricSummary:
    """Counts and rates for one (rubric, rubric_version, judge); rates are over scored rows."""

    rubric: str
    rubric_version: int
    judge: str
    evaluated: int
    scored: int
    passed: int
    pass_rate: float | None
    weighted_pass_rate: float | None
    """sum(sample_weight * passed) / sum(sample_weight): corrects for over-sampled errors."""
    mean_score: float | None
    label_counts: dict[str, int] = field(default_factory=dict)
    unscored: int = 0
    errors: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs table, JSON columns decoded."""

    run_id: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    params: dict[str, Any]
    manifest: dict[str, Any] | None
    summary: dict[str, Any] | None
