"""SQL for human labels: the batched import, and what export and agreement read back.

Judge rows are "the latest scored evaluation per trace" within each (rubric, rubric_version,
judge): one trace judged twice by the same judge name (a changed judge config, say) counts once.
Only production traffic counts (store.scope): people label production traces, and the failure
rate that agreement corrects is production's, so replay runs stay out of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from evaluator.store.schema import arrow_schema
from evaluator.store.scope import PRODUCTION

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

HUMAN_LABEL_SCHEMA = arrow_schema("human_labels")

_BATCH = "_batch_human_labels"
_SAME_CONTENT = ("h.label IS NOT DISTINCT FROM b.label AND h.score IS NOT DISTINCT FROM b.score"
                 " AND h.note IS NOT DISTINCT FROM b.note"
                 " AND h.rubric_version IS NOT DISTINCT FROM b.rubric_version")


@dataclass(frozen=True)
class LabelInsert:
    inserted: int
    already_present: int
    changed_lines: list[int]
    """File lines whose stored label differs (replaced when asked to, else kept as stored)."""


def insert_labels(store: Store, batch: pa.Table, lines: list[int],
                  replace: bool) -> LabelInsert:
    """Insert a batch (HUMAN_LABEL_SCHEMA) in one transaction; stored label_ids are kept,
    or overwritten when `replace` and their content differs."""
    table = batch.append_column("line", pa.array(lines, pa.int64()))
    columns = ", ".join(HUMAN_LABEL_SCHEMA.names)
    store.conn.register(_BATCH, table)
    store.conn.begin()
    try:
        same = store.conn.execute(f"SELECT count(*) FROM {_BATCH} b JOIN human_labels h USING (label_id)"
                            f" WHERE {_SAME_CONTENT}").fetchall()[0][0]
        changed = [row[0] for row in store.conn.execute(
            f"SELECT b.line FROM {_BATCH} b JOIN human_labels h USING (label_id)"
            f" WHERE NOT ({_SAME_CONTENT}) ORDER BY b.line").fetchall()]
        if replace and changed:
            store.conn.execute(f"DELETE FROM human_labels WHERE label_id IN (SELECT b.label_id FROM"
                         f" {_BATCH} b JOIN human_labels h USING (label_id)"
                         f" WHERE NOT ({_SAME_CONTENT}))")
        inserted = store.conn.execute(f"INSERT OR IGNORE INTO human_labels ({columns})"
                                f" SELECT {columns} FROM {_BATCH}").fetchall()[0][0]
        store.conn.commit()
    except BaseException:
        store.conn.rollback()
        raise
    finally:
        store.conn.unregister(_BATCH)
    return LabelInsert(inserted=inserted, already_present=same, changed_lines=changed)


def count_without_evaluations(store: Store, batch: pa.Table) -> int:
    """Labels of a batch whose trace has no stored evaluation of that rubric (yet)."""
    store.conn.register(_BATCH, batch)
    try:
        return store.conn.execute(
            f"SELECT count(*) FROM {_BATCH} b WHERE NOT EXISTS (SELECT 1 FROM evaluations e"
            " WHERE e.trace_id = b.trace_id AND e.rubric = b.rubric)").fetchall()[0][0]
    finally:
        store.conn.unregister(_BATCH)


_LATEST_SCORED = f"""
SELECT * FROM evaluations
WHERE status = 'scored' AND label IS NOT NULL AND rubric = $rubric AND {PRODUCTION.sql()}
  AND ($version IS NULL OR rubric_version = $version) AND ($judge IS NULL OR judge = $judge)
QUALIFY row_number() OVER (PARTITION BY rubric, rubric_version, judge, trace_id
                           ORDER BY created_at DESC, evaluation_id DESC) = 1
"""


def export_candidates(store: Store, rubric: str, version: int | None,
                      judge: str | None) -> list[tuple[str, bool, bool, str, str | None]]:
    """Per judged trace: (trace_id, any judge failed it, judging disagreed (judges gave
    different labels, or one judge's repeated samples did: stability < 1), one of its labels
    (the only one, unless they disagreed), the stored trace JSON or None)."""
    sql = f"""
    WITH judged AS ({_LATEST_SCORED}),
    per_trace AS (
        SELECT trace_id, bool_or(NOT passed) AS failed,
               count(DISTINCT label) > 1 OR coalesce(min(stability), 1.0) < 1.0 AS disagreed,
               any_value(label) AS label
        FROM judged GROUP BY trace_id
    )
    SELECT p.trace_id, p.failed, p.disagreed, p.label, t.trace_json
    FROM per_trace p LEFT JOIN traces t USING (trace_id)
    ORDER BY p.trace_id
    """
    return store.conn.execute(sql, {"rubric": rubric, "version": version, "judge": judge}).fetchall()


def rubrics_with_evaluations(store: Store, rubric: str | None,
                             judge: str | None) -> list[tuple[str, int, str]]:
    """(rubric, rubric_version, judge) groups that have scored production evaluations."""
    return store.conn.execute(
        "SELECT DISTINCT rubric, rubric_version, judge FROM evaluations WHERE status = 'scored'"
        f" AND {PRODUCTION.sql()}"
        " AND ($rubric IS NULL OR rubric = $rubric) AND ($judge IS NULL OR judge = $judge)"
        " ORDER BY ALL", {"rubric": rubric, "judge": judge}).fetchall()


def judge_human_rows(store: Store, rubric: str, version: int, judge: str
                     ) -> list[tuple[str, str, float | None, str, str, float | None]]:
    """(trace_id, judge label, judge score, annotator, human label, human score) for every
    human label that meets the group's latest scored evaluation of its trace."""
    sql = f"""
    WITH judged AS ({_LATEST_SCORED})
    SELECT e.trace_id, e.label, e.score, h.annotator, h.label, h.score
    FROM judged e JOIN human_labels h
      ON h.trace_id = e.trace_id AND h.rubric = e.rubric
     AND (h.rubric_version IS NULL OR h.rubric_version = e.rubric_version)
    WHERE h.label IS NOT NULL
    ORDER BY e.trace_id, h.annotator
    """
    return store.conn.execute(sql, {"rubric": rubric, "version": version, "judge": judge}).fetchall()


def production_counts(store: Store, rubric: str, version: int, judge: str
                      ) -> dict[str, Any]:
    """Scored evaluations of the group and their failures, raw and by sampling weight."""
    sql = f"""
    WITH judged AS ({_LATEST_SCORED})
    SELECT count(*), count(*) FILTER (WHERE NOT passed), sum(sample_weight),
           sum(sample_weight) FILTER (WHERE NOT passed), sum(sample_weight * sample_weight)
    FROM judged
    """
    n, failed, weight, weight_failed, weight_squared = store.conn.execute(
        sql, {"rubric": rubric, "version": version, "judge": judge}).fetchall()[0]
    return {"n": n, "failed": failed, "weight": weight or 0.0,
            "weight_failed": weight_failed or 0.0, "weight_squared": weight_squared or 0.0}


def human_labels_for(store: Store, rubric: str, version: int | None
                     ) -> list[tuple[str, str, str]]:
    """(trace_id, annotator, label) of the rubric's labels that apply to `version`."""
    return store.conn.execute(
        "SELECT trace_id, annotator, label FROM human_labels WHERE rubric = $rubric"
        " AND label IS NOT NULL AND (rubric_version IS NULL OR $version IS NULL"
        " OR rubric_version = $version) ORDER BY trace_id, annotator",
        {"rubric": rubric, "version": version}).fetchall()


def human_label_count(store: Store) -> int:
    return store.conn.execute("SELECT count(*) FROM human_labels").fetchall()[0][0]


def labelled_trace_ids(store: Store, rubric: str) -> set[str]:
    return {row[0] for row in store.conn.execute(
        "SELECT DISTINCT trace_id FROM human_labels WHERE rubric = ?", [rubric]).fetchall()}
