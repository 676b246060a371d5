"""Each store table's columns as the migrations leave them: the one definition of the schema.

The Arrow schemas batches are inserted with are derived from here, so a column added by a new
migration reaches the inserts without being written a second time. Read from the migrations'
own text (`CREATE TABLE` bodies, one column per line, and `ALTER TABLE ... ADD COLUMN`);
tests/test_store.py checks the result against the tables DuckDB actually builds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import pyarrow as pa

from evaluator.store.migrations import MIGRATIONS, Migration

TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Naive datetimes are taken as UTC; aware ones are converted to UTC (TIMESTAMPTZ keeps the instant)."""

ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": TIMESTAMP,
}
"""The SQL types the migrations use, and the Arrow type each is inserted as."""

_CREATE = re.compile(r"CREATE TABLE (\w+) \((.*?)\n\s*\);", re.DOTALL)
_ADD = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (\w+) (\w+)")
_CONSTRAINTS = ("PRIMARY KEY", "UNIQUE", "FOREIGN KEY", "CHECK")


def _without_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _columns_of(body: str) -> list[tuple[str, str]]:
    columns = []
    for line in body.splitlines():
        line = line.strip().rstrip(",")
        if line and not line.startswith(_CONSTRAINTS):
            name, sql_type = line.split()[:2]
            columns.append((name, sql_type))
    return columns


def table_columns(migrations: Sequence[Migration] = MIGRATIONS) -> dict[str, list[tuple[str, str]]]:
    """{table: [(column, SQL type), ...]} in DuckDB's column order, after every migration."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for migration in migrations:
        sql = _without_comments(migration.sql)
        for table, body in _CREATE.findall(sql):
            tables[table] = _columns_of(body)
        for table, column, sql_type in _ADD.findall(sql):
            tables[table].append((column, sql_type))
    return tables


@cache
def _latest() -> dict[str, list[tuple[str, str]]]:
    return table_columns()


def arrow_schema(table: str, columns: Sequence[str] | None = None) -> pa.Schema:
    """The Arrow schema of a store table's rows: every column in table order, or the named ones
    in the order given."""
    types = dict(_latest()[table])
    names = [name for name, _ in _latest()[table]] if columns is None else columns
    return pa.schema([(name, ARROW_TYPES[types[name]]) for name in names])
