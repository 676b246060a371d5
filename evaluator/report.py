"""Summaries of stored evaluations, as a rich table for people and JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from evaluator.store import RubricSummary, Store
from evaluator.spend_check import spend_checks
from evaluator.store.cost_queries import (
    SPEND_KEYS,
    format_usd,
    repeat_agreement,
    service_spend_by_day,
    spend_by,
)
from evaluator.store.scope import PRODUCTION, Scope


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


def database_report(db_path: Path, scope: Scope = PRODUCTION,
                    counted: dict[date, float] | None = None) -> dict[str, Any]:
    """Everything `evaluator report` shows of one scope (production traffic unless told), read
    from a store another process may be writing. Dead letters are never part of a run.
    `counted`: the workers' spend counters per day, reconciled with the ledger
    (evaluator.spend_check)."""
    with Store(db_path, read_only=True) as store:
        store.check_scope(scope)
        summaries = store.rubric_summary(scope)
        return {
            "db": str(db_path),
            "scope": scope.to_dict(),
            "run_id": scope.run_id,
            "status_counts": store.status_counts(scope),
            "dead_letters": store.dead_letter_count(),
            "rubrics": [s.to_dict() for s in summaries],
            "judge_spend": {group: [row.to_dict() for row in spend_by(store.conn, group, scope)]
                            for group in SPEND_KEYS},
            "repeat_agreement": [row.to_dict() for row in repeat_agreement(store.conn, scope)],
            "spend_reconciliation": None if counted is None else [
                check.to_dict()
                for check in spend_checks(counted, service_spend_by_day(store.conn))],
            "_summaries": summaries,
        }


def judge_tables(report: dict[str, Any]) -> list:
    """Judge spend per judge, rubric and day, and repeated verdicts' disagreement per rubric
    (none when the store has no judge calls)."""
    from rich.table import Table

    tables = []
    for group, rows in report["judge_spend"].items():
        if not rows:
            continue
        table = Table(title=f"Judge spend by {group}", title_justify="left")
        table.add_column(group, no_wrap=True)
        for column in ("calls", "cached", "errors", "tokens in", "tokens out", "mean latency",
                       "spend"):
            table.add_column(column, justify="right", no_wrap=True)
        for row in rows:
            latency = row["mean_latency_ms"]
            table.add_row(row["key"], str(row["calls"]), str(row["cached"]), str(row["errors"]),
                          f"{row['input_tokens']:,}", f"{row['output_tokens']:,}",
                          "-" if latency is None else f"{latency:,.0f} ms", row["spend"])
        tables.append(table)
    if report["repeat_agreement"]:
        table = Table(title="Repeated verdicts (panels, samples)", title_justify="left")
        for column in ("rubric", "repeated", "disagreeing", "disagreement rate", "mean stability"):
            table.add_column(column, justify="right" if column != "rubric" else "left")
        for row in report["repeat_agreement"]:
            table.add_row(row["rubric"], str(row["repeated"]), str(row["disagreeing"]),
                          _pct(row["disagreement_rate"]), f"{row['mean_stability']:.2f}")
        tables.append(table)
    if report.get("spend_reconciliation"):
        table = Table(title="Judge spend counted by the workers (Redis) vs recorded in the ledger",
                      title_justify="left")
        for column in ("day", "counted", "recorded", "not recorded"):
            table.add_column(column, justify="right" if column != "day" else "left")
        for row in report["spend_reconciliation"]:
            table.add_row(row["day"], format_usd(row["counted_usd"]),
                          format_usd(row["recorded_usd"]), format_usd(row["unrecorded_usd"]))
        tables.append(table)
    return tables
