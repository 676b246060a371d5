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
from typing import TYPE_CHECKING

from evaluator.store.migrations import MIGRATIONS, Migration

if TYPE_CHECKING:
    import pyarrow as pa


@cache
def arrow_types() -> dict[str, pa.DataType]:
    """The SQL types the migrations use, and the Arrow type each is inserted as. TIMESTAMPTZ:
    naive datetimes are taken as UTC; aware ones are converted to UTC (it keeps the instant)."""
    # lazy: pyarrow (and numpy under it) costs ~0.15 s to import; read commands never build Arrow tables
    import pyarrow as pa

    return {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(),
            "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(),
            "TIMESTAMPTZ": pa.timestamp("us", tz="UTC")}


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


def column_types(table: str) -> list[tuple[str, str]]:
    """A store table's (column, SQL type) pairs, in table order."""
    return list(_latest()[table])


def column_names(table: str) -> list[str]:
    """A store table's columns, in table order."""
    return [name for name, _ in _latest()[table]]


def struct_type(table: str) -> str:
    """The DuckDB STRUCT type of a store table's rows (every column, in table order): rows
    passed as a list parameter are cast to a list of it, without building an Arrow table."""
    return "STRUCT(" + ", ".join(f"{name} {sql_type}" for name, sql_type in _latest()[table]) + ")"


def arrow_schema(table: str, columns: Sequence[str] | None = None) -> pa.Schema:
    """The Arrow schema of a store table's rows: every column in table order, or the named ones
    in the order given."""
    types = dict(_latest()[table])
    names = column_names(table) if columns is None else columns
    # lazy: pyarrow (and numpy under it) costs ~0.15 s to import; read commands never build Arrow tables
    import pyarrow as pa

    return pa.schema([(name, arrow_types()[types[name]]) for name in names])
