"""Why a run's evaluations errored: its most common error reasons, with counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store


NO_REASON = "(no reason recorded)"


def error_reasons(store: Store, run_id: str,
                  limit: int = 5) -> list[tuple[str, int]]:
    """The `limit` most frequent reasons of the run's `error` rows, most frequent first."""
    rows = store.conn.execute(
        "SELECT coalesce(reason, ?) AS why, count(*) AS n FROM evaluations"
        " WHERE run_id = ? AND status = 'error' GROUP BY why ORDER BY n DESC, why LIMIT ?",
        [NO_REASON, run_id, limit]).fetchall()
    return [(why, n) for why, n in rows]
