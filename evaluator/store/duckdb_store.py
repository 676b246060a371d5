"""The DuckDB store: batched idempotent writes, run bookkeeping and the summaries reports read.

DuckDB admits one read-write process or several read-only ones per file, and the sink must not
starve `evaluator report`. So a writer holds the file only for one batch (`Store.write_once`, or
`with Store(path) as s: s.write_batch(...)`), and every open waits out a lock held by another
process, with short backoff, up to lock_timeout_s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

import evaluator.store.lake as lake_queries
import evaluator.store.latest_queries as latest_queries
import evaluator.store.queries as queries
from evaluator.core.errors import StoreError
from evaluator.core.read_memory import read_memory_mb
from evaluator.core.records import DeadLetter, Evaluation, canonical_json
from evaluator.core.retry import Backoff, RetryPolicy, retry_call
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.store.arrow_batches import (
    dead_letters_table,
    evaluations_table,
    judge_calls_table,
    traces_table,
)
from evaluator.store.migrations import apply_migrations, require_current
from evaluator.store.models import RubricSummary, RunRecord, WriteResult
from evaluator.store.scope import PRODUCTION, Scope

_LOCK_MESSAGES = (
    "could not set lock",
    "conflicting lock",
    # Same process, other mode (a read-only report while the sink thread writes): wait it out too.
    "different configuration than existing connections",
)

log = logging.getLogger(__name__)


def _is_lock_conflict(exc: BaseException) -> bool:
    """Another process (or a Store of this process in the other mode) holds the file."""
    if not isinstance(exc, (duckdb.IOException, duckdb.ConnectionException)):
        return False
    message = str(exc).lower()
    return any(text in message for text in _LOCK_MESSAGES)


_LOCK_WAIT = RetryPolicy(Backoff(base_s=0.005, cap_s=0.05, jitter="half"), _is_lock_conflict)
"""Short waits while the lock is held: 5 ms doubling to 50 ms, each drawn from its upper half."""


def _connect(path: Path, read_only: bool, lock_timeout_s: float) -> duckdb.DuckDBPyConnection:
    try:
        return retry_call(lambda: duckdb.connect(str(path), read_only=read_only),
                          replace(_LOCK_WAIT, deadline_s=lock_timeout_s))
    except duckdb.Error as exc:
        if _is_lock_conflict(exc):
            raise StoreError(
                f"the store {path} is locked: another process holds it (or a Store in this"
                f" process opened in the other mode); waited {lock_timeout_s:g}s. DuckDB allows"
                f" one writer or several readers at a time: retry when it is done. ({exc})"
            ) from exc
        raise StoreError(f"cannot open the store {path}: {exc}") from exc


WRITER_MEMORY_MB = 64
"""DuckDB's memory limit for the sink's writes. Unbounded (DuckDB's default is 80% of RAM), an
insert loads the primary keys' indexes and a checkpoint rewrites row groups in memory, so a
writer grew with the table: +90 MB for an insert at 245,000 evaluations, +230 MB for a
checkpoint. At 64 MB the same insert takes +65 MB and the checkpoint +75 MB (128 MB: +80 and
+135); DuckDB evicts to the file instead (benchmarks/bench_run.py's memory rows). The key
indexes themselves must fit: a store that outgrows the limit doubles it (4,000,000 evaluations
needed 256 MB)."""


_WRITES_NEEDED_MB: dict[Path, int] = {}
"""The memory limit a file's writes were raised to in this process: the sink opens the file
for each batch, and each would run out of memory under the first limit again."""

_MIGRATING: dict[Path, threading.Lock] = {}
_MIGRATING_GUARD = threading.Lock()


def _migration_lock(path: Path) -> threading.Lock:
    """One lock per file in this process. DuckDB's file lock keeps other processes out, but the
    threads of one process (a worker's sink and its alert schedule) share one database: both
    would see a new file's migrations pending and the second would fail on the first's tables."""
    with _MIGRATING_GUARD:
        return _MIGRATING.setdefault(path.resolve(), threading.Lock())


class Store:
    """One open DuckDB file. Use one Store per thread, and close it as soon as you can."""

    def __init__(self, path: str | Path, read_only: bool = False, lock_timeout_s: float = 10.0,
                 lake: Path | None = None, memory_limit_mb: int | None = None):
        """With `lake` (a Parquet lake directory, evaluator.store.lake), every query reads the
        evaluations, traces and judge calls of DuckDB and of the lake together. Writes to those
        tables need a Store opened without it. `memory_limit_mb`: DuckDB's memory limit
        (default: evaluator.core.read_memory's when read-only, else DuckDB's own, 80 % of RAM:
        writes build indexes in memory)."""
        self.path = Path(path)
        self.read_only = read_only
        self.reads_lake = False
        """Whether `evaluations` reads the lake's rows too (then latest_verdicts, which describes
        DuckDB's rows, is not what readers rank: evaluator.store.latest_queries)."""
        if read_only and not self.path.exists():
            raise StoreError(
                f"no store at {self.path}: run `evaluator run` first (it creates the database)"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: duckdb.DuckDBPyConnection | None = _connect(self.path, read_only, lock_timeout_s)
        try:
            self._conn.execute("SET TimeZone = 'UTC'")
            if read_only:
                require_current(self._conn, str(self.path))
            else:
                with _migration_lock(self.path):
                    apply_migrations(self._conn, str(self.path))
            self._memory_limit_mb = (read_memory_mb() if memory_limit_mb is None and read_only
                                     else memory_limit_mb)
            if self._memory_limit_mb and not read_only:  # what writes here needed before
                self._memory_limit_mb = max(self._memory_limit_mb,
                                            _WRITES_NEEDED_MB.get(self.path.resolve(), 0))
            if self._memory_limit_mb:  # after migrating: a migration may rank and index every row
                self._conn.execute(f"SET memory_limit = '{int(self._memory_limit_mb)}MB'")
            if lake is not None:
                try:
                    attached = lake_queries.attach_lake(self._conn, Path(lake))
                    self.reads_lake = "evaluations" in attached
                except duckdb.Error as exc:
                    raise StoreError(
                        f"cannot read the Parquet lake {lake}: {str(exc).splitlines()[0]}; restore or"
                        " remove the damaged file (export the day again from DuckDB if it is still"
                        " there), or unset EVALUATOR_LAKE_DIR to read DuckDB alone") from exc
        except BaseException:
            self.close()
            raise

    @classmethod
    def write_once(
        cls,
        path: str | Path,
        evaluations: Sequence[Evaluation] = (),
        traces: Sequence[StoredTrace] = (),
        dead_letters: Sequence[DeadLetter] = (),
        lock_timeout_s: float = 10.0,
        judge_calls: Sequence[JudgeCall] = (),
        memory_limit_mb: int | None = None,
    ) -> WriteResult:
        """Open, write one batch, close: the sink's pattern. Arrow tables are built before the
        file is opened, so the lock is held only for the insert itself."""
        tables = _batch_tables(evaluations, traces, dead_letters, judge_calls)
        with cls(path, lock_timeout_s=lock_timeout_s, memory_limit_mb=memory_limit_mb) as store:
            return store._insert_tables(tables)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        """The raw connection: for the store's own query modules (and tests that inspect a file).
        Everything else calls a named query of evaluator.store."""
        if self._conn is None:
            raise StoreError(f"the store {self.path} is closed")
        return self._conn

    def _writable(self) -> duckdb.DuckDBPyConnection:
        if self.read_only:
            raise StoreError(f"the store {self.path} was opened read-only; open it read-write to write")
        return self.conn

    # -- the Parquet lake -------------------------------------------------------------------------

    def export_to_lake(self, lake: Path, since: date | None = None,
                       until: date | None = None) -> list[lake_queries.DayExport]:
        """Write (merge) the days in [since, until) into the lake; DuckDB keeps its rows."""
        return [lake_queries.export_day(self.conn, lake, day)
                for day in lake_queries.hot_days(self.conn, before=until, since=since)]

    def roll_to_lake(self, lake: Path, before: date,
                     chunk_rows: int = lake_queries.ROLL_CHUNK_ROWS) -> list[lake_queries.DayExport]:
        """Move every day before `before` to the lake on this connection: export each day, check
        that the lake holds each of its rows (counts read back), then delete it chunk by chunk.
        The sink runs the same steps, closing the file between them."""
        rolled = []
        for day in self.days_to_roll(before):
            exported = self.export_day_for_roll(lake, day)
            for chunk in self.roll_chunks(day, chunk_rows):
                self.delete_rolled_chunk(lake, chunk)
            rolled.append(exported)
        return rolled

    def days_to_roll(self, before: date) -> list[date]:
        """Days (UTC) before `before` with rows in DuckDB's evaluations, traces or judge calls."""
        return lake_queries.hot_days(self._writable(), before=before)

    def export_day_for_roll(self, lake: Path, day: date) -> lake_queries.DayExport:
        """Export (merge) the day, then check that the lake holds each of its rows: else a
        StoreError, before anything is deleted."""
        conn = self._writable()
        exported = lake_queries.export_day(conn, lake, day)
        for table in lake_queries.LAKE_TABLES:
            found = lake_queries.lake_count(conn, lake, table, day)
            if found != exported.rows[table.name]:
                raise StoreError(f"the lake {lake} holds {found} {table.name} rows of {day}, "
                                 f"not the {exported.rows[table.name]} exported: nothing was "
                                 "deleted from DuckDB; check the lake's disk and export again")
        return exported

    def roll_chunks(self, day: date, rows: int) -> list[lake_queries.RollChunk]:
        """The day's rows of each lake table in slices of about `rows` (delete_rolled_chunk)."""
        conn = self._writable()
        return [chunk for table in lake_queries.LAKE_TABLES
                for chunk in lake_queries.roll_chunks(conn, table, day, rows)]

    def delete_rolled_chunk(self, lake: Path, chunk: lake_queries.RollChunk) -> lake_queries.ChunkDeleted:
        """Delete the chunk's rows that the lake holds, in one transaction."""
        return lake_queries.delete_chunk(self._writable(), lake, chunk)

    def checkpoint(self) -> None:
        """Write the WAL into the file now (its size then tells what the data takes)."""
        self._writable().execute("CHECKPOINT")

    # -- writes ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The statements run inside commit together, or none of them does."""
        conn = self.conn
        conn.begin()
        try:
            yield
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def write_batch(
        self,
        evaluations: Sequence[Evaluation] = (),
        traces: Sequence[StoredTrace] = (),
        dead_letters: Sequence[DeadLetter] = (),
        judge_calls: Sequence[JudgeCall] = (),
        received_at: datetime | None = None,
    ) -> WriteResult:
        """Insert all of them in one transaction; rows whose key is already stored are skipped.
        `received_at` stamps the traces (default: now; backfills and simulations set it)."""
        self._writable()
        return self._insert_tables(_batch_tables(evaluations, traces, dead_letters, judge_calls,
                                                 received_at))

    def _insert_tables(self, tables: dict[str, pa.Table]) -> WriteResult:
        """A write that runs out of a set memory limit is tried again under twice the limit:
        DuckDB holds a table's key index in memory to insert into it, so what a writer needs
        grows with the store (the limit bounds what it takes beyond that)."""
        while True:
            try:
                return self._insert_tables_once(tables)
            except duckdb.OutOfMemoryException as exc:
                if not self._memory_limit_mb:
                    raise StoreError(f"writing a batch to {self.path} failed, nothing was written:"
                                     f" {exc}") from exc
                self._memory_limit_mb *= 2
                _WRITES_NEEDED_MB[self.path.resolve()] = self._memory_limit_mb
                log.warning("the store %s needs more memory to write than its limit: DuckDB's "
                            "memory limit is now %d MB", self.path, self._memory_limit_mb)
                self._writable().execute(f"SET memory_limit = '{int(self._memory_limit_mb)}MB'")

    def _insert_tables_once(self, tables: dict[str, pa.Table]) -> WriteResult:
        conn = self._writable()
        inserted: dict[str, int] = {}
        new_evaluation_ids: frozenset[str] = frozenset()
        conn.begin()
        try:
            for name, table in tables.items():
                if name == "evaluations":
                    new_evaluation_ids = frozenset(_insert_or_ignore_returning(
                        conn, name, table, "evaluation_id"))
                    inserted[name] = len(new_evaluation_ids)
                    latest_queries.record_written(conn, table, new_evaluation_ids)
                else:
                    inserted[name] = _insert_or_ignore(conn, name, table)
            conn.commit()
        except duckdb.OutOfMemoryException:
            conn.rollback()
            raise
        except duckdb.Error as exc:
            conn.rollback()
            raise StoreError(f"writing a batch to {self.path} failed, nothing was written: {exc}") from exc
        except BaseException:
            conn.rollback()
            raise
        return WriteResult(**inserted, new_evaluation_ids=new_evaluation_ids)

    def start_run(self, run_id: str, kind: str, params: dict[str, Any]) -> None:
        try:
            self._writable().execute(
                "INSERT INTO runs (run_id, kind, started_at, status, params)"
                " VALUES (?, ?, now(), 'running', ?)",
                [run_id, kind, canonical_json(params)],
            )
        except duckdb.ConstraintException as exc:
            raise StoreError(f"run {run_id!r} already exists in {self.path}; use a new run id") from exc

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None,
                   manifest: dict[str, Any] | None = None) -> None:
        """Mark a run done; a None summary or manifest keeps what is stored."""
        row = self._writable().execute(
            "UPDATE runs SET finished_at = now(), status = ?,"
            " summary = coalesce(?, summary), manifest = coalesce(?, manifest)"
            " WHERE run_id = ? RETURNING run_id",
            [status, _json_or_none(summary), _json_or_none(manifest), run_id],
        ).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}: call start_run first")

    # -- reads ----------------------------------------------------------------------------------

    def check_scope(self, scope: Scope) -> Scope:
        """The scope, once a run it names is known to exist here (else a StoreError)."""
        return scope.check(self.conn, str(self.path))

    def rubric_summary(self, scope: Scope = PRODUCTION) -> list[RubricSummary]:
        return queries.rubric_summary(self.conn, scope)

    def status_counts(self, scope: Scope = PRODUCTION) -> dict[str, int]:
        return queries.status_counts(self.conn, scope)

    def judged_before(self, scope: Scope) -> int:
        return queries.judged_before(self.conn, scope)

    def dead_letter_count(self) -> int:
        [(count,)] = self.conn.execute("SELECT count(*) FROM dead_letters").fetchall()
        return count

    def evaluations(self, run_id: str | None = None, trace_id: str | None = None,
                    rubric: str | None = None, limit: int | None = None) -> list[Evaluation]:
        """Stored rows (of every run, or of one), oldest first (created_at, then evaluation_id)."""
        scope = Scope.everything() if run_id is None else Scope.run(run_id)
        return queries.evaluations(self.conn, scope, trace_id, rubric, limit)

    def traces(self, trace_ids: Sequence[str] | None = None) -> list[StoredTrace]:
        """Stored traces (all, or those with the given ids), oldest first."""
        return queries.stored_traces(self.conn, None if trace_ids is None else list(trace_ids))

    def runs(self, kind: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Newest first."""
        return queries.runs(self.conn, None, kind, limit)

    def run(self, run_id: str) -> RunRecord | None:
        found = queries.runs(self.conn, run_id, None, None)
        return found[0] if found else None


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else canonical_json(value)


def _batch_tables(evaluations: Sequence[Evaluation], traces: Sequence[StoredTrace],
                  dead_letters: Sequence[DeadLetter],
                  judge_calls: Sequence[JudgeCall] = (),
                  received_at: datetime | None = None) -> dict[str, pa.Table]:
    """Only non-empty tables: an empty batch costs no statement."""
    tables: dict[str, pa.Table] = {}
    if judge_calls:
        tables["judge_calls"] = judge_calls_table(judge_calls)
    if traces:
        tables["traces"] = traces_table(traces, received_at)
    if evaluations:
        tables["evaluations"] = evaluations_table(evaluations)
    if dead_letters:
        tables["dead_letters"] = dead_letters_table(dead_letters)
    return tables


def _insert_or_ignore(conn: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> int:
    view = f"_batch_{name}"
    columns = ", ".join(table.schema.names)
    conn.register(view, table)
    try:
        row = conn.execute(f"INSERT OR IGNORE INTO {name} ({columns}) SELECT {columns} FROM {view}").fetchone()
    finally:
        _unregister(conn, view)
    return row[0] if row else 0


def _insert_or_ignore_returning(conn: duckdb.DuckDBPyConnection, name: str, table: pa.Table,
                                key: str) -> list[str]:
    """As _insert_or_ignore, returning the keys of the rows inserted (not those already stored)."""
    view = f"_batch_{name}"
    columns = ", ".join(table.schema.names)
    conn.register(view, table)
    try:
        rows = conn.execute(f"INSERT OR IGNORE INTO {name} ({columns}) SELECT {columns} FROM {view}"
                            f" RETURNING {key}").fetchall()
    finally:
        _unregister(conn, view)
    return [row[0] for row in rows]


def _unregister(conn: duckdb.DuckDBPyConnection, view: str) -> None:
    """Drop a registered batch; after a failed statement the aborted transaction refuses it,
    and the statement's own error is the one to raise (the view goes with the rollback)."""
    with suppress(duckdb.TransactionException):
        conn.unregister(view)
