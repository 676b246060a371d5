"""Read-side SQL for regression datasets: failing verdicts on stored traces, judge and human.

Only evaluations in the build's scope (production traffic unless told, store.scope) on traces in
the `traces` table count: an item needs its trace, and replayed items (trace ids
`<run_id>/<item_id>`) are never stored there, so a dataset is not rebuilt from its own replays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from evaluator.store.scope import Scope

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

_LATEST_VERDICTS = """
SELECT trace_id, rubric, rubric_version, judge, label, passed, created_at
FROM evaluations
WHERE status = 'scored' AND trace_id IN (SELECT trace_id FROM traces) AND {scope} AND {where}
QUALIFY row_number() OVER (PARTITION BY trace_id, rubric ORDER BY created_at DESC, evaluation_id) = 1
"""

_FAILING_JUDGE_VERDICTS = """
WITH latest AS ({latest}),
failing AS (
    SELECT trace_id, min(created_at) AS failed_at
    FROM latest
    WHERE NOT passed
      AND ($rubric IS NULL OR rubric = $rubric)
      AND ($version IS NULL OR rubric_version = $version)
      AND ($since IS NULL OR created_at >= $since)
    GROUP BY trace_id
)
SELECT l.* FROM latest l JOIN failing f USING (trace_id)
ORDER BY f.failed_at, l.trace_id, l.rubric
"""

_HUMAN_LABELS = """
SELECT trace_id, rubric, rubric_version, label, score, imported_at
FROM human_labels
WHERE label IS NOT NULL AND trace_id IN (SELECT trace_id FROM traces)
  AND trace_id IN (SELECT trace_id FROM evaluations WHERE {scope})
ORDER BY imported_at, label_id
"""


@dataclass(frozen=True)
class JudgeVerdictRow:
    """The latest scored verdict of one rubric on a trace."""

    trace_id: str
    rubric: str
    rubric_version: int
    judge: str
    label: str
    passed: bool
    created_at: datetime


@dataclass(frozen=True)
class HumanLabelRow:
    trace_id: str
    rubric: str
    rubric_version: int | None
    label: str
    score: float | None
    imported_at: datetime


def _latest(scope: Scope, where: str) -> str:
    return _LATEST_VERDICTS.format(scope=scope.sql(), where=where)


def failing_judge_verdicts(store: Store, scope: Scope, rubric: str | None,
                           version: int | None, since: datetime | None) -> list[JudgeVerdictRow]:
    """The latest verdict of each rubric on the traces whose latest verdict on `rubric` (any
    when None), given at or after `since`, failed; ordered by when the trace first failed."""
    sql = _FAILING_JUDGE_VERDICTS.format(latest=_latest(scope, "true"))
    rows = store.conn.execute(sql, {**scope.params(), "rubric": rubric, "version": version,
                              "since": since}).fetchall()
    return [JudgeVerdictRow(*row) for row in rows]


def latest_judge_verdicts(store: Store, scope: Scope,
                          trace_ids: list[str]) -> list[JudgeVerdictRow]:
    """The latest verdict of each rubric on these traces."""
    sql = _latest(scope, "list_contains($ids, trace_id)")
    return [JudgeVerdictRow(*row)
            for row in store.conn.execute(sql, {**scope.params(), "ids": trace_ids}).fetchall()]


def human_labels(store: Store, scope: Scope) -> list[HumanLabelRow]:
    """Every human label on a stored trace judged in the scope, oldest import first."""
    sql = _HUMAN_LABELS.format(scope=scope.sql())
    return [HumanLabelRow(*row) for row in store.conn.execute(sql, scope.params()).fetchall()]
