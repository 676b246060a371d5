"""Read-side SQL for regression datasets: failing verdicts on stored traces, judge and human.

Only evaluations in the build's scope (production traffic unless told, store.scope) on traces in
the `traces` table count: an item needs its trace, and replayed items (trace ids
`<run_id>/<item_id>`) are never stored there, so a dataset is not rebuilt from its own replays.

A build selects, orders and deduplicates its candidates here, so only the traces it turns into
items leave DuckDB: `select_candidates` ranks every qualifying trace (oldest failure first) into
a temporary table, marking the first trace of each stored input that the dataset does not have
yet; `candidate_page` then reads those in order, a page at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from evaluator.store.schema import TIMESTAMP
from evaluator.store.scope import Scope

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

_LATEST_VERDICTS = """
SELECT trace_id, rubric, rubric_version, judge, label, passed, created_at
FROM evaluations
WHERE status = 'scored' AND trace_id IN (SELECT trace_id FROM traces) AND {scope} AND {where}
QUALIFY row_number() OVER (PARTITION BY trace_id, rubric ORDER BY created_at DESC, evaluation_id) = 1
"""

_HUMAN_LABELS = """
SELECT trace_id, rubric, rubric_version, label, score, imported_at
FROM human_labels
WHERE label IS NOT NULL AND trace_id IN (SELECT trace_id FROM traces)
  AND trace_id IN (SELECT trace_id FROM evaluations WHERE {scope})
ORDER BY imported_at, label_id
"""

_HUMAN_VERDICTS = "_build_human_verdicts"
_CANDIDATES = "_build_candidates"
_HUMAN_VERDICT_SCHEMA = pa.schema([("trace_id", pa.string()), ("rubric", pa.string()),
                                   ("rubric_version", pa.int32()), ("passed", pa.bool_()),
                                   ("judged_at", TIMESTAMP)])

# Only a (trace, rubric) with a failing verdict can qualify, so the latest verdict is looked for
# among those pairs' evaluations alone. A human verdict replaces the judge's on its rubric. The
# dedup key is the stored input's hash (set by masking; the key a dataset item has), else the
# sha256 of its JSON (a trace stored unmasked).
_SELECT_CANDIDATES = f"""
CREATE OR REPLACE TEMP TABLE {_CANDIDATES} AS
WITH failing_pairs AS (
    SELECT DISTINCT trace_id, rubric FROM evaluations
    WHERE $judge AND status = 'scored' AND NOT passed AND {{scope}}
      AND ($rubric IS NULL OR rubric = $rubric)
),
judge AS (
    SELECT e.trace_id, e.rubric, e.rubric_version, e.passed, e.created_at
    FROM evaluations e
    WHERE e.status = 'scored' AND {{e_scope}}
      AND EXISTS (SELECT 1 FROM failing_pairs f WHERE f.trace_id = e.trace_id AND f.rubric = e.rubric)
    QUALIFY row_number() OVER (PARTITION BY e.trace_id, e.rubric
                               ORDER BY e.created_at DESC, e.evaluation_id) = 1
),
verdicts AS (
    SELECT trace_id, rubric, rubric_version AS version, passed, created_at AS judged_at
    FROM judge j
    WHERE NOT EXISTS (SELECT 1 FROM {_HUMAN_VERDICTS} h
                      WHERE h.trace_id = j.trace_id AND h.rubric = j.rubric)
    UNION ALL
    SELECT trace_id, rubric, rubric_version, passed, judged_at FROM {_HUMAN_VERDICTS}
),
qualifying AS (
    SELECT trace_id, min(judged_at) AS failed_at
    FROM verdicts
    WHERE NOT passed
      AND ($rubric IS NULL OR rubric = $rubric)
      AND ($version IS NULL OR version = $version)
      AND ($since IS NULL OR judged_at >= $since)
    GROUP BY trace_id
),
keyed AS (
    SELECT q.trace_id, q.failed_at, t.input_hash AS input_key
    FROM qualifying q JOIN traces t USING (trace_id) WHERE t.input_hash IS NOT NULL
    UNION ALL
    SELECT q.trace_id, q.failed_at, sha256(t.trace_json -> '$.input')
    FROM qualifying q JOIN traces t USING (trace_id) WHERE t.input_hash IS NULL
)
SELECT trace_id,
       row_number() OVER (ORDER BY failed_at, trace_id) AS position,
       row_number() OVER (PARTITION BY input_key ORDER BY failed_at, trace_id) = 1
           AND input_key NOT IN (SELECT unnest($known::VARCHAR[])) AS new
FROM keyed
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


@dataclass(frozen=True)
class HumanVerdictRow:
    """People's verdict on one rubric of a trace (it replaces the judge's)."""

    trace_id: str
    rubric: str
    rubric_version: int | None
    passed: bool
    judged_at: datetime
    """When the label was imported."""


@dataclass(frozen=True)
class CandidateCounts:
    qualifying: int
    """Traces with a matching failing verdict."""
    new: int
    """Of those, the first trace of each stored input the dataset does not have yet."""


@dataclass(frozen=True)
class CandidateRow:
    position: int
    trace_id: str
    trace_json: str


def select_candidates(store: Store, scope: Scope, humans: Sequence[HumanVerdictRow],
                      judge: bool, rubric: str | None, version: int | None,
                      since: datetime | None, known_inputs: Collection[str]) -> CandidateCounts:
    """Rank the traces whose merged verdict (people's where they gave one, else the judge's
    latest, when `judge`) on `rubric` (any when None), given at or after `since`, failed: oldest
    failure first. `known_inputs`: input hashes the dataset already holds."""
    table = pa.Table.from_pylist([vars(row) for row in humans], schema=_HUMAN_VERDICT_SCHEMA)
    store.conn.register(_HUMAN_VERDICTS, table)
    try:
        store.conn.execute(_SELECT_CANDIDATES.format(scope=scope.sql(), e_scope=scope.sql("e.run_id")),
                           {**scope.params(), "judge": judge, "rubric": rubric,
                            "version": version, "since": since, "known": sorted(known_inputs)})
    finally:
        store.conn.unregister(_HUMAN_VERDICTS)
    [(qualifying, new)] = store.conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE new) FROM {_CANDIDATES}").fetchall()
    return CandidateCounts(qualifying, new)


def candidate_page(store: Store, after: int, size: int) -> list[CandidateRow]:
    """The next `size` new candidates after position `after`, with their stored traces (looked
    up by key: a join would read every trace's text)."""
    page = store.conn.execute(
        f"SELECT position, trace_id FROM {_CANDIDATES} WHERE new AND position > $after"
        " ORDER BY position LIMIT $size", {"after": after, "size": size}).fetchall()
    texts = dict(store.conn.execute(
        "SELECT trace_id, trace_json FROM traces WHERE trace_id IN (SELECT unnest($ids))",
        {"ids": [trace_id for _, trace_id in page]}).fetchall())
    return [CandidateRow(position, trace_id, texts[trace_id]) for position, trace_id in page]


def latest_judge_verdicts(store: Store, scope: Scope,
                          trace_ids: list[str]) -> list[JudgeVerdictRow]:
    """The latest verdict of each rubric on these traces."""
    sql = _LATEST_VERDICTS.format(scope=scope.sql(), where="trace_id IN (SELECT unnest($ids))")
    return [JudgeVerdictRow(*row)
            for row in store.conn.execute(sql, {**scope.params(), "ids": trace_ids}).fetchall()]


def human_labels(store: Store, scope: Scope) -> list[HumanLabelRow]:
    """Every human label on a stored trace judged in the scope, oldest import first."""
    sql = _HUMAN_LABELS.format(scope=scope.sql())
    return [HumanLabelRow(*row) for row in store.conn.execute(sql, scope.params()).fetchall()]
