"""Read-side SQL for one trace: what `evaluator show` needs beyond Store.traces/evaluations."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store



class ReplayItemRow(NamedTuple):
    run_id: str
    item_json: str
    output: str | None
    """The regenerated output, masked (None: the dataset's own output was judged)."""


def replay_item(store: Store, trace_id: str) -> ReplayItemRow | None:
    """The dataset item a replay judged under `trace_id` (replayed traces are not in `traces`)."""
    row = store.conn.execute("SELECT run_id, item_json, output FROM replay_items WHERE trace_id = ?"
                       " LIMIT 1", [trace_id]).fetchone()
    return None if row is None else ReplayItemRow(*row)


def trace_ids_like(store: Store, prefix: str, limit: int = 5) -> list[str]:
    """Stored or evaluated trace ids starting with `prefix`, for a 'did you mean' hint."""
    rows = store.conn.execute(
        "SELECT DISTINCT trace_id FROM (SELECT trace_id FROM traces UNION ALL"
        " SELECT trace_id FROM evaluations) WHERE starts_with(trace_id, ?) ORDER BY trace_id"
        " LIMIT ?", [prefix, limit]).fetchall()
    return [trace_id for (trace_id,) in rows]
