"""Summaries of stored evaluations, as a rich table for people and JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluator.store import RubricSummary, Store


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def summary_table(summaries: Sequence[RubricSummary], title: str = "Evaluation summary"):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("rubric", "judge", "evaluated", "pass rate", "weighted", "mean score",
                   "labels (scored)", "unscored", "errors", "skipped"):
        table.add_column(column, justify="right" if column not in {"rubric", "judge", "labels (scored)"} else "left")
    for s in summaries:
        labels = ", ".join(f"{label} {count}" for label, count in sorted(s.label_counts.items()))
        table.add_row(
            f"{s.rubric}@v{s.rubric_version}", s.judge, str(s.evaluated), _pct(s.pass_rate),
            _pct(s.weighted_pass_rate), "-" if s.mean_score is None else f"{s.mean_score:.2f}",
            labels or "-", str(s.unscored), str(s.errors), str(s.skipped),
        )
    return table


def database_report(db_path: Path, run_id: str | None = None) -> dict[str, Any]:
    """Everything `evaluator report` shows, read from a store another process may be writing."""
    with Store(db_path, read_only=True) as store:
        summaries = store.rubric_summary(run_id=run_id)
        return {
            "db": str(db_path),
            "run_id": run_id,
            "status_counts": store.status_counts(),
            "dead_letters": store.dead_letter_count(),
            "rubrics": [s.to_dict() for s in summaries],
            "_summaries": summaries,
        }
