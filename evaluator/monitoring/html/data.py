"""What the HTML report shows, read from the store in a handful of grouped queries.

Time: charts over time use the trace's own start_time when the trace is stored (that is when
the app answered), else the evaluation's created_at. Judge cost per day uses created_at (that
is when the money was spent). Rates are weighted by sample_weight so they estimate all
traffic, not just the sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb

from evaluator.core.records import Trace
from evaluator.store.scope import Scope

WORST_EXAMPLES = 12

_WHEN = "coalesce(t.start_time, e.created_at)"
_SCORED = "e.status = 'scored'"


@dataclass(frozen=True)
class Rows:
    """The evaluations the report reads: a scope, and a start time when given."""

    scope: Scope
    since: datetime | None

    @property
    def sql(self) -> str:
        """FROM and WHERE clauses over `e` (evaluations) and `t` (their traces)."""
        return (" FROM evaluations e LEFT JOIN traces t USING (trace_id)"
                f" WHERE {self.scope.sql('e.run_id')}"
                f" AND ($since IS NULL OR {_WHEN} >= $since)")

    @property
    def params(self) -> dict[str, Any]:
        return {**self.scope.params(), "since": self.since}


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


def totals(conn: duckdb.DuckDBPyConnection, selected: Rows) -> dict[str, Any]:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT e.trace_id), count(*) FILTER (WHERE e.status = 'scored'),"
        " count(*) FILTER (WHERE e.status = 'unscored'), count(*) FILTER (WHERE e.status = 'error'),"
        " count(*) FILTER (WHERE e.status = 'skipped'), min(" + _WHEN + "), max(" + _WHEN + "),"
        " string_agg(DISTINCT e.judge, ', ' ORDER BY e.judge),"
        " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) FILTER (WHERE " + _SCORED + ")"
        " / sum(e.sample_weight) FILTER (WHERE " + _SCORED + ")" + selected.sql,
        selected.params,
    ).fetchone()
    keys = ("evaluations", "traces", "scored", "unscored", "errors", "skipped", "first", "last",
            "judges", "pass_rate")
    return dict(zip(keys, row))


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


def over_time(conn: duckdb.DuckDBPyConnection, selected: Rows, first: datetime | None,
              last: datetime | None, scored_per_rubric: float) -> Bucketed:
    if first is None or last is None:
        return Bucketed("hour")
    seconds, unit = bucket_size(first, last, scored_per_rubric)
    align = MONDAY if seconds == 7 * 86400 else 0
    origin = (int(first.timestamp()) - align) // seconds * seconds + align
    count = int((last.timestamp() - origin) // seconds) + 1
    rows = conn.execute(
        f"SELECT e.rubric, CAST(floor((epoch({_WHEN}) - $origin) / $seconds) AS BIGINT), count(*),"
        " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) / sum(e.sample_weight),"
        " sum(e.sample_weight * e.score) / sum(e.sample_weight)"
        + selected.sql + f" AND {_SCORED} GROUP BY ALL ORDER BY ALL",
        {**selected.params, "origin": origin, "seconds": seconds},
    ).fetchall()
    result = Bucketed(unit, [datetime.fromtimestamp(origin + k * seconds, timezone.utc)
                             for k in range(count)])
    for rubric, k, n, pass_rate, mean_score in rows:
        if not 0 <= k < count:
            continue
        for target, value in ((result.pass_rate, pass_rate), (result.mean_score, mean_score)):
            target.setdefault(rubric, [None] * count)[k] = value
        result.counts.setdefault(rubric, [0] * count)[k] = n
    return result


def label_mix(conn: duckdb.DuckDBPyConnection, selected: Rows
              ) -> dict[str, list[tuple[str, float, int, float]]]:
    rows = conn.execute(
        "SELECT e.rubric, e.label, count(*), sum(e.sample_weight), avg(e.score)" + selected.sql
        + f" AND {_SCORED} AND e.label IS NOT NULL GROUP BY ALL ORDER BY e.rubric, avg(e.score) DESC",
        selected.params,
    ).fetchall()
    mix: dict[str, list[tuple[str, float, int, float]]] = {}
    weights: dict[str, float] = {}
    for rubric, _label, _n, weight, _score in rows:
        weights[rubric] = weights.get(rubric, 0.0) + weight
    for rubric, label, n, weight, score in rows:
        mix.setdefault(rubric, []).append((label, weight / weights[rubric], n, score or 0.0))
    return mix


def pass_rate_by(conn: duckdb.DuckDBPyConnection, selected: Rows, column: str
                 ) -> dict[str, dict[str, tuple[float | None, int]]]:
    """{group value: {rubric: (weighted pass rate, n)}} by trace model or prompt version."""
    assert column in ("model", "prompt_version")  # a column name, never user input
    rows = conn.execute(
        f"SELECT coalesce(t.{column}, '(unknown)'), e.rubric, count(*),"
        " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) / sum(e.sample_weight)"
        + selected.sql + f" AND {_SCORED} GROUP BY ALL ORDER BY ALL",
        selected.params,
    ).fetchall()
    grouped: dict[str, dict[str, tuple[float | None, int]]] = {}
    for group, rubric, n, rate in rows:
        grouped.setdefault(group, {})[rubric] = (rate, n)
    return grouped


def cost_per_day(conn: duckdb.DuckDBPyConnection, selected: Rows
                 ) -> list[tuple[str, float, int, int]]:
    """(day, known cost, judge calls, calls of unknown cost); calls = attempts > 0, not cached."""
    rows = conn.execute(
        "SELECT strftime(date_trunc('day', e.created_at), '%Y-%m-%d'), coalesce(sum(e.cost_usd), 0),"
        " count(*), count(*) FILTER (WHERE e.cost_usd IS NULL)" + selected.sql
        + " AND e.attempts > 0 AND NOT e.cached GROUP BY ALL ORDER BY 1",
        selected.params,
    ).fetchall()
    return [(day, float(cost), calls, unknown) for day, cost, calls, unknown in rows]


def worst_examples(conn: duckdb.DuckDBPyConnection, selected: Rows,
                   limit: int = WORST_EXAMPLES) -> list[dict[str, Any]]:
    """The lowest-scored evaluations (one per trace), with the judge's reasoning and the trace."""
    rows = conn.execute(
        "SELECT e.trace_id, e.rubric, e.rubric_version, e.judge, e.label, e.score, e.reasoning,"
        f" {_WHEN}, t.model, t.prompt_version, t.trace_json" + selected.sql + f" AND {_SCORED}"
        " QUALIFY row_number() OVER (PARTITION BY e.trace_id ORDER BY e.score, e.rubric) = 1"
        " ORDER BY e.score, e.sample_weight DESC, e.trace_id LIMIT $limit",
        {**selected.params, "limit": limit},
    ).fetchall()
    examples = []
    for (trace_id, rubric, version, judge, label, score, reasoning, when, model, prompt_version,
         trace_json) in rows:
        trace = Trace.model_validate_json(trace_json) if trace_json else None
        examples.append({
            "trace_id": trace_id, "rubric": f"{rubric}@v{version}", "judge": judge, "label": label,
            "score": score, "reasoning": reasoning or "", "when": when, "model": model,
            "prompt_version": prompt_version,
            "question": trace.question if trace else "", "output": trace.output if trace else "",
        })
    return examples


def collect(conn: duckdb.DuckDBPyConnection, db: str, since: datetime | None,
            scope: Scope, now: datetime) -> ReportData:
    selected = Rows(scope, since)
    summary = totals(conn, selected)
    mix = label_mix(conn, selected)
    per_rubric = summary["scored"] / max(1, len(mix))
    return ReportData(
        generated_at=now, db=db, since=since, scope=scope, totals=summary, rubrics=sorted(mix),
        over_time=over_time(conn, selected, summary["first"], summary["last"], per_rubric),
        label_mix=mix, by_model=pass_rate_by(conn, selected, "model"),
        by_prompt_version=pass_rate_by(conn, selected, "prompt_version"),
        cost_per_day=cost_per_day(conn, selected), worst=worst_examples(conn, selected),
    )
