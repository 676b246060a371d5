"""The Parquet lake: days of evaluations, traces and judge calls written out of DuckDB.

Layout (hive partitions; one `data_0.parquet` per partition; days are UTC):

    DIR/evaluations/day=YYYY-MM-DD/rubric=NAME/data_0.parquet   day of created_at
    DIR/judge_calls/day=YYYY-MM-DD/rubric=NAME/data_0.parquet   day of created_at
    DIR/traces/day=YYYY-MM-DD/data_0.parquet                    day of received_at

Exporting a day is idempotent and merging: the day's partitions are rewritten from the hot rows
plus the rows the lake already had for that day (deduplicated on the table's key), each file
written aside and moved into place with one atomic rename (rows sorted by day column, then
key, so a slice of the day reads few row groups).

Rolling a day (Store.roll_to_lake, or the sink step by step) exports it, reads the lake's row
count back, and only when it holds every row deletes the day from DuckDB in chunks
(`roll_chunks`: slices of about `rows` rows in (day column, key) order), each in its own
transaction. A chunk deletes only the rows whose key the lake's copy of that slice holds, so a
row written for that day after the export (a late result) stays in DuckDB for the next roll.
Between chunks the caller may close the file (the sink writes a batch). A crash at any point
leaves every row in DuckDB, the lake, or both (both are read without double counting: see
`attach_lake`); the next roll exports the day again (merging) and deletes what is left.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

import evaluator.store.latest_queries as latest_queries
from evaluator.store.schema import table_columns


@dataclass(frozen=True)
class LakeTable:
    name: str
    key: str
    day_column: str
    by_rubric: bool


LAKE_TABLES = (
    LakeTable("evaluations", "evaluation_id", "created_at", by_rubric=True),
    LakeTable("judge_calls", "call_id", "created_at", by_rubric=True),
    LakeTable("traces", "trace_id", "received_at", by_rubric=False),
)
DATA_FILE = "data_0.parquet"
ROLL_CHUNK_ROWS = 100_000
"""Rows a roll deletes in one transaction: ~0.3 s of holding the file (benchmarks/bench_lake.py)."""
STAGING = ".staging"


@dataclass(frozen=True)
class DayExport:
    day: date
    rows: dict[str, int]
    """Rows the lake holds for this day, per table, after the export."""
    files: int


def _columns(table: LakeTable) -> str:
    return ", ".join(f'"{name}"' for name, _ in table_columns()[table.name])


def _hot(conn: duckdb.DuckDBPyConnection, table: LakeTable) -> str:
    """The DuckDB table itself, named so that a view attach_lake made cannot shadow it."""
    (database,) = conn.execute("SELECT current_database()").fetchone() or ("",)
    return f'"{database}".main.{table.name}'


def _day_of(table: LakeTable) -> str:
    return f"CAST(timezone('UTC', {table.day_column}) AS DATE)"


def _glob(lake: Path, table: LakeTable, day: date | None = None) -> str:
    day_part = "*" if day is None else f"day={day.isoformat()}"
    return str(lake / table.name / day_part / ("*/*.parquet" if table.by_rubric else "*.parquet"))


def _lake_rows(conn: duckdb.DuckDBPyConnection, lake: Path, table: LakeTable,
               day: date | None = None) -> str | None:
    """A SELECT of the table's columns from its lake files (of one day), or None without files.
    A column added by a later migration than the files' export reads as NULL."""
    pattern = _glob(lake, table, day)
    base = lake / table.name
    if not base.is_dir() or not any(base.glob(pattern[len(str(base)) + 1:])):
        return None
    hive_types = "{'day': DATE, 'rubric': VARCHAR}" if table.by_rubric else "{'day': DATE}"
    source = (f"read_parquet('{_quote(pattern)}', hive_partitioning = true, hive_types = {hive_types},"
              " union_by_name = true)")
    present = {row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    columns = ", ".join(f'"{name}"' if name in present else f'CAST(NULL AS {sql_type}) AS "{name}"'
                        for name, sql_type in table_columns()[table.name])
    return f"SELECT {columns} FROM {source}"


def _quote(text: str) -> str:
    return text.replace("'", "''")


def hot_days(conn: duckdb.DuckDBPyConnection, before: date | None = None,
             since: date | None = None) -> list[date]:
    """The days (UTC) that have rows in any lake table in DuckDB, in [since, before)."""
    parts = " UNION ".join(f"SELECT DISTINCT {_day_of(t)} AS day FROM {_hot(conn, t)}" for t in LAKE_TABLES)
    rows = conn.execute(f"SELECT day FROM ({parts}) WHERE day IS NOT NULL"
                        " AND ($before IS NULL OR day < $before) AND ($since IS NULL OR day >= $since)"
                        " ORDER BY day", {"before": before, "since": since}).fetchall()
    return [row[0] for row in rows]


def export_day(conn: duckdb.DuckDBPyConnection, lake: Path, day: date) -> DayExport:
    """Write (merge) one day of every lake table into `lake`; returns the rows it now holds."""
    lake = Path(lake)
    rows: dict[str, int] = {}
    files = 0
    for table in LAKE_TABLES:
        source = _hot(conn, table)
        hot = f"SELECT {_columns(table)} FROM {source} WHERE {_day_of(table)} = $day"
        existing = _lake_rows(conn, lake, table, day)
        merged = hot if existing is None else (
            f"{hot} UNION ALL BY NAME SELECT * FROM ({existing}) AS lake_rows WHERE \"{table.key}\""
            f" NOT IN (SELECT {table.key} FROM {source} WHERE {_day_of(table)} = $day)")
        (count,) = conn.execute(f"SELECT count(*) FROM ({merged})", {"day": day}).fetchone() or (0,)
        rows[table.name] = count
        if count == 0:
            continue
        staging = lake / STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            partition = "day, rubric" if table.by_rubric else "day"
            conn.execute(f"COPY (SELECT *, $day AS day FROM ({merged}) ORDER BY \"{table.day_column}\","
                         f" \"{table.key}\") TO '{_quote(str(staging))}'"
                         f" (FORMAT parquet, PARTITION_BY ({partition}), FILENAME_PATTERN 'data_{{i}}',"
                         " OVERWRITE_OR_IGNORE true)", {"day": day})
            files += _move_into_place(staging, lake / table.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return DayExport(day, rows, files)


def _move_into_place(staging: Path, target: Path) -> int:
    """Each staged partition file replaces its counterpart atomically (os.replace)."""
    moved = 0
    for path in sorted(staging.rglob("*.parquet")):
        destination = target / path.relative_to(staging)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
        moved += 1
    return moved


def lake_count(conn: duckdb.DuckDBPyConnection, lake: Path, table: LakeTable, day: date) -> int:
    select = _lake_rows(conn, Path(lake), table, day)
    if select is None:
        return 0
    return (conn.execute(f"SELECT count(*) FROM ({select})").fetchone() or (0,))[0]


@dataclass(frozen=True)
class RollChunk:
    """One slice of a day of one table, in (day column, key) order: after `after` (exclusive,
    None: the day's start) through `through` (inclusive, None: the day's end)."""

    table: LakeTable
    day: date
    after: tuple[datetime, str] | None
    through: tuple[datetime, str] | None


@dataclass(frozen=True)
class ChunkDeleted:
    chunk: RollChunk
    hot: int
    """The slice's rows in DuckDB before the delete."""
    deleted: int
    """Those the lake held, now deleted; the others (written after the export) stay."""


def roll_chunks(conn: duckdb.DuckDBPyConnection, table: LakeTable, day: date, rows: int) -> list[RollChunk]:
    """The day's rows of `table` in DuckDB cut into slices of `rows` (the last one open-ended)."""
    bounds = conn.execute(
        f"SELECT \"{table.day_column}\", \"{table.key}\" FROM (SELECT \"{table.day_column}\", \"{table.key}\","
        f" row_number() OVER (ORDER BY \"{table.day_column}\", \"{table.key}\") AS n FROM {_hot(conn, table)}"
        f" WHERE {_day_of(table)} = $day) WHERE n % $rows = 0 ORDER BY n",
        {"day": day, "rows": rows}).fetchall()
    edges: list[tuple[datetime, str] | None] = [None, *(tuple(bound) for bound in bounds), None]
    return [RollChunk(table, day, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def _in_chunk(chunk: RollChunk) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of a chunk's rows (the plain bounds on the day column let DuckDB and
    Parquet skip row groups by their min/max)."""
    column, key = f'"{chunk.table.day_column}"', f'"{chunk.table.key}"'
    parts = [f"{_day_of(chunk.table)} = $day"]
    params: dict[str, Any] = {"day": chunk.day}
    if chunk.after is not None:
        parts.append(f"{column} >= $after_at AND ({column} > $after_at OR {key} > $after_key)")
        params.update(after_at=chunk.after[0], after_key=chunk.after[1])
    if chunk.through is not None:
        parts.append(f"{column} <= $through_at AND ({column} < $through_at OR {key} <= $through_key)")
        params.update(through_at=chunk.through[0], through_key=chunk.through[1])
    return " AND ".join(parts), params


def delete_chunk(conn: duckdb.DuckDBPyConnection, lake: Path, chunk: RollChunk) -> ChunkDeleted:
    """Delete the chunk's rows that the lake holds (matched by key in the lake's same slice),
    in one transaction."""
    table = chunk.table
    source = _hot(conn, table)
    where, params = _in_chunk(chunk)
    in_lake = _lake_rows(conn, Path(lake), table, chunk.day)
    conn.begin()
    try:
        (hot,) = conn.execute(f"SELECT count(*) FROM {source} WHERE {where}", params).fetchone() or (0,)
        deleted = 0
        if hot and in_lake is not None:
            in_both = (f"{where} AND \"{table.key}\" IN"
                       f" (SELECT \"{table.key}\" FROM ({in_lake}) AS lake_rows WHERE {where})")
            if table.name == "evaluations":
                deleted = _delete_evaluations(conn, source, in_both, params)
            else:
                (deleted,) = conn.execute(f"DELETE FROM {source} WHERE {in_both}",
                                          params).fetchone() or (0,)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return ChunkDeleted(chunk, hot, deleted)


def _delete_evaluations(conn: duckdb.DuckDBPyConnection, source: str, where: str,
                        params: dict[str, Any]) -> int:
    """Delete the evaluations `where` selects, and rank their groups' latest verdicts again
    from the evaluations left (latest_queries)."""
    rolled = "_rolled_evaluations"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {rolled} AS SELECT evaluation_id, trace_id, rubric,"
                 f" rubric_version, judge FROM {source} WHERE {where}", params)
    (deleted,) = conn.execute(f"DELETE FROM {source} WHERE evaluation_id IN"
                              f" (SELECT evaluation_id FROM {rolled})").fetchone() or (0,)
    latest_queries.forget_deleted(conn, rolled, source)
    conn.execute(f"DROP TABLE {rolled}")  # a failure rolls the transaction back, this too
    return deleted


def attach_lake(conn: duckdb.DuckDBPyConnection, lake: Path) -> list[str]:
    """Temporary views that shadow the lake tables with hot rows plus lake rows (the lake's copy
    of a row still in DuckDB is left out), so every query of the store reads both. Returns the
    tables that have lake files."""
    attached = []
    for table in LAKE_TABLES:
        select = _lake_rows(conn, Path(lake), table)
        if select is None:
            continue
        hot = _hot(conn, table)
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {table.name} AS SELECT {_columns(table)} FROM {hot}"
                     f" UNION ALL BY NAME SELECT * FROM ({select}) AS lake_rows"
                     f" WHERE NOT EXISTS (SELECT 1 FROM {hot} AS h WHERE h.{table.key} = lake_rows.{table.key})")
        attached.append(table.name)
    return attached
