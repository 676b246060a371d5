"""Summaries of stored evaluations, as a rich table for people and JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rich.text import Text

from evaluator.core.since import nothing_since
from evaluator.core.tables import compact_table
from evaluator.sampling.spend_check import SpendCheck, spend_checks
from evaluator.store import RubricSummary, Store
from evaluator.store.cost_queries import (
    SPEND_KEYS,
    RepeatAgreement,
    Spend,
    format_usd,
    repeat_agreement,
    service_spend_by_day,
    spend_by,
)
from evaluator.store.scope import PRODUCTION, Scope


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def summary_table(summaries: Sequence[RubricSummary], title: str = "Evaluation summary"):
    """Per rubric version and judge: counts, pass rates and one line per label; fits 80
    columns (one judge is named in the title, several under each rubric)."""
    judges = sorted({s.judge for s in summaries})
    if len(judges) == 1:
        title = f"{title} (judge {judges[0]})"
    table = compact_table(title, caption="n: evaluations; pass: share of scored ones passing; "
                                         "weighted: by sampling weight (estimates all traffic); "
                                         "mean: mean score (0-1)")
    table.add_column("rubric" if len(judges) == 1 else "rubric / judge", overflow="fold")
    for column in ("n", "pass", "weighted", "mean"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("not scored", overflow="fold")
    table.add_column("labels (scored)", overflow="fold")
    for s in summaries:
        labels = "\n".join(f"{label} {count}" for label, count in
                           sorted(s.label_counts.items(), key=lambda item: -item[1]))
        not_scored = "\n".join(f"{count} {what}" for count, what in (
            (s.unscored, "unscored"), (s.errors, "errored"), (s.skipped, "skipped")) if count)
        name = f"{s.rubric}@v{s.rubric_version}" + (f"\n{s.judge}" if len(judges) > 1 else "")
        table.add_row(
            Text(name), str(s.evaluated), _pct(s.pass_rate), _pct(s.weighted_pass_rate),
            "-" if s.mean_score is None else f"{s.mean_score:.2f}", not_scored or "-",
            Text(labels or "-"),
        )
    return table


def status_table(status_counts: dict[str, int], dead_letters: int):
    """Evaluations per status, and the dead letters (traces rejected on the way in)."""
    table = compact_table()
    table.add_column("status")
    table.add_column("count", justify="right")
    for status, count in status_counts.items():
        table.add_row(status, f"{count:,}")
    table.add_row("dead letters", f"{dead_letters:,}")
    return table


@dataclass(frozen=True)
class DatabaseReport:
    """What `evaluator report` shows of one scope; `to_dict()` is its JSON."""

    db: str
    scope: Scope
    status_counts: dict[str, int]
    dead_letters: int
    rubrics: list[RubricSummary]
    judge_spend: dict[str, list[Spend]]
    repeat_agreement: list[RepeatAgreement]
    spend_reconciliation: list[SpendCheck] | None
    judged_before: int = 0
    """Evaluations of the scope's runs judged before `scope.since` (left out of the report)."""

    @property
    def empty_note(self) -> str | None:
        """Why a report with `--since` shows nothing, or None."""
        if self.scope.since is None or any(self.status_counts.values()):
            return None
        return nothing_since(self.scope.since, self.judged_before)

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "scope": self.scope.to_dict(),
            "run_id": self.scope.run_id,
            "since": None if self.scope.since is None else self.scope.since.isoformat(),
            "judged_before_since": self.judged_before,
            "status_counts": self.status_counts,
            "dead_letters": self.dead_letters,
            "rubrics": [s.to_dict() for s in self.rubrics],
            "judge_spend": {group: [row.to_dict() for row in rows]
                            for group, rows in self.judge_spend.items()},
            "repeat_agreement": [row.to_dict() for row in self.repeat_agreement],
            "spend_reconciliation": None if self.spend_reconciliation is None else [
                check.to_dict() for check in self.spend_reconciliation],
        }


def database_report(db_path: Path, scope: Scope = PRODUCTION,
                    counted: dict[date, float] | None = None, lake: Path | None = None) -> DatabaseReport:
    """Everything `evaluator report` shows of one scope (production traffic unless told), read
    from a store another process may be writing. Dead letters are never part of a run.
    `counted`: the workers' spend counters per day, reconciled with the ledger
    (evaluator.sampling.spend_check). `lake`: read the Parquet lake's days too."""
    with Store(db_path, read_only=True, lake=lake) as store:
        store.check_scope(scope)
        return DatabaseReport(
            db=str(db_path), scope=scope, status_counts=store.status_counts(scope),
            dead_letters=store.dead_letter_count(), rubrics=store.rubric_summary(scope),
            judge_spend={group: spend_by(store, group, scope) for group in SPEND_KEYS},
            repeat_agreement=repeat_agreement(store, scope),
            spend_reconciliation=None if counted is None else spend_checks(
                counted, service_spend_by_day(store)),
            judged_before=store.judged_before(scope))


def judge_tables(report: DatabaseReport) -> list:
    """Judge spend per judge, rubric and day, and repeated verdicts' disagreement per rubric
    (none when the store has no judge calls)."""
    tables = []
    for group, rows in report.judge_spend.items():
        if not rows:
            continue
        table = compact_table(f"Judge spend by {group}")
        table.add_column(group, overflow="fold")
        for column in ("calls", "cached", "errors", "tokens\nin", "tokens\nout", "mean\nlatency",
                       "spend"):
            table.add_column(column, justify="right", no_wrap=True)
        for row in rows:
            latency = row.mean_latency_ms
            table.add_row(row.key, str(row.calls), str(row.cached), str(row.errors),
                          f"{row.input_tokens:,}", f"{row.output_tokens:,}",
                          "-" if latency is None else f"{latency:,.0f} ms", row.spend)
        tables.append(table)
    if report.repeat_agreement:
        table = compact_table("Repeated verdicts (panels, samples)")
        for column in ("rubric", "repeated", "disagreeing", "disagreement rate", "mean stability"):
            table.add_column(column, justify="right" if column != "rubric" else "left")
        for repeat in report.repeat_agreement:
            table.add_row(repeat.rubric, str(repeat.repeated), str(repeat.disagreeing),
                          _pct(repeat.disagreement_rate), f"{repeat.mean_stability:.2f}")
        tables.append(table)
    if report.spend_reconciliation:
        table = compact_table("Judge spend counted by the workers (Redis) vs recorded in the ledger")
        for column in ("day", "counted", "recorded", "not recorded"):
            table.add_column(column, justify="right" if column != "day" else "left")
        for check in report.spend_reconciliation:
            table.add_row(check.day.isoformat(), format_usd(check.counted_usd),
                          format_usd(check.recorded_usd), format_usd(check.unrecorded_usd))
        tables.append(table)
    return tables
