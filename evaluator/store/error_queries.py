"""Why a run's evaluations errored: its most common error reasons, with counts."""

from __future__ import annotations

import duckdb

NO_REASON = "(no reason recorded)"


def error_reasons(conn: duckdb.DuckDBPyConnection, run_id: str,
                  limit: int = 5) -> list[tuple[str, int]]:
    """The `limit` most frequent reasons of the run's `error` rows, most frequent first."""
    rows = conn.execute(
        "SELECT coalesce(reason, ?) AS why, count(*) AS n FROM evaluations"
        " WHERE run_id = ? AND status = 'error' GROUP BY why ORDER BY n DESC, why LIMIT ?",
        [NO_REASON, run_id, limit]).fetchall()
    return [(why, n) for why, n in rows]
