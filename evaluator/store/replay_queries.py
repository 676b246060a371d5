"""SQL for replay runs: the items of a run (migration 3), what is left to do, what each scored.

A replayed item is judged as the trace `<run_id>/<item_id>` (see replay.replay_trace_id), so each
run stores its own evaluations; `replay_items` maps those traces back to dataset item ids, which
is how the gate pairs two runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from evaluator.core.records import canonical_json, utcnow
from evaluator.store.schema import arrow_schema, arrow_types

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

PENDING = "pending"
DONE = "done"

_NEW_ITEMS = arrow_schema("replay_items", ("run_id", "item_id", "position", "trace_id", "item_json",
                                          "status", "updated_at"))
_DONE_ITEMS = arrow_schema("replay_items", ("item_id", "output", "target_error", "target_latency_ms"))


@dataclass(frozen=True)
class ItemDone:
    item_id: str
    output: str | None
    """The regenerated output (None when the stored output was re-judged)."""
    target_error: str | None
    target_latency_ms: float | None


@dataclass(frozen=True)
class ItemOutcome:
    """One rubric's verdict on one replayed item."""

    item_id: str
    rubric: str
    rubric_version: int
    status: str
    label: str | None
    score: float | None
    passed: bool | None


@dataclass(frozen=True)
class PendingItem:
    trace_id: str
    item_json: str


@dataclass(frozen=True)
class ItemCounts:
    total: int
    done: int
    target_errors: int


def _register(conn: duckdb.DuckDBPyConnection, name: str, table: pa.Table,
              sql: str, params: Sequence[Any] = ()) -> None:
    conn.register(name, table)
    try:
        conn.execute(sql, list(params))
    finally:
        conn.unregister(name)


def add_items(store: Store, run_id: str,
              items: Sequence[tuple[str, str, str]]) -> None:
    """(item_id, trace_id, item_json) in dataset order, all pending, in one statement."""
    now = utcnow()
    columns = list(zip(*items, strict=True)) if items else [(), (), ()]
    table = pa.table([
        pa.array([run_id] * len(items), pa.string()),
        pa.array(columns[0], pa.string()),
        pa.array(range(len(items)), pa.int32()),
        pa.array(columns[1], pa.string()),
        pa.array(columns[2], pa.string()),
        pa.array([PENDING] * len(items), pa.string()),
        pa.array([now] * len(items), arrow_types()["TIMESTAMPTZ"]),
    ], schema=_NEW_ITEMS)
    names = ", ".join(_NEW_ITEMS.names)
    _register(store.conn, "_new_replay_items", table,
              f"INSERT INTO replay_items ({names}) SELECT {names} FROM _new_replay_items")


def mark_done(store: Store, run_id: str, done: Sequence[ItemDone]) -> None:
    if not done:
        return
    table = pa.table([
        pa.array([d.item_id for d in done], pa.string()),
        pa.array([d.output for d in done], pa.string()),
        pa.array([d.target_error for d in done], pa.string()),
        pa.array([d.target_latency_ms for d in done], pa.float64()),
    ], schema=_DONE_ITEMS)
    _register(store.conn, "_done_replay_items", table, (
        "UPDATE replay_items SET status = ?, output = d.output, target_error = d.target_error,"
        " target_latency_ms = d.target_latency_ms, updated_at = now()"
        " FROM _done_replay_items d"
        " WHERE replay_items.run_id = ? AND replay_items.item_id = d.item_id"
    ), [DONE, run_id])


def pending_items(store: Store, run_id: str) -> list[PendingItem]:
    """The items not done yet, in dataset order."""
    rows = store.conn.execute(
        "SELECT trace_id, item_json FROM replay_items WHERE run_id = ? AND status = ?"
        " ORDER BY position", [run_id, PENDING]).fetchall()
    return [PendingItem(*row) for row in rows]


def run_cost(store: Store, run_id: str) -> float:
    """What a run's evaluations cost so far (known costs; unknown ones count as 0)."""
    [(cost,)] = store.conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM evaluations WHERE run_id = ?",
                                   [run_id]).fetchall()
    return cost


def item_counts(store: Store, run_id: str) -> ItemCounts:
    [row] = store.conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = ?),"
        " count(*) FILTER (WHERE target_error IS NOT NULL)"
        " FROM replay_items WHERE run_id = ?", [DONE, run_id]).fetchall()
    return ItemCounts(*row)


def item_outcomes(store: Store, run_id: str) -> list[ItemOutcome]:
    """Every evaluation of a run's items, by item id."""
    rows = store.conn.execute(
        "SELECT r.item_id, e.rubric, e.rubric_version, e.status, e.label, e.score, e.passed"
        " FROM replay_items r JOIN evaluations e ON e.trace_id = r.trace_id AND e.run_id = r.run_id"
        " WHERE r.run_id = ? ORDER BY r.position, e.rubric", [run_id]).fetchall()
    return [ItemOutcome(*row) for row in rows]


def item_inputs(store: Store, run_id: str,
                item_ids: Sequence[str]) -> dict[str, str]:
    """item_id -> item_json for some items of a run."""
    rows = store.conn.execute(
        "SELECT item_id, item_json FROM replay_items WHERE run_id = ? AND list_contains(?, item_id)",
        [run_id, list(item_ids)]).fetchall()
    return dict(rows)


def set_running(store: Store, run_id: str,
                manifest: dict[str, Any] | None = None) -> None:
    """Mark a run running again (resume), recording its manifest when given."""
    store.conn.execute(
        "UPDATE runs SET status = 'running', finished_at = NULL,"
        " manifest = coalesce(?, manifest) WHERE run_id = ?",
        [None if manifest is None else canonical_json(manifest), run_id])


@dataclass(frozen=True)
class ItemOutput:
    """What a replayed item's judge saw: the regenerated output, else the dataset item's own."""

    item_id: str
    trace_id: str
    item_json: str
    output: str | None


def item_outputs(store: Store, run_id: str) -> list[ItemOutput]:
    """The done items of a run without a target error, in dataset order."""
    rows = store.conn.execute(
        "SELECT item_id, trace_id, item_json, output FROM replay_items"
        " WHERE run_id = ? AND status = ? AND target_error IS NULL ORDER BY position",
        [run_id, DONE]).fetchall()
    return [ItemOutput(*row) for row in rows]
