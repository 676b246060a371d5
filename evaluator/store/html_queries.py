"""SQL for the HTML report: a handful of grouped queries over evaluations and their traces.

Time: `since` selects evaluations by when they were judged (created_at), as every `--since`
over evaluations does. Charts over time use the trace's own start_time when the trace is stored
(that is when the app answered), else the evaluation's created_at. Judge cost per day uses created_at (that
is when the money was spent). Rates are weighted by sample_weight so they estimate all
traffic, not just the sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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

    def traffic_sql(self, part: int, parts: int, groups: str) -> str:
        """A FROM clause: the selected evaluations `e` whose trace id hashes to `part` of `parts`
        (all of them when `parts` is 1) fully joined to `t`, the stored traces of that part,
        each with its start time and the number of its (model, prompt version) pair in the
        table `groups` (its column `trace_group`): the join's hash table holds two numbers a
        trace beside its id, not the two strings. A trace none of them judged has a row of its
        own (its `e` columns NULL): how the join counts the distinct traces judged."""
        of_part = "true" if parts == 1 else f"hash(trace_id) % {int(parts)} = {int(part)}"
        return (f" FROM (SELECT *{self.evaluations_sql} AND {of_part.replace('trace_id', 'e.trace_id')})"
                " e FULL JOIN (SELECT trace_id, g.trace_group, start_time"
                f" FROM traces JOIN {groups} g ON traces.model IS NOT DISTINCT FROM g.model"
                " AND traces.prompt_version IS NOT DISTINCT FROM g.prompt_version"
                f" WHERE {of_part}) t USING (trace_id)")

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


QUARTER_S = 900
"""The grain of `Traffic`: every chart bucket is a whole number of quarter hours and starts on one."""
TRACE_JOIN_BYTES = 200
"""DuckDB memory a stored trace takes in the hash table of the evaluations' join to their traces
(its id, start time and group number; at 4,000,000 evaluations, 1,000,000 traces: the join fit in
a 200 MB limit, not in 185 MB)."""


@dataclass(frozen=True)
class Traffic:
    """The selected evaluations joined to their traces once, counted in a temporary table per
    rubric, scored or not, trace model, prompt version and quarter hour of when the app answered
    (a group can have a row per pass of the join: readers sum). The totals' span, the rates over
    time and the rates by model and prompt version are sums over its rows."""

    table: str = "_report_traffic"
    groups: str = "_report_trace_groups"
    """Each distinct (model, prompt version) of the stored traces, numbered (`trace_group`)."""
    traces: int | None = None
    """How many distinct traces the selected evaluations judged, when every one of those traces
    is stored (the stored traces less those the join found no evaluation for); else None."""


def join_passes(store: Store, traces: int) -> int:
    """How many passes the join takes, each over the traces whose id hashes to one part, so that
    each pass's hash table fits in the store's memory limit: one that does not spills to disk
    (at 4,000,000 evaluations and the default 200 MB, a join that spilled cost twice the CPU)."""
    if not store.memory_limit_mb:
        return 1
    return max(1, math.ceil(traces * TRACE_JOIN_BYTES / (store.memory_limit_mb * 2**20)))


def traffic(store: Store, selected: ReportRows, passes: int | None = None) -> Traffic:
    """The join counts the traces' (model, prompt version) by number; the numbers become the
    names again in the rollup's few rows."""
    made = Traffic()
    (stored,) = store.conn.execute("SELECT count(*) FROM traces").fetchall()[0]
    passes = passes or join_passes(store, stored)
    store.conn.execute(f"CREATE OR REPLACE TEMP TABLE {made.groups} AS SELECT row_number() OVER ()"
                       " AS trace_group, model, prompt_version"
                       " FROM (SELECT DISTINCT model, prompt_version FROM traces)")
    numbered = f"{made.table}_numbered"
    for part in range(passes):
        select = (f"SELECT e.rubric, {_SCORED} AS scored, t.trace_group,"
                  f" CAST(floor(epoch({_WHEN}) / {QUARTER_S}) AS BIGINT) AS quarter, count(*) AS n,"
                  " sum(e.sample_weight * CAST(e.passed AS DOUBLE)) AS passed_weight,"
                  " sum(e.sample_weight) AS weight, sum(e.sample_weight * e.score) AS score_weight,"
                  f" min({_WHEN}) AS first, max({_WHEN}) AS last"
                  + selected.traffic_sql(part, passes, made.groups) + " GROUP BY ALL")
        store.conn.execute(f"CREATE OR REPLACE TEMP TABLE {numbered} AS {select}" if part == 0
                           else f"INSERT INTO {numbered} {select}", selected.params)
    # an evaluation's rubric is never NULL: a row without one is a trace none of them judged
    [(unjudged, without_trace)] = store.conn.execute(
        "SELECT coalesce(sum(n) FILTER (WHERE rubric IS NULL), 0),"
        " coalesce(sum(n) FILTER (WHERE rubric IS NOT NULL AND trace_group IS NULL), 0)"
        f" FROM {numbered}").fetchall()
    store.conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {made.table} AS SELECT r.rubric, r.scored,"
        " coalesce(g.model, '(unknown)') AS model,"
        " coalesce(g.prompt_version, '(unknown)') AS prompt_version, r.quarter, r.n,"
        " r.passed_weight, r.weight, r.score_weight, r.first, r.last"
        f" FROM {numbered} r LEFT JOIN {made.groups} g USING (trace_group)"
        " WHERE r.rubric IS NOT NULL")
    store.conn.execute(f"DROP TABLE {numbered}")
    return replace(made, traces=None if without_trace else stored - unjudged)


@dataclass(frozen=True)
class Verdicts:
    """The selected evaluations counted in a temporary table per rubric, status, label and judge
    (a few rows): the totals' counts, pass rate and judges and the label mix are sums over it
    (one scan of the evaluations instead of three)."""

    table: str = "_report_verdicts"


def verdicts(store: Store, selected: ReportRows) -> Verdicts:
    made = Verdicts()
    store.conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {made.table} AS SELECT e.rubric, e.status, e.label, e.judge,"
        " count(*) AS n, sum(e.sample_weight * CAST(e.passed AS DOUBLE)) AS passed_weight,"
        " sum(e.sample_weight) AS weight, sum(e.score) AS score_sum, count(e.score) AS scores"
        + selected.evaluations_sql + " GROUP BY ALL", selected.params)
    return made


def totals(store: Store, selected: ReportRows, rolled: Traffic, counted: Verdicts) -> ReportTotals:
    """The counts, pass rate and judges from `counted`; the distinct traces and the span from
    `rolled` (the traces counted apart when some evaluations have no stored trace)."""
    def one(sql: str, params: dict[str, Any] | None = None) -> tuple:
        [row] = store.conn.execute(sql, params).fetchall()
        return tuple(row)

    scored = "status = 'scored'"
    counts = one("SELECT coalesce(sum(n), 0), "
                 + ", ".join(f"coalesce(sum(n) FILTER (WHERE status = '{status}'), 0)"
                             for status in ("scored", "unscored", "error", "skipped"))
                 + f", sum(passed_weight) FILTER (WHERE {scored})"
                 f" / sum(weight) FILTER (WHERE {scored}) FROM {counted.table}")
    (traces,) = ((rolled.traces,) if rolled.traces is not None
                 else one("SELECT count(DISTINCT e.trace_id)" + selected.evaluations_sql,
                          selected.params))
    (judges,) = one("SELECT string_agg(judge, ', ' ORDER BY judge)"
                    f" FROM (SELECT DISTINCT judge FROM {counted.table})")
    first, last = one(f"SELECT min(first), max(last) FROM {rolled.table}")
    evaluations, scored_n, unscored, errors, skipped, pass_rate = counts
    return ReportTotals(evaluations, traces, scored_n, unscored, errors, skipped, first, last,
                        judges, pass_rate)


def bucket_rates(store: Store, rolled: Traffic, origin: int, seconds: int) -> list[BucketRate]:
    """Scored rows per rubric and time bucket, with weighted pass rate and mean score."""
    if origin % QUARTER_S or seconds % QUARTER_S:
        raise ValueError(f"buckets of {seconds} s from {origin} do not start on quarter hours")
    rows = store.conn.execute(
        f"SELECT rubric, (quarter * {QUARTER_S} - $origin) // $seconds AS bucket, sum(n),"
        " sum(passed_weight) / sum(weight), sum(score_weight) / sum(weight)"
        f" FROM {rolled.table} WHERE scored GROUP BY ALL ORDER BY ALL",
        {"origin": origin, "seconds": seconds},
    ).fetchall()
    return [BucketRate(*row) for row in rows]


def label_counts(store: Store, counted: Verdicts) -> list[LabelCount]:
    """Scored rows per rubric and label; per rubric, the best mean score first."""
    rows = store.conn.execute(
        "SELECT rubric, label, sum(n), sum(weight), sum(score_sum) / sum(scores) AS mean_score"
        f" FROM {counted.table} WHERE status = 'scored' AND label IS NOT NULL"
        " GROUP BY ALL ORDER BY rubric, mean_score DESC").fetchall()
    return [LabelCount(*row) for row in rows]


def pass_rate_by(store: Store, rolled: Traffic,
                 column: Literal["model", "prompt_version"]) -> list[GroupRate]:
    """Weighted pass rate per rubric and trace model or prompt version ('(unknown)' if none)."""
    assert column in ("model", "prompt_version")  # a column name, never user input
    rows = store.conn.execute(
        f"SELECT {column}, rubric, sum(n), sum(passed_weight) / sum(weight)"
        f" FROM {rolled.table} WHERE scored GROUP BY ALL ORDER BY ALL",
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
            "SELECT e.trace_id, min(e.score) AS score, arg_min(struct_pack(rubric := e.rubric,"
            " version := e.rubric_version, judge := e.judge, label := e.label, score := e.score,"
            " reasoning := e.reasoning, created_at := e.created_at), (e.score, e.rubric)),"
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
    # each pick carries its row's columns: looking the rows up by evaluation id read every id
    chosen = [(trace_id, row["rubric"], row["version"], row["judge"], row["label"], row["score"],
               row["reasoning"], row["created_at"], weight) for trace_id, _, row, weight in picks]
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
