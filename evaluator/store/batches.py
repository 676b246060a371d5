"""Records -> one batch of columns per store table, so a batch is inserted in one statement.

Column by column with explicit types: far cheaper than row tuples, and it keeps None as NULL
(an all-None column still gets its real type). The columns and their types are the tables' own,
derived from the migrations (store.schema). Duplicate keys are dropped here, first wins.

A batch reaches DuckDB in one of two ways (`staged`): a big one as an Arrow table (per row the
cheapest), a small one as its columns bound as list parameters, without pyarrow. pyarrow costs
~70 ms to import, and wherever pandas is installed its first conversion imports pandas too
(~250 ms, only to check whether the values are a pandas object): a run of a few traces, whose
batches are all small, would pay that on each run (issue 23's fixed cost).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from evaluator.core.records import ClaimVerdict, DeadLetter, Evaluation, utcnow
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.store.schema import column_types

if TYPE_CHECKING:
    import pyarrow as pa

SMALL_BATCH_ROWS = 256
"""Up to this many rows a batch is bound as lists: about as fast as Arrow there (5-200 rows,
measured on the evaluations table), ~1.7x slower per row at 1,000 rows."""

T = TypeVar("T")


def first_per_key(items: Iterable[T], key: Callable[[T], str]) -> list[T]:
    """Drop later items whose key was already seen (a batch may carry a redelivered result)."""
    seen: set[str] = set()
    kept: list[T] = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept


@dataclass(frozen=True)
class Batch:
    """One store table's rows, column by column, in the table's column order."""

    table: str
    names: tuple[str, ...]
    sql_types: tuple[str, ...]
    columns: tuple[tuple[Any, ...], ...]
    rows: int

    def arrow(self) -> pa.Table:
        import pyarrow as pa  # lazy: see the module's docstring

        from evaluator.store.schema import arrow_types

        types = arrow_types()
        return pa.table([pa.array(column, type=types[sql_type]) for column, sql_type
                         in zip(self.columns, self.sql_types, strict=True)], names=list(self.names))


def _batch(table: str, rows: Sequence[dict[str, Any]]) -> Batch:
    names, sql_types = zip(*column_types(table), strict=True)
    pick = itemgetter(*names)
    # transpose in C, not one comprehension per column
    columns = tuple(zip(*[pick(row) for row in rows], strict=True)) if rows else tuple(() for _ in names)
    return Batch(table, names, sql_types, columns, len(rows))


@contextmanager
def staged(conn: duckdb.DuckDBPyConnection, view: str, batch: Batch) -> Iterator[str]:
    """The batch readable as `view` in the connection's statements for the duration (inside the
    writing transaction): a temporary table filled from its columns bound as lists when it is
    small, a registered Arrow table otherwise."""
    small = batch.rows <= SMALL_BATCH_ROWS
    if small:
        unnested = ", ".join(f"unnest(${n}::{t}[]) AS {name}" for n, (name, t)
                             in enumerate(zip(batch.names, batch.sql_types, strict=True), start=1))
        conn.execute(f"CREATE TEMPORARY TABLE {view} AS SELECT {unnested}", [list(c) for c in batch.columns])
    else:
        conn.register(view, batch.arrow())
    try:
        yield view
    finally:
        # after a failed statement the aborted transaction refuses this, and the statement's own
        # error is the one to raise (the temporary table or view goes with the rollback)
        with suppress(duckdb.TransactionException):
            if small:
                conn.execute(f"DROP TABLE {view}")
            else:
                conn.unregister(view)


def evaluations_batch(evaluations: Sequence[Evaluation]) -> Batch:
    unique = first_per_key(evaluations, lambda e: e.evaluation_id)
    return _batch("evaluations", [{**e.__dict__, **e.usage.flat()} if e.claims is None else
                                      {**e.__dict__, **e.usage.flat(), "claims": claims_json(e.claims)}
                                      for e in unique])


def claims_json(claims: Sequence[ClaimVerdict]) -> str:
    """The claims column: a JSON list of {claim, verdict, evidence}."""
    return json.dumps([claim.model_dump() for claim in claims], ensure_ascii=False)


def judge_calls_batch(calls: Sequence[JudgeCall]) -> Batch:
    unique = first_per_key(calls, lambda c: c.call_id)
    return _batch("judge_calls", [c.flat() for c in unique])


def dead_letters_batch(dead_letters: Sequence[DeadLetter]) -> Batch:
    unique = first_per_key(dead_letters, lambda d: d.dead_letter_id)
    return _batch("dead_letters", [d.__dict__ for d in unique])


def traces_batch(traces: Sequence[StoredTrace], received_at: datetime | None = None) -> Batch:
    received_at = received_at or utcnow()
    unique = first_per_key(traces, lambda s: s.trace.trace_id)
    rows = [
        {
            "trace_id": s.trace.trace_id,
            "trace_json": s.trace.model_dump_json(),
            "model": s.trace.model,
            "provider": s.trace.provider,
            "prompt_version": s.trace.prompt_version,
            "status": s.trace.status,
            "feedback": s.trace.feedback,
            "finish_reason": s.trace.finish_reason,
            "sample_reason": s.sample_reason,
            "sample_weight": s.sample_weight,
            "start_time": s.trace.start_time,
            "received_at": received_at,
            "input_hash": s.trace.input_hash,
        }
        for s in unique
    ]
    return _batch("traces", rows)
