"""SQL for annotation batches: how each exported item was drawn, and what the correction reads.

An item's design is the latest batch that holds it for the rubric (`label_batch_items`,
migration 6). The judged traces are the group's latest scored evaluation of each trace, as in
labels_queries (production traffic only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from evaluator.store.labels_queries import judged, judged_weights
from evaluator.store.schema import column_names, struct_type

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store


class BatchItem(NamedTuple):
    """One exported item and how it was drawn: a row of `label_batch_items`."""

    batch_id: str
    trace_id: str
    rubric: str
    rubric_version: int | None
    judge: str | None
    stratum: str
    stratum_size: int
    stratum_taken: int
    selection_probability: float
    exported_at: datetime


def record_batch(store: Store, items: list[BatchItem]) -> None:
    """Store the items of one exported batch in one statement (a list parameter, not an Arrow
    table: an export imports no pyarrow)."""
    columns = ", ".join(column_names("label_batch_items"))
    store.conn.execute(
        f"INSERT OR IGNORE INTO label_batch_items ({columns}) SELECT item.* FROM"
        f" (SELECT unnest($items::{struct_type('label_batch_items')}[]) AS item)",
        {"items": [item._asdict() for item in items]})


@dataclass(frozen=True)
class DesignRow:
    """A judged trace of the group that was exported to annotate or carries a human label."""

    trace_id: str
    sample_weight: float
    judge_failed: bool
    batch_id: str | None
    """None: labelled without a recorded batch (a file from elsewhere, or an older export)."""
    stratum: str | None
    selection_probability: float | None


def design_rows(store: Store, rubric: str, version: int, judge: str
                ) -> list[DesignRow]:
    """Every judged trace of the group that is in a batch or has a human label of the rubric."""
    source, params = judged(store, rubric, version, judge, "labelled")
    sql = f"""
    WITH latest_batch AS (
        SELECT * FROM label_batch_items
        WHERE rubric = $rubric AND (rubric_version IS NULL OR rubric_version = $version)
        QUALIFY row_number() OVER (PARTITION BY trace_id
                                   ORDER BY exported_at DESC, batch_id DESC) = 1
    )
    SELECT j.trace_id, j.sample_weight, NOT j.passed, b.batch_id, b.stratum,
           b.selection_probability
    FROM {source} j LEFT JOIN latest_batch b USING (trace_id)
    WHERE b.batch_id IS NOT NULL OR j.trace_id IN (
        SELECT trace_id FROM human_labels WHERE rubric = $rubric AND label IS NOT NULL)
    ORDER BY j.trace_id
    """
    rows = store.conn.execute(sql, {**params, "rubric": rubric, "version": version}).fetchall()
    return [DesignRow(*row) for row in rows]


class ProductionVerdict(NamedTuple):
    """How many of the group's judged traces have this sampling weight and judge verdict."""

    sample_weight: float
    judge_failed: bool
    traces: int


def production_verdicts(store: Store, rubric: str, version: int, judge: str
                        ) -> list[ProductionVerdict]:
    source, params = judged_weights(store, rubric, version, judge)
    sql = f"""
    SELECT sample_weight, NOT passed, sum(n) FROM {source}
    GROUP BY ALL ORDER BY ALL
    """
    return [ProductionVerdict(*row) for row in store.conn.execute(sql, params).fetchall()]
