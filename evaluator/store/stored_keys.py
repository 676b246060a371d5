"""The ids a writer knows to be stored, so that a held writer's writes do not scan the store.

Traces and evaluations have no key index (migration 12): a write inserts the rows whose id is not
stored yet, found by an anti-join that scans the table's id column, and keeping latest_verdicts
joins the batch's groups to the whole table. Each write's cost grew with the store, and with it
the results waiting behind it (issue 23: the embedded run's memory grew with the traces read).

A writer that holds the store across writes (the embedded run's sink) keeps here every stored
trace id and evaluation id in a Bloom filter (rbloom) of a fixed size: CAPACITY ids at a false
match rate of FALSE_MATCH_RATE, ~8 MB from the first write on, however long the run. A batch
whose ids and trace ids all miss it is new: its rows are inserted without the anti-join, and its
latest_verdicts groups (each names a trace id) have no stored row to replace. A batch with any
match (a trace judged again, a repeat inside the run, or a false match: ~1 batch in 4,000 of
2,400 ids at capacity) is written the usual way. Past CAPACITY ids (a run of ~2,000,000 traces
at rate 0.1, ~330,000 at rate 1.0) false matches would grow with every id, so the filter is
dropped from use: every later batch takes the anti-join, memory stays where it is and each
write costs what it did before this module.

The filter describes the rows this writer has seen. Before a write it is checked against the
tables' row counts after this writer's last write: another writer (the file is released between
writes so readers get it; a writer may get it too) or a move to the lake changes the counts, and
the ids are read again (one scan; none when the tables hold more than CAPACITY rows). Another
writer deleting exactly as many rows as it inserts between two writes would go unseen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import duckdb
from rbloom import Bloom

if TYPE_CHECKING:
    from evaluator.store.batches import Batch

CAPACITY = 2_000_000
"""Ids the filter holds at FALSE_MATCH_RATE (its size: ~34 bits an id, 8 MB)."""
FALSE_MATCH_RATE = 1e-7
"""The chance that a new id matches the filter at CAPACITY (less below it)."""

_KEYED_COLUMNS = {"traces": ("trace_id",), "evaluations": ("trace_id", "evaluation_id")}
"""The columns whose ids decide whether a batch's rows can already be stored."""

_LOAD_ROWS = 100_000
"""Stored ids read at a time when the filter is filled from the store."""


class StoredKeys:
    """The stored trace ids and evaluation ids, for one writer of one file."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._filter = Bloom(capacity, FALSE_MATCH_RATE)  # by Python's hash: this process's
        self._held = 0
        self._full = False
        """Past capacity: the filter answers nothing until the ids are read again."""
        self._counts: tuple[int, int] | None = None
        """The traces' and evaluations' row counts the filter describes (None: not read yet)."""

    def __len__(self) -> int:
        """The ids in the filter (0 once it is past its capacity)."""
        return 0 if self._full else self._held

    @staticmethod
    def batch_keys(tables: dict[str, Batch]) -> set[str]:
        """The batch's keyed ids."""
        return {key for name, batch in tables.items() for column in _KEYED_COLUMNS.get(name, ())
                for key in batch.columns[batch.names.index(column)]}

    def all_new(self, conn: duckdb.DuckDBPyConnection, keys: set[str]) -> bool:
        """Whether none of `keys` can be stored (read the ids again first, in the writer's open
        transaction, when the tables changed since this writer's last write)."""
        counts = _row_counts(conn)
        if counts != self._counts:
            self._load(conn, counts)
        return not self._full and not any(key in self._filter for key in keys)

    def written(self, keys: set[str], traces: int, evaluations: int) -> None:
        """After a commit: the batch's keys are stored, and the tables grew by these rows."""
        if self._counts is None:
            return
        self._counts = (self._counts[0] + traces, self._counts[1] + evaluations)
        self._add(keys)

    def _add(self, keys: Iterable[str]) -> None:
        if self._full:
            return
        fresh = [key for key in keys if key not in self._filter]
        if self._held + len(fresh) > self._capacity:
            self._full = True
            return
        self._filter.update(fresh)
        self._held += len(fresh)

    def _load(self, conn: duckdb.DuckDBPyConnection, counts: tuple[int, int]) -> None:
        self._filter.clear()
        self._held = 0
        # the stored trace ids and evaluation ids are distinct rows: at least this many ids
        self._full = sum(counts) > self._capacity
        if not self._full:
            result = conn.execute("SELECT trace_id FROM traces UNION ALL SELECT trace_id FROM"
                                  " evaluations UNION ALL SELECT evaluation_id FROM evaluations")
            while rows := result.fetchmany(_LOAD_ROWS):  # to the end: the connection is free again
                self._add({row[0] for row in rows})
        self._counts = counts


def _row_counts(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    [(traces, evaluations)] = conn.execute(
        "SELECT (SELECT count(*) FROM traces), (SELECT count(*) FROM evaluations)").fetchall()
    return int(traces), int(evaluations)
