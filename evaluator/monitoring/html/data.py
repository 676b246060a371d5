"""What the HTML report shows: the store's report queries (store.html_queries), shaped for
the page: time buckets chosen, label shares computed, worst examples with their trace text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from evaluator.core.records import Trace
from evaluator.core.since import nothing_since
from evaluator.store import Store
from evaluator.store import html_queries as queries
from evaluator.store.html_queries import ReportRows, Traffic, Verdicts
from evaluator.store.scope import Scope

WORST_EXAMPLES = 12


@dataclass
class Bucketed:
    """Per rubric and time bucket: weighted pass rate, weighted mean score, scored count."""

    unit: str
    buckets: list[datetime] = field(default_factory=list)
    pass_rate: dict[str, list[float | None]] = field(default_factory=dict)
    mean_score: dict[str, list[float | None]] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class ReportData:
    generated_at: datetime
    db: str
    since: datetime | None
    scope: Scope
    totals: dict[str, Any]
    rubrics: list[str]
    over_time: Bucketed
    label_mix: dict[str, list[tuple[str, float, int, float]]]
    """rubric -> (label, weighted share, count, mean score of the label), best label first."""
    by_model: dict[str, dict[str, tuple[float | None, int]]]
    by_prompt_version: dict[str, dict[str, tuple[float | None, int]]]
    cost_per_day: list[tuple[str, float, int, int]]
    worst: list[dict[str, Any]]
    judged_before: int = 0
    """Evaluations of the scope judged before `since` (left out)."""

    @property
    def empty_note(self) -> str | None:
        """Why a report with `since` shows nothing, or None."""
        if self.since is None or self.totals["evaluations"]:
            return None
        return nothing_since(self.since, self.judged_before)


BUCKETS = ((900, "15 minutes"), (3600, "hour"), (3 * 3600, "3 hours"), (6 * 3600, "6 hours"),
           (12 * 3600, "12 hours"), (86400, "day"), (7 * 86400, "week"))
MAX_POINTS = 100
MIN_PER_BUCKET = 15
"""Scored evaluations per rubric a bucket should hold, so one point is not one trace's noise."""
MONDAY = 4 * 86400
"""1970-01-05 was a Monday: weekly buckets start on Mondays."""


def bucket_size(first: datetime, last: datetime, scored_per_rubric: float) -> tuple[int, str]:
    """The finest bucket with at most MAX_POINTS points and about MIN_PER_BUCKET scores each."""
    span = max((last - first).total_seconds(), 1.0)
    fitting = [(s, name) for s, name in BUCKETS if span / s <= MAX_POINTS] or [BUCKETS[-1]]
    for seconds, name in fitting:
        if scored_per_rubric / (span / seconds + 1) >= MIN_PER_BUCKET:
            return seconds, name
    several = [b for b in fitting if span / b[0] >= 3]
    return several[-1] if several else fitting[0]


def over_time(store: Store, rolled: Traffic, first: datetime | None,
              last: datetime | None, scored_per_rubric: float) -> Bucketed:
    if first is None or last is None:
        return Bucketed("hour")
    seconds, unit = bucket_size(first, last, scored_per_rubric)
    align = MONDAY if seconds == 7 * 86400 else 0
    origin = (int(first.timestamp()) - align) // seconds * seconds + align
    count = int((last.timestamp() - origin) // seconds) + 1
    result = Bucketed(unit, [datetime.fromtimestamp(origin + k * seconds, UTC)
                             for k in range(count)])
    for row in queries.bucket_rates(store, rolled, origin, seconds):
        k = row.bucket
        if not 0 <= k < count:
            continue
        for target, value in ((result.pass_rate, row.pass_rate), (result.mean_score, row.mean_score)):
            target.setdefault(row.rubric, [None] * count)[k] = value
        result.counts.setdefault(row.rubric, [0] * count)[k] = row.scored
    return result


def label_mix(store: Store, counted: Verdicts) -> dict[str, list[tuple[str, float, int, float]]]:
    rows = queries.label_counts(store, counted)
    mix: dict[str, list[tuple[str, float, int, float]]] = {}
    weights: dict[str, float] = {}
    for row in rows:
        weights[row.rubric] = weights.get(row.rubric, 0.0) + row.weight
    for row in rows:
        mix.setdefault(row.rubric, []).append(
            (row.label, row.weight / weights[row.rubric], row.n, row.mean_score or 0.0))
    return mix


def pass_rate_by(store: Store, rolled: Traffic, column: Literal["model", "prompt_version"]
                 ) -> dict[str, dict[str, tuple[float | None, int]]]:
    """{group value: {rubric: (weighted pass rate, n)}} by trace model or prompt version."""
    grouped: dict[str, dict[str, tuple[float | None, int]]] = {}
    for row in queries.pass_rate_by(store, rolled, column):
        grouped.setdefault(row.group, {})[row.rubric] = (row.pass_rate, row.n)
    return grouped


def cost_per_day(store: Store, selected: ReportRows) -> list[tuple[str, float, int, int]]:
    """(day, known cost, judge calls, calls of unknown cost); calls = attempts > 0, not cached."""
    return [(d.day, d.cost_usd, d.calls, d.unknown) for d in queries.cost_per_day(store, selected)]


def worst_examples(store: Store, selected: ReportRows,
                   limit: int = WORST_EXAMPLES) -> list[dict[str, Any]]:
    """The lowest-scored evaluations (one per trace), with the judge's reasoning and the trace."""
    examples = []
    for row in queries.lowest_scored(store, selected, limit):
        trace = Trace.model_validate_json(row.trace_json) if row.trace_json else None
        examples.append({
            "trace_id": row.trace_id, "rubric": f"{row.rubric}@v{row.rubric_version}",
            "judge": row.judge, "label": row.label, "score": row.score,
            "reasoning": row.reasoning or "", "when": row.when, "model": row.model,
            "prompt_version": row.prompt_version,
            "question": trace.question if trace else "", "output": trace.output if trace else "",
        })
    return examples


def collect(store: Store, db: str, since: datetime | None, scope: Scope, now: datetime) -> ReportData:
    selected = ReportRows(scope, since)
    rolled, counted = queries.traffic(store, selected), queries.verdicts(store, selected)
    summary = asdict(queries.totals(store, selected, rolled, counted))
    mix = label_mix(store, counted)
    per_rubric = summary["scored"] / max(1, len(mix))
    return ReportData(
        generated_at=now, db=db, since=since, scope=scope, totals=summary, rubrics=sorted(mix),
        over_time=over_time(store, rolled, summary["first"], summary["last"], per_rubric),
        label_mix=mix, by_model=pass_rate_by(store, rolled, "model"),
        by_prompt_version=pass_rate_by(store, rolled, "prompt_version"),
        cost_per_day=cost_per_day(store, selected), worst=worst_examples(store, selected),
        judged_before=store.judged_before(scope.judged_since(since)),
    )
