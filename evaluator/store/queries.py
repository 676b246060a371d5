"""Read-side SQL: rubric summaries, status counts, evaluations and runs back as records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, overload

import duckdb

from evaluator.core.records import TERMINAL_STATUSES, Evaluation, Trace
from evaluator.core.rows import StoredTrace
from evaluator.core.usage import gather_usage
from evaluator.store.models import RubricSummary, RunRecord
from evaluator.store.schema import column_names
from evaluator.store.scope import Scope

_SUMMARY_SQL = """
SELECT
    rubric, rubric_version, judge,
    count(*) AS evaluated,
    count(*) FILTER (WHERE status = 'scored') AS scored,
    count(*) FILTER (WHERE status = 'scored' AND passed) AS passed,
    sum(sample_weight) FILTER (WHERE status = 'scored' AND passed) AS weight_passed,
    sum(sample_weight) FILTER (WHERE status = 'scored') AS weight_scored,
    avg(score) FILTER (WHERE status = 'scored') AS mean_score,
    count(*) FILTER (WHERE status = 'unscored') AS unscored,
    count(*) FILTER (WHERE status = 'error') AS errors,
    count(*) FILTER (WHERE status = 'skipped') AS skipped
FROM evaluations
WHERE {scope}
GROUP BY rubric, rubric_version, judge
ORDER BY rubric, rubric_version, judge
"""

_LABELS_SQL = """
SELECT rubric, rubric_version, judge, label, count(*)
FROM evaluations
WHERE status = 'scored' AND label IS NOT NULL AND {scope}
GROUP BY ALL
ORDER BY ALL
"""


def rubric_summary(conn: duckdb.DuckDBPyConnection, scope: Scope) -> list[RubricSummary]:
    where, params = scope.sql(), scope.params()
    labels: dict[tuple[str, int, str], dict[str, int]] = {}
    for rubric, version, judge, label, count in conn.execute(
            _LABELS_SQL.format(scope=where), params).fetchall():
        labels.setdefault((rubric, version, judge), {})[label] = count
    summaries = []
    for row in conn.execute(_SUMMARY_SQL.format(scope=where), params).fetchall():
        (rubric, version, judge, evaluated, scored, passed, weight_passed, weight_scored,
         mean_score, unscored, errors, skipped) = row
        summaries.append(RubricSummary(
            rubric=rubric,
            rubric_version=version,
            judge=judge,
            evaluated=evaluated,
            scored=scored,
            passed=passed,
            pass_rate=passed / scored if scored else None,
            weighted_pass_rate=(weight_passed or 0.0) / weight_scored if weight_scored else None,
            mean_score=mean_score,
            label_counts=labels.get((rubric, version, judge), {}),
            unscored=unscored,
            errors=errors,
            skipped=skipped,
        ))
    return summaries


def status_counts(conn: duckdb.DuckDBPyConnection, scope: Scope) -> dict[str, int]:
    """Every terminal status, zero included, so reports have stable keys."""
    counts: dict[str, int] = dict.fromkeys(TERMINAL_STATUSES, 0)
    rows = conn.execute(
        f"SELECT status, count(*) FROM evaluations WHERE {scope.sql()} GROUP BY status",
        scope.params(),
    ).fetchall()
    counts.update(dict(rows))
    return counts


def judged_before(conn: duckdb.DuckDBPyConnection, scope: Scope) -> int:
    """Evaluations of the scope's runs judged before its `since` (0 when it has none): what a
    `--since` left out."""
    if scope.since is None:
        return 0
    runs = scope.judged_since(None)
    [(count,)] = conn.execute(
        f"SELECT count(*) FROM evaluations WHERE {runs.sql()} AND created_at < $before",
        {**runs.params(), "before": scope.since}).fetchall()
    return int(count)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A timestamp DuckDB returns in the session's zone, as UTC (None stays None)."""
    return None if value is None else value.astimezone(UTC)


_EVALUATION_COLUMNS = ", ".join(column_names("evaluations"))


def evaluations(
    conn: duckdb.DuckDBPyConnection,
    scope: Scope,
    trace_id: str | None,
    rubric: str | None,
    limit: int | None,
) -> list[Evaluation]:
    sql = (
        f"SELECT {_EVALUATION_COLUMNS} FROM evaluations"
        f" WHERE {scope.sql()}"
        " AND ($trace_id IS NULL OR trace_id = $trace_id)"
        " AND ($rubric IS NULL OR rubric = $rubric)"
        " ORDER BY created_at, evaluation_id"
    )
    params: dict[str, Any] = {**scope.params(), "trace_id": trace_id, "rubric": rubric}
    if limit is not None:
        sql += " LIMIT $limit"
        params["limit"] = limit
    names = column_names("evaluations")
    records = []
    for row in conn.execute(sql, params).fetchall():
        values = dict(zip(names, row, strict=True))
        values["created_at"] = as_utc(values["created_at"])
        if values["claims"] is not None:
            values["claims"] = json.loads(values["claims"])
        records.append(Evaluation.model_validate(gather_usage(values)))
    return records


def stored_traces(conn: duckdb.DuckDBPyConnection, trace_ids: list[str] | None) -> list[StoredTrace]:
    sql = "SELECT trace_json, sample_reason, sample_weight FROM traces"
    params: list[Any] = []
    if trace_ids is not None:
        sql += " WHERE list_contains(?, trace_id)"
        params.append(trace_ids)
    rows = conn.execute(sql + " ORDER BY received_at, trace_id", params).fetchall()
    return [StoredTrace(Trace.model_validate_json(text), reason, weight) for text, reason, weight in rows]


def _decode(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


def runs(conn: duckdb.DuckDBPyConnection, run_id: str | None, kind: str | None,
         limit: int | None) -> list[RunRecord]:
    """Newest first."""
    sql = (
        "SELECT run_id, kind, status, started_at, finished_at, params, manifest, summary FROM runs"
        " WHERE ($run_id IS NULL OR run_id = $run_id) AND ($kind IS NULL OR kind = $kind)"
        " ORDER BY started_at DESC, run_id"
    )
    params: dict[str, Any] = {"run_id": run_id, "kind": kind}
    if limit is not None:
        sql += " LIMIT $limit"
        params["limit"] = limit
    return [
        RunRecord(
            run_id=row[0], kind=row[1], status=row[2], started_at=as_utc(row[3]),
            finished_at=as_utc(row[4]), params=_decode(row[5]) or {}, manifest=_decode(row[6]),
            summary=_decode(row[7]),
        )
        for row in conn.execute(sql, params).fetchall()
    ]
