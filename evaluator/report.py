"""Summaries of stored evaluations, as a rich table for people and JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluator.store import RubricSummary, Store


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def summary_table(summaries: Sequence[RubricSummary], title: str = "Evaluation summary"):
    """Per rubric version and judge: counts, pass rates and one line per label."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("rubric", no_wrap=True)
    table.add_column("judge", no_wrap=True)
    for column in ("evaluated", "pass rate", "weighted", "mean score", "unscored", "errors", "skipped"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("labels (scored)", no_wrap=True)
    for s in summaries:
        labels = "\n".join(f"{label} {count}" for label, count in
                           sorted(s.label_counts.items(), key=lambda item: -item[1]))
        table.add_row(
            f"{s.rubric}@v{s.rubric_version}", s.judge, str(s.evaluated), _pct(s.pass_rate),
            _pct(s.weighted_pass_rate), "-" if s.mean_score is None else f"{s.mean_score:.2f}",
            str(s.unscored), str(s.errors), str(s.skipped), labels or "-",
        )
    return table


def console():
    """A console at least 160 columns wide, so tables stay readable when piped."""
    from rich.console import Console

    probe = Console()
    return Console(width=max(probe.width, 160)) if not probe.is_terminal else probe


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
