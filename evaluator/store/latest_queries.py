"""The `latest_verdicts` table (migration 10): each (trace, rubric, rubric version, judge)'s
latest scored, labelled evaluation among the evaluations in DuckDB (newest created_at, then the
largest evaluation_id), kept up to date as evaluations are written and as days move to the lake.

It holds rows of every run; a reader applies its scope to the row's run_id. That is the same as
ranking the scope's evaluations because a group never mixes production and replay rows: a replay
judges dataset items under trace ids of its own (`<run_id>/<item_id>`).

A Store that reads a Parquet lake (`Store.reads_lake`) has evaluations this table does not
describe; its readers rank the evaluations instead (`LATEST_SCORED_RANKED`).
"""

from __future__ import annotations

import duckdb

COLUMNS = ("trace_id, rubric, rubric_version, judge, evaluation_id, run_id, label, score, passed,"
           " sample_weight, stability, created_at")
_GROUP = ("trace_id", "rubric", "rubric_version", "judge")
NEWEST_FIRST = "created_at DESC, evaluation_id DESC"
SCORED_LABELLED = "status = 'scored' AND label IS NOT NULL"

LATEST_SCORED_RANKED = (f"SELECT {COLUMNS} FROM evaluations WHERE {SCORED_LABELLED}"
                        f" QUALIFY row_number() OVER (PARTITION BY {', '.join(_GROUP)}"
                        f" ORDER BY {NEWEST_FIRST}) = 1")
"""What latest_verdicts holds, ranked from the evaluations themselves."""

def record_written(conn: duckdb.DuckDBPyConnection, batch: str, inserted: frozenset[str],
                   new_groups: bool = False) -> None:
    """Take the newly stored evaluations of the staged `batch` (store.batches) into
    latest_verdicts, inside the writing transaction. Rows whose id was already stored (a
    redelivery) were not written, so they change nothing; a new row replaces its group's row
    only if it is newer. The table has no key index (migration 11): the two statements find a
    group's row by joining the batch's few groups to it, a scan of the table. `new_groups`: no
    group of the batch has a row (none of its trace ids is stored: evaluator.store.stored_keys),
    so its newest rows are inserted without looking."""
    if not inserted:
        return
    newest = (f"(SELECT {COLUMNS} FROM {batch}"
              f" WHERE {SCORED_LABELLED} AND evaluation_id IN (SELECT unnest($ids::VARCHAR[]))"
              f" QUALIFY row_number() OVER (PARTITION BY {', '.join(_GROUP)}"
              f" ORDER BY {NEWEST_FIRST}) = 1)")
    ids = {"ids": sorted(inserted)}
    if new_groups:
        conn.execute(f"INSERT INTO latest_verdicts ({COLUMNS}) SELECT {COLUMNS} FROM {newest} e", ids)
        return
    conn.execute(
        f"DELETE FROM latest_verdicts l USING {newest} e WHERE {_same_group('l')}"
        " AND (e.created_at > l.created_at"
        "      OR (e.created_at = l.created_at AND e.evaluation_id > l.evaluation_id))", ids)
    conn.execute(
        f"INSERT INTO latest_verdicts ({COLUMNS}) SELECT {COLUMNS} FROM {newest} e"
        f" WHERE NOT EXISTS (SELECT 1 FROM latest_verdicts l WHERE {_same_group('l')})", ids)


def forget_deleted(conn: duckdb.DuckDBPyConnection, deleted: str, evaluations: str) -> None:
    """After evaluations were deleted (moved to the lake), inside the deleting transaction:
    `deleted` is a relation of their (evaluation_id, trace_id, rubric, rubric_version, judge).
    Their groups' rows are dropped and ranked again from what is left in `evaluations` (the
    DuckDB table's name: a Store reading the lake shadows `evaluations` with a view)."""
    conn.execute(f"DELETE FROM latest_verdicts WHERE evaluation_id IN (SELECT evaluation_id FROM {deleted})")
    groups = ", ".join(_GROUP)
    conn.execute(
        f"INSERT INTO latest_verdicts ({COLUMNS})"
        f" SELECT {COLUMNS} FROM {evaluations} e WHERE {SCORED_LABELLED}"
        f" AND EXISTS (SELECT 1 FROM {deleted} d WHERE {_same_group('d')})"
        f" AND NOT EXISTS (SELECT 1 FROM latest_verdicts l WHERE {_same_group('l')})"
        f" QUALIFY row_number() OVER (PARTITION BY {groups} ORDER BY {NEWEST_FIRST}) = 1")


def _same_group(alias: str) -> str:
    return " AND ".join(f"{alias}.{c} = e.{c}" for c in _GROUP)


def refill(conn: duckdb.DuckDBPyConnection) -> None:
    """Rank latest_verdicts afresh from the evaluations (after rows were written around
    Store.write_batch, as benchmarks/bench_reads.py does)."""
    conn.execute("DELETE FROM latest_verdicts")
    conn.execute(f"INSERT INTO latest_verdicts ({COLUMNS}) {LATEST_SCORED_RANKED}")
