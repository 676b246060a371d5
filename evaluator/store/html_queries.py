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

from evaluator.store.cost_queries import utc_day, utc_day_text
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
    def evaluations_sql(self) -> str:
        """FROM and WHERE clauses over `e` alone, for what needs no trace column (a trace is
        stored once, so the join adds no rows: leaving it out changes nothing but the cost)."""
        return f" FROM evaluations e WHERE {self.scope.judged_since(self.since).sql('e.run_id')}"

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
    """Apart: the counts, the distinct traces and judges, and the span (over the traces). DuckDB
    computes several DISTINCT aggregates of one query, or its join, for every aggregate of it:
    one query took twice as long as the four."""
    def one(select: str, source: str) -> tuple:
        [row] = store.conn.execute(f"SELECT {select}{source}", selected.params).fetchall()
        return tuple(row)

    counts = one("count(*), count(*) FILTER (WHERE e.status = 'scored'),"
                 " count(*) FILTER (WHERE e.status = 'unscored'),"
                 " count(*) FILTER (WHERE e.status = 'error'),"
                 " count(*) FILTER (WHERE e.status = 'skipped'),"
                 f" sum(e.sample_weight * CAST(e.passed AS DOUBLE)) FILTER (WHERE {_SCORED})"
                 f" / sum(e.sample_weight) FILTER (WHERE {_SCORED})", selected.evaluations_sql)
    (traces,) = one("count(DISTINCT e.trace_id)", selected.evaluations_sql)
    (judges,) = one("string_agg(judge, ', ' ORDER BY judge) FROM (SELECT DISTINCT e.judge",
                    selected.evaluations_sql + ")")
    first, last = one(f"min({_WHEN}), max({_WHEN})", selected.sql)
    evaluations, scored, unscored, errors, skipped, pass_rate = counts
    return ReportTotals(evaluations, traces, scored, unscored, errors, skipped, first, last,
                        judges, pass_rate)


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
        "SELECT e.rubric, e.label, count(*), sum(e.sample_weight), avg(e.score)"
        + selected.evaluations_sql
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
        f"SELECT {utc_day_text('day')}, cost, calls, unknown FROM (SELECT {utc_day('e.created_at')} AS day,"
        " coalesce(sum(e.cost_usd), 0) AS cost, count(*) AS calls,"
        " count(*) FILTER (WHERE e.cost_usd IS NULL) AS unknown" + selected.evaluations_sql
        + " AND e.attempts > 0 AND NOT e.cached GROUP BY ALL) ORDER BY 1",
        selected.params,
    ).fetchall()
    return [DayCost(day, float(cost), calls, unknown) for day, cost, calls, unknown in rows]


def lowest_scored(store: Store, selected: ReportRows, limit: int) -> list[LowScored]:
    """The lowest-scored evaluations, one per trace (its lowest (score, rubric)), lowest first,
    then by weight (descending) and trace id; with their traces, looked up by key (a join would
    read every evaluation's reasoning and every trace's text)."""
    since = selected.scope.judged_since(selected.since)
    where = f" FROM evaluations e WHERE {since.sql('e.run_id')} AND {_SCORED}"
    rows_taken = 4 * limit
    while True:
        # The first rows in (score, weight desc, trace) order hold each of the `limit` lowest
        # traces' pick once `limit` of the traces among them rank no later than the last row:
        # a trace none of whose rows is among them ranks after that row.
        first = store.conn.execute(
            f"SELECT e.trace_id, e.score, e.sample_weight{where}"
            " ORDER BY e.score, e.sample_weight DESC, e.trace_id LIMIT $n",
            {**since.params(), "n": rows_taken}).fetchall()
        picks = store.conn.execute(
            "SELECT e.trace_id, min(e.score) AS score, arg_min(e.evaluation_id, (e.score, e.rubric)),"
            f" arg_min(e.sample_weight, (e.score, e.rubric)) AS weight{where}"
            " AND e.trace_id IN (SELECT unnest($ids)) GROUP BY e.trace_id"
            " ORDER BY score, weight DESC, e.trace_id LIMIT $limit",
            {**since.params(), "ids": sorted({row[0] for row in first}),
             "limit": limit}).fetchall()
        last_pick, last_row = (picks[-1] if picks else None), first[-1] if first else None
        if len(first) < rows_taken or (len(picks) == limit and last_pick and last_row and (
                _rank(last_pick[0], last_pick[1], last_pick[3])
                <= _rank(last_row[0], last_row[1], last_row[2]))):
            break
        rows_taken *= 4
    chosen = store.conn.execute(
        "SELECT trace_id, rubric, rubric_version, judge, label, score, reasoning, created_at,"
        " sample_weight FROM evaluations WHERE evaluation_id IN (SELECT unnest($ids))",
        {"ids": [pick[2] for pick in picks]}).fetchall()
    traces = {row[0]: row[1:] for row in store.conn.execute(
        "SELECT trace_id, start_time, model, prompt_version, trace_json FROM traces"
        " WHERE trace_id IN (SELECT unnest($ids))", {"ids": [row[0] for row in chosen]}).fetchall()}
    rows = []
    for (trace_id, rubric, version, judge, label, score, reasoning, created_at,
         _) in sorted(chosen, key=lambda row: _rank(row[0], row[5], row[8])):
        start_time, model, prompt_version, trace_json = traces.get(trace_id, (None,) * 4)
        rows.append(LowScored(trace_id, rubric, version, judge, label, score, reasoning,
                              start_time or created_at, model, prompt_version, trace_json))
    return rows


def _rank(trace_id: str, score: float | None, weight: float) -> tuple:
    """The report's order of lowest-scored rows: score (none last), weight descending, trace."""
    return (score is None, score or 0.0, -weight, trace_id)
