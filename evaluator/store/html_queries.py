"""SQL for the HTML report: a handful of grouped queries over evaluations and their traces.

Time: `since` selects evaluations by when they were judged (created_at), as every `--since`
over evaluations does. Charts over time use the trace's own start_time when the trace is stored
(that is when the app answered), else the evaluation's created_at. Judge cost per day uses created_at (that
is when the money was spent). Rates are weighted by sample_weight so they estimate all
traffic, not just the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from evaluator.store.scope import Scope

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

_WHEN = "coalesce(t.start_time, e.created_at)"
_SCORED = "e.status = 'scored'"


@dataclass(frozen=True)
class ReportRows:
    """The evaluations the report reads: a scope, and when given, only those judged since."""

    scope: Scope
    since: datetime | None

    @property
    def sql(self) -> str:
        """FROM and WHERE clauses over `e` (evaluations) and `t` (their traces)."""
        return (" FROM evaluations e LEFT JOIN traces t USING (trace_id)"
                f" WHERE {self.scope.judged_since(self.since).sql('e.run_id')}")

    @property
    def params(self) -> dict[str, Any]:
        return self.scope.judged_since(self.since).params()


@dataclass(frozen=True)
class ReportTotals:
    evaluations: int
    traces: int
    scored: int
    unscored: int
    errors: int
    skipped: int
    first: datetime | None
    last: datetime | None
    judges: str | None
    """Judge names, comma-separated."""
    pass_rate: float | None
    """Weighted by sample_weight, over scored rows."""


@dataclass(frozen=True)
class BucketRate:
    """One rubric in one time bucket (bucket k starts at origin + k * seconds)."""

    rubric: str
    bucket: int
    scored: int
    pass_rate: float | None
    mean_score: float | None


@dataclass(frozen=True)
class LabelCount:
    rubric: str
    label: str
    n: int
    weight: float
    mean_score: float | None


@dataclass(frozen=True)
class GroupRate:
    group: str
    rubric: str
    n: int
    pass_rate: float | None


@dataclass(frozen=True)
class DayCost:
    """Calls are judge calls made (attempts > 0, not cached); unknown = calls of unknown cost."""

    day: str
    cost_usd: float
    calls: int
    unknown: int


@dataclass(frozen=True)
class LowScored:
    trace_id: str
    rubric: str
    rubric_version: int
    judge: str
    label: str | None
    score: float
    reasoning: str | None
    when: datetime
    model: str | None
    prompt_version: str | None
    trace_json: str | None


def totals(store: Store, selected: ReportRows) -> ReportTotals:
    [row] = store.conn.execute(
        "SELECT count(*), count(DISTINCT e.trace_id), count(*) FILTER (WHERE e.status = 'scored'),"
        " count(*) FILTER (WHERE e.status = 'unscored'), count(*) FILTER (WHERE e.status = 'error'),"
        " count(*) FILTER (WHERE e.status = 'skipped'), min(" + _WHEN + "), max(" + _WHEN + "),"
        " string_agg(DISTINCT e.judge, ', ' ORDER BY e.judge),"
        " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) FILTER (WHERE " + _SCORED + ")"
        " / sum(e.sample_weight) FILTER (WHERE " + _SCORED + ")" + selected.sql,
        selected.params,
    ).fetchall()
    return ReportTotals(*row)


def bucket_rates(store: Store, selected: ReportRows, origin: int, seconds: int) -> list[BucketRate]:
    """Scored rows per rubric and time bucket, with weighted pass rate and mean score."""
    rows = store.conn.execute(
        f"SELECT e.rubric, CAST(floor((epoch({_WHEN}) - $origin) / $seconds) AS BIGINT), count(*),"
        " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) / sum(e.sample_weight),"
        " sum(e.sample_weight * e.score) / sum(e.sample_weight)"
        + selected.sql + f" AND {_SCORED} GROUP BY ALL ORDER BY ALL",
        {**selected.params, "origin": origin, "seconds": seconds},
    ).fetchall()
    return [BucketRate(*row) for row in rows]


def label_counts(store: Store, selected: ReportRows) -> list[LabelCount]:
    """Scored rows per rubric and label; per rubric, the best mean score first."""
    rows = store.conn.execute(
        "SELECT e.rubric, e.label, count(*), sum(e.sample_weight), avg(e.score)" + selected.sql
        + f" AND {_SCORED} AND e.label IS NOT NULL GROUP BY ALL ORDER BY e.rubric, avg(e.score) DESC",
        selected.params,
    ).fetchall()
    return [LabelCount(*row) for row in rows]


def pass_rate_by(store: Store, selected: ReportRows,
                 column: Literal["model", "prompt_version"]) -> list[GroupRate]:
    """Weighted pass rate per rubric and trace model or prompt version ('(unknown)' if none)."""
    assert column in ("model", "prompt_version")  # a column name, never user input
    rows = store.conn.execute(
        f"SELECT coalesce(t.{column}, '(unknown)'), e.rubric, count(*),"
        " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) / sum(e.sample_weight)"
        + selected.sql + f" AND {_SCORED} GROUP BY ALL ORDER BY ALL",
        selected.params,
    ).fetchall()
    return [GroupRate(*row) for row in rows]


def cost_per_day(store: Store, selected: ReportRows) -> list[DayCost]:
    rows = store.conn.execute(
        "SELECT strftime(date_trunc('day', e.created_at), '%Y-%m-%d'), coalesce(sum(e.cost_usd), 0),"
        " count(*), count(*) FILTER (WHERE e.cost_usd IS NULL)" + selected.sql
        + " AND e.attempts > 0 AND NOT e.cached GROUP BY ALL ORDER BY 1",
        selected.params,
    ).fetchall()
    return [DayCost(day, float(cost), calls, unknown) for day, cost, calls, unknown in rows]


def lowest_scored(store: Store, selected: ReportRows, limit: int) -> list[LowScored]:
    """The lowest-scored evaluations, one per trace, with their trace. Each trace's lowest
    (score, rubric) is found without the trace text, which is read for the chosen few only."""
    since = selected.scope.judged_since(selected.since)
    rows = store.conn.execute(
        "WITH worst AS (SELECT e.trace_id, min(e.score) AS score,"
        " arg_min({'id': e.evaluation_id, 'weight': e.sample_weight}, (e.score, e.rubric)) AS pick"
        f" FROM evaluations e WHERE {since.sql('e.run_id')} AND {_SCORED} GROUP BY e.trace_id"
        " ORDER BY score, struct_extract(pick, 'weight') DESC, e.trace_id LIMIT $limit)"
        " SELECT e.trace_id, e.rubric, e.rubric_version, e.judge, e.label, e.score, e.reasoning,"
        f" {_WHEN}, t.model, t.prompt_version, t.trace_json"
        " FROM worst w JOIN evaluations e ON e.evaluation_id = struct_extract(w.pick, 'id')"
        " LEFT JOIN traces t ON t.trace_id = e.trace_id"
        " ORDER BY e.score, e.sample_weight DESC, e.trace_id",
        {**since.params(), "limit": limit},
    ).fetchall()
    return [LowScored(*row) for row in rows]
