"""SQL for the annotation page: the batches `labels export` recorded, who labelled what in them,
undoing a label the page wrote, and the judge's verdicts the page shows after labelling.

A label belongs to a batch item when it names the item's trace and rubric, for the batch's rubric
version or for every version (rubric_version NULL on either side), whatever file or page wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from evaluator.store.queries import as_utc
from evaluator.store.scope import PRODUCTION

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store


@dataclass(frozen=True)
class BatchRow:
    batch_id: str
    rubric: str
    rubric_version: int | None
    judge: str | None
    size: int
    exported_at: datetime


@dataclass(frozen=True)
class BatchLabel:
    trace_id: str
    annotator: str
    label: str | None
    note: str | None


@dataclass(frozen=True)
class Verdict:
    judge: str
    rubric_version: int
    label: str | None
    score: float | None
    passed: bool | None
    reasoning: str | None


def batches(store: Store, rubric: str | None = None, batch_id: str | None = None) -> list[BatchRow]:
    """Recorded batches, newest first; `batch_id` may be a unique start of the id."""
    rows = store.conn.execute(
        "SELECT batch_id, rubric, any_value(rubric_version), any_value(judge), count(*),"
        " max(exported_at) FROM label_batch_items"
        " WHERE ($rubric IS NULL OR rubric = $rubric)"
        " AND ($batch IS NULL OR starts_with(batch_id, $batch))"
        " GROUP BY batch_id, rubric ORDER BY max(exported_at) DESC, batch_id",
        {"rubric": rubric, "batch": batch_id}).fetchall()
    return [BatchRow(batch_id, rubric_name, version, judge, size, as_utc(exported_at))
            for batch_id, rubric_name, version, judge, size, exported_at in rows]


def batch_trace_ids(store: Store, batch_id: str) -> list[str]:
    return [row[0] for row in store.conn.execute(
        "SELECT trace_id FROM label_batch_items WHERE batch_id = ? ORDER BY trace_id",
        [batch_id]).fetchall()]


_BATCH_LABELS = """
FROM human_labels h JOIN label_batch_items b
  ON h.trace_id = b.trace_id AND h.rubric = b.rubric
 AND (h.rubric_version IS NULL OR b.rubric_version IS NULL OR h.rubric_version = b.rubric_version)
WHERE b.batch_id = $batch
"""


def batch_labels(store: Store, batch_id: str, annotator: str | None = None) -> list[BatchLabel]:
    """The labels of the batch's items (of one annotator, or of all)."""
    rows = store.conn.execute(
        f"SELECT h.trace_id, h.annotator, h.label, h.note {_BATCH_LABELS}"
        " AND ($annotator IS NULL OR h.annotator = $annotator) ORDER BY h.trace_id, h.annotator",
        {"batch": batch_id, "annotator": annotator}).fetchall()
    return [BatchLabel(*row) for row in rows]


def labelled_counts(store: Store, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    """{batch_id: {annotator: items labelled}} for the given batches."""
    rows = store.conn.execute(
        "SELECT b.batch_id, h.annotator, count(DISTINCT h.trace_id)"
        " FROM human_labels h JOIN label_batch_items b"
        "   ON h.trace_id = b.trace_id AND h.rubric = b.rubric"
        "  AND (h.rubric_version IS NULL OR b.rubric_version IS NULL"
        "       OR h.rubric_version = b.rubric_version)"
        " WHERE list_contains($batches, b.batch_id) GROUP BY ALL ORDER BY ALL",
        {"batches": batch_ids}).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for batch_id, annotator, n in rows:
        counts.setdefault(batch_id, {})[annotator] = n
    return counts


class LabelRef(NamedTuple):
    label_id: str
    trace_id: str


def latest_label_from(store: Store, annotator: str, source: str) -> LabelRef | None:
    """The annotator's newest label written by `source`, if any."""
    row = store.conn.execute(
        "SELECT label_id, trace_id FROM human_labels WHERE annotator = ? AND source = ?"
        " ORDER BY imported_at DESC, label_id DESC LIMIT 1", [annotator, source]).fetchone()
    return None if row is None else LabelRef(*row)


def delete_label(store: Store, label_id: str) -> bool:
    """Remove one label; False when it was not there."""
    row = store.conn.execute("DELETE FROM human_labels WHERE label_id = ? RETURNING label_id",
                             [label_id]).fetchone()
    return row is not None


def verdicts(store: Store, trace_id: str, rubric: str, version: int | None,
             judge: str | None) -> list[Verdict]:
    """Each judge's latest scored production verdict on the trace (the batch's version and judge
    when it names them)."""
    rows = store.conn.execute(
        "SELECT judge, rubric_version, label, score, passed, reasoning FROM evaluations"
        f" WHERE trace_id = $trace AND rubric = $rubric AND status = 'scored' AND {PRODUCTION.sql()}"
        " AND ($version IS NULL OR rubric_version = $version) AND ($judge IS NULL OR judge = $judge)"
        " QUALIFY row_number() OVER (PARTITION BY judge, rubric_version"
        "                            ORDER BY created_at DESC, evaluation_id DESC) = 1"
        " ORDER BY judge, rubric_version",
        {"trace": trace_id, "rubric": rubric, "version": version, "judge": judge}).fetchall()
    return [Verdict(*row) for row in rows]
