"""How many of a run's evaluations errored and why, and whether that fails `run` or `replay`.

A run fails (exit JUDGE_ERRORS_EXIT) when more than `max_share` of its evaluations (skipped rows
aside) errored. Without a `max_share`: any error fails a run whose judge never answered (no row
scored or unscored: a judge that is down or misconfigured), else more than half errored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.store import RubricSummary, Store
from evaluator.store.error_queries import error_reasons

JUDGE_ERRORS_EXIT = 3
DEFAULT_MAX_ERROR_SHARE = 0.5
MAX_REASON_CHARS = 160


@dataclass(frozen=True)
class RunErrors:
    attempted: int
    """Evaluations that were not skipped."""
    errors: int
    answered: int
    """Evaluations the judge replied to (scored or unscored)."""
    top_reasons: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, summaries: Sequence[RubricSummary],
           reasons: Sequence[tuple[str, int]] = ()) -> RunErrors:
        return cls(attempted=sum(s.evaluated - s.skipped for s in summaries),
                   errors=sum(s.errors for s in summaries),
                   answered=sum(s.scored + s.unscored for s in summaries),
                   top_reasons=tuple(reasons))

    @property
    def share(self) -> float:
        return self.errors / self.attempted if self.attempted else 0.0

    def too_many(self, max_share: float | None = None) -> bool:
        if not self.errors:
            return False
        if max_share is None:
            return self.answered == 0 or self.share > DEFAULT_MAX_ERROR_SHARE
        return self.share > max_share

    def lines(self) -> list[str]:
        """The summary's error lines (none when nothing errored)."""
        if not self.errors:
            return []
        head = (f"errors: {self.errors} of {self.attempted} evaluations ({self.share:.1%})"
                f"{', the judge never answered' if not self.answered else ''}; top reasons:")
        return [head, *(f"  {count:>6}  {_short(reason)}" for reason, count in self.top_reasons)]

    def failure(self, max_share: float | None = None) -> str:
        """One line saying why the command exits JUDGE_ERRORS_EXIT."""
        limit = ("any error when the judge never answered, else 50%" if max_share is None
                 else f"{max_share:.0%}")
        cause = f": {_short(self.top_reasons[0][0])}" if self.top_reasons else ""
        return (f"{self.errors} of {self.attempted} evaluations errored ({self.share:.1%}; limit "
                f"--max-error-share: {limit}){cause}; fix the judge, or rerun with --judge offline")

    def to_dict(self) -> dict[str, Any]:
        return {"attempted": self.attempted, "errors": self.errors, "answered": self.answered,
                "share": round(self.share, 4),
                "top_reasons": [{"reason": reason, "count": count}
                                for reason, count in self.top_reasons]}


def run_errors(db_path: Path, run_id: str, summaries: Sequence[RubricSummary]) -> RunErrors:
    """The errors of a stored run, its reasons read from the store."""
    if not any(s.errors for s in summaries):
        return RunErrors.of(summaries)
    with Store(db_path, read_only=True) as store:
        return RunErrors.of(summaries, error_reasons(store, run_id))


def _short(reason: str) -> str:
    one_line = " ".join(reason.split())
    return one_line if len(one_line) <= MAX_REASON_CHARS else one_line[:MAX_REASON_CHARS] + "..."
