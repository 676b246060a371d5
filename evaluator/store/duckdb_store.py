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
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb

import evaluator.store.lake as lake_queries
import evaluator.store.latest_queries as latest_queries
import evaluator.store.queries as queries
from evaluator.core.errors import StoreError
from evaluator.core.read_memory import read_memory_mb
from evaluator.core.records import DeadLetter, Evaluation, canonical_json
from evaluator.core.retry import Backoff, RetryPolicy, retry_call
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.store.batches import (
    Batch,
    dead_letters_batch,
    evaluations_batch,
    judge_calls_batch,
    staged,
    traces_batch,
)
from evaluator.store.migrations import apply_migrations, require_current
from evaluator.store.models import RubricSummary, RunRecord, WriteResult
from evaluator.store.schema import column_names
from evaluator.store.scope import PRODUCTION, Scope

if TYPE_CHECKING:
    from evaluator.store.stored_keys import StoredKeys

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
"""DuckDB's memory limit for the sink's writes. Unbounded (DuckDB's default is 80% of RAM), a
checkpoint rewrites row groups in memory, so a writer grew with the table (+230 MB for a
checkpoint at 245,000 evaluations; +75 MB at 64 MB): DuckDB evicts to the file instead
(benchmarks/bench_run.py's memory rows). The tables written most have no key index to hold
(migration 12), so the limit holds however large the store grows; a write that still does not
fit (a big latest_verdicts join, the key indexes of the small tables) doubles it."""

RUN_WRITER_MEMORY_MB = 32
"""The limit for the embedded run's writes (`evaluator run`: batches of at most a few thousand
evaluations; the service's sink may drain a backlog in batches of 20,000 rows). A write that
may repeat stored ids scans them (no key index; a batch of new ids skips the scan while the
writer's store.stored_keys filter is under its capacity), and DuckDB keeps the blocks it read up
to its limit: at 64 MB
that cache grew with the store, 3 MB at 100,000 traces to ~40 MB past 1,000,000, the run's
main growth in memory; at 32 MB it stops at ~10-12 MB. A write of 10,000 evaluations into a
store of ~900,000 fits in 32 MB (24 does not)."""


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
        """Open, write one batch, close: the sink's pattern. The batches are built before the
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
    def memory_limit_mb(self) -> int | None:
        """DuckDB's memory limit this Store set, in MB (None: DuckDB's own, 80 % of RAM)."""
        return self._memory_limit_mb

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
        stored_keys: StoredKeys | None = None,
    ) -> WriteResult:
        """Insert all of them in one transaction; rows whose key is already stored are skipped.
        `received_at` stamps the traces (default: now; backfills and simulations set it).
        `stored_keys` (a writer that holds the file across writes keeps one for it) lets a
        batch of new ids skip the scans of the stored ids."""
        self._writable()
        return self._insert_tables(_batch_tables(evaluations, traces, dead_letters, judge_calls,
                                                 received_at), stored_keys)

    def _insert_tables(self, tables: dict[str, Batch],
                       stored_keys: StoredKeys | None = None) -> WriteResult:
        """A write that runs out of a set memory limit is tried again under twice the limit."""
        while True:
            try:
                return self._insert_tables_once(tables, stored_keys)
            except duckdb.OutOfMemoryException as exc:
                if not self._memory_limit_mb:
                    raise StoreError(f"writing a batch to {self.path} failed, nothing was written:"
                                     f" {exc}") from exc
                self._memory_limit_mb *= 2
                _WRITES_NEEDED_MB[self.path.resolve()] = self._memory_limit_mb
                log.warning("the store %s needs more memory to write than its limit: DuckDB's "
                            "memory limit is now %d MB", self.path, self._memory_limit_mb)
                self._writable().execute(f"SET memory_limit = '{int(self._memory_limit_mb)}MB'")

    def _insert_tables_once(self, tables: dict[str, Batch],
                            stored_keys: StoredKeys | None) -> WriteResult:
        conn = self._writable()
        inserted: dict[str, int] = {}
        new_evaluation_ids: frozenset[str] = frozenset()
        keys = stored_keys.batch_keys(tables) if stored_keys is not None else None
        conn.begin()
        try:
            all_new = stored_keys is not None and keys is not None and stored_keys.all_new(conn, keys)
            for name, batch in tables.items():
                with staged(conn, f"_batch_{name}", batch) as view:
                    ids = _insert_new(conn, name, view, checked=all_new and name in NEW_WHEN_CHECKED)
                    inserted[name] = len(ids)
                    if name == "evaluations":
                        new_evaluation_ids = frozenset(ids)
                        latest_queries.record_written(conn, view, new_evaluation_ids, new_groups=all_new)
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
        if stored_keys is not None and keys is not None:
            stored_keys.written(keys, inserted.get("traces", 0), inserted.get("evaluations", 0))
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
                  received_at: datetime | None = None) -> dict[str, Batch]:
    """Only non-empty tables: an empty batch costs no statement."""
    tables: dict[str, Batch] = {}
    if judge_calls:
        tables["judge_calls"] = judge_calls_batch(judge_calls)
    if traces:
        tables["traces"] = traces_batch(traces, received_at)
    if evaluations:
        tables["evaluations"] = evaluations_batch(evaluations)
    if dead_letters:
        tables["dead_letters"] = dead_letters_batch(dead_letters)
    return tables


_KEYS = {"traces": "trace_id", "evaluations": "evaluation_id", "judge_calls": "call_id",
         "dead_letters": "dead_letter_id"}
"""The id each written table is deduplicated on. traces, evaluations and judge calls have no key
index (migration 12): DuckDB would hold it whole in memory to insert."""


NEW_WHEN_CHECKED = frozenset({"traces", "evaluations"})
"""The tables whose batch rows are known new when StoredKeys finds none of their ids stored."""


def _insert_new(conn: duckdb.DuckDBPyConnection, name: str, batch: str, checked: bool = False) -> list[str]:
    """Insert the rows of the staged `batch` (one per id: store.batches) whose id is not stored
    yet; return the ids inserted. The check reads the table's id column (a scan: no key index),
    inside the writing transaction, so it sees every committed row (one writer at a time: the
    sink is the one writer of these tables); `checked`: StoredKeys found none of the batch's
    ids stored, so the rows are inserted without it."""
    key = _KEYS[name]
    columns = ", ".join(column_names(name))
    unstored = "" if checked else f" WHERE NOT EXISTS (SELECT 1 FROM {name} s WHERE s.{key} = b.{key})"
    rows = conn.execute(
        f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {batch} b{unstored} RETURNING {key}"
    ).fetchall()
    return [row[0] for row in rows]
