"""The ids a writer knows to be stored, so that a held writer's writes do not scan the store.

Traces and evaluations have no key index (migration 12): a write inserts the rows whose id is not
stored yet, found by an anti-join that scans the table's id column, and keeping latest_verdicts
joins the batch's groups to the whole table. Each write's cost grew with the store, and with it
the results waiting behind it (issue 23: the embedded run's memory grew with the traces read).

A writer that holds the store across writes (the embedded run's sink) keeps here a 64-bit hash
(blake2b) of every stored trace id and evaluation id, ~8 bytes an id, in a sorted numpy array
(the latest in a set, merged MERGE_AT at a time). A batch whose ids and trace ids all miss it
is new: its rows are inserted without the anti-join, and its latest_verdicts groups (each names
a trace id) have no stored row to replace. A batch with any match (a trace judged again, a
repeat inside the run, or a 2^-64 false match) is written the usual way.

The hashes describe the rows this writer has seen. Before a write they are checked against the
tables' row counts after this writer's last write: another writer (the file is released between
writes so readers get it; a writer may get it too) or a move to the lake changes the counts, and
the hashes are read again (one scan). Another writer deleting exactly as many rows as it inserts
between two writes would go unseen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from evaluator.core.records import hash64

if TYPE_CHECKING:
    from evaluator.store.batches import Batch

MERGE_AT = 16_384
"""Hashes held in a set (~90 bytes each) before they are merged into the sorted array (each
merge copies it: ~60 merges at a million ids)."""

_KEYED_COLUMNS = {"traces": ("trace_id",), "evaluations": ("trace_id", "evaluation_id")}
"""The columns whose ids decide whether a batch's rows can already be stored."""

_LOAD_ROWS = 100_000
"""Stored ids hashed at a time when the hashes are read from the store."""


class StoredKeys:
    """Hashes of the stored trace ids and evaluation ids, for one writer of one file."""

    def __init__(self, merge_at: int = MERGE_AT) -> None:
        self._merge_at = merge_at
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()
        self._counts: tuple[int, int] | None = None
        """The traces' and evaluations' row counts the hashes describe (None: not read yet)."""

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    @staticmethod
    def batch_keys(tables: dict[str, Batch]) -> set[int]:
        """The hashes of the batch's keyed ids."""
        return {key for name, batch in tables.items() for column in _KEYED_COLUMNS.get(name, ())
                for key in _hashes(batch.columns[batch.names.index(column)])}

    def all_new(self, conn: duckdb.DuckDBPyConnection, keys: set[int]) -> bool:
        """Whether none of `keys` can be stored (read the hashes again first, in the writer's
        open transaction, when the tables changed since this writer's last write)."""
        counts = _row_counts(conn)
        if counts != self._counts:
            self._load(conn, counts)
        if not keys.isdisjoint(self._recent):
            return False
        if not len(self._sorted):
            return True
        batch = np.fromiter(keys, dtype=np.uint64, count=len(keys))
        at = np.minimum(np.searchsorted(self._sorted, batch), len(self._sorted) - 1)
        return not (self._sorted[at] == batch).any()

    def written(self, keys: set[int], traces: int, evaluations: int) -> None:
        """After a commit: the batch's keys are stored, and the tables grew by these rows."""
        if self._counts is None:
            return
        self._counts = (self._counts[0] + traces, self._counts[1] + evaluations)
        self._recent |= keys
        if len(self._recent) >= self._merge_at:
            self._merge()

    def _load(self, conn: duckdb.DuckDBPyConnection, counts: tuple[int, int]) -> None:
        result = conn.execute("SELECT trace_id FROM traces UNION ALL SELECT trace_id FROM evaluations"
                              " UNION ALL SELECT evaluation_id FROM evaluations")
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent = set()
        while rows := result.fetchmany(_LOAD_ROWS):  # to the end: the connection is free again
            self._recent.update(_hashes(row[0] for row in rows))
            self._merge()
        self._counts = counts

    def _merge(self) -> None:
        recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
        recent.sort()
        self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, recent), recent)
        self._recent = set()


def _hashes(ids: Iterable[str]) -> Iterable[int]:
    return (hash64(i) for i in ids)


def _row_counts(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    [(traces, evaluations)] = conn.execute(
        "SELECT (SELECT count(*) FROM traces), (SELECT count(*) FROM evaluations)").fetchall()
    return int(traces), int(evaluations)
