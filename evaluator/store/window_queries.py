"""SQL for alert windows: the store aggregated over one time span, all the alert rules read.

A window is (start, end] over `evaluations.created_at`, the time a score became known (the
alert check chooses the spans). Alerts watch production traffic: replay runs judge datasets,
so their rows never count (store.scope). The SQL fragments below are fixed strings chosen by
measure; every value from the config travels as a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from evaluator.store.scope import PRODUCTION

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

MAX_EXAMPLES = 10

Measure = Literal["label_rate", "status_rate", "mean_score"]


@dataclass(frozen=True)
class WindowStats:
    """Weighted sums over one window: a rate or mean is sum_wx / sum_w."""

    start: datetime
    end: datetime
    n: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    sum_wx: float = 0.0
    examples: tuple[str, ...] = ()
    """Trace ids of the offending (or worst-scored) evaluations, newest or worst first."""


@dataclass(frozen=True)
class CostStats:
    """Judge spend over one window; calls with unknown cost are counted, never taken as free."""

    start: datetime
    end: datetime
    calls: int = 0
    cost_usd: float = 0.0
    unknown: int = 0
    examples: tuple[str, ...] = ()


# value, row filter, offending-row filter, example order; per measure.
_MEASURES: dict[str, tuple[str, str, str, str]] = {
    "label_rate": (
        "CAST(list_contains($values, label) AS DOUBLE)",
        "rubric = $rubric AND judge = $judge AND status = 'scored'",
        "list_contains($values, label)",
        "created_at DESC",
    ),
    "status_rate": (
        "CAST(list_contains($values, status) AS DOUBLE)",
        "status <> 'skipped' AND judge = $judge",
        "list_contains($values, status)",
        "created_at DESC",
    ),
    "mean_score": (
        "score",
        "rubric = $rubric AND judge = $judge AND status = 'scored' AND score IS NOT NULL",
        "TRUE",
        "score, created_at DESC",
    ),
}

_IN_WINDOW = f"created_at > $start AND created_at <= $end AND {PRODUCTION.sql()}"


def _examples(rows: list[tuple[Any, ...]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for (trace_id,) in rows:
        seen.setdefault(trace_id, None)
        if len(seen) == MAX_EXAMPLES:
            break
    return tuple(seen)


def _bound(sql: str, candidates: dict[str, Any]) -> dict[str, Any]:
    """Only the parameters the statement names (DuckDB rejects unused named parameters)."""
    return {name: value for name, value in candidates.items() if f"${name}" in sql}


def measure_window(store: Store, measure: Measure, start: datetime,
                   end: datetime, judge: str, rubric: str | None = None,
                   values: list[str] | None = None, weighted: bool = True) -> WindowStats:
    value, rows, offending, order = _MEASURES[measure]
    candidates = {"start": start, "end": end, "judge": judge, "rubric": rubric,
                  "values": list(values or [])}
    weight = "sample_weight" if weighted else "CAST(1 AS DOUBLE)"
    sums_sql = (f"SELECT count(*), sum(w), sum(w * w), sum(w * x) FROM ("
                f" SELECT {weight} AS w, {value} AS x FROM evaluations WHERE {_IN_WINDOW} AND {rows})")
    [(n, sum_w, sum_w2, sum_wx)] = store.conn.execute(sums_sql, _bound(sums_sql, candidates)).fetchall()
    examples_sql = (f"SELECT trace_id FROM evaluations WHERE {_IN_WINDOW} AND {rows} AND {offending}"
                    f" ORDER BY {order} LIMIT {MAX_EXAMPLES * 3}")
    examples = store.conn.execute(examples_sql, _bound(examples_sql, candidates)).fetchall()
    return WindowStats(start, end, n, sum_w or 0.0, sum_w2 or 0.0, sum_wx or 0.0, _examples(examples))


def judges_seen(store: Store, start: datetime, end: datetime,
                rubric: str | None = None) -> list[str]:
    """Judges with evaluations in the span; each is alerted on separately (their scales differ)."""
    rows = store.conn.execute(
        f"SELECT DISTINCT judge FROM evaluations WHERE {_IN_WINDOW}"
        " AND ($rubric IS NULL OR rubric = $rubric) ORDER BY judge",
        {"start": start, "end": end, "rubric": rubric},
    ).fetchall()
    return [judge for (judge,) in rows]


def app_error_window(store: Store, start: datetime, end: datetime) -> WindowStats:
    """The app's own error rate (traces.status), over the traces evaluated in the window,
    weighted by their sampling weight so it estimates all traffic."""
    [(n, sum_w, sum_w2, sum_wx)] = store.conn.execute(
        "SELECT count(*), sum(sample_weight), sum(sample_weight * sample_weight),"
        " sum(sample_weight * CAST(status = 'error' AS DOUBLE)) FROM traces"
        f" WHERE trace_id IN (SELECT trace_id FROM evaluations WHERE {_IN_WINDOW})",
        {"start": start, "end": end},
    ).fetchall()
    return WindowStats(start, end, n, sum_w or 0.0, sum_w2 or 0.0, sum_wx or 0.0)


def cost_window(store: Store, start: datetime, end: datetime) -> CostStats:
    """Judge calls made in the window (attempts > 0, not served from cache) and their cost."""
    [(calls, cost, unknown)] = store.conn.execute(
        "SELECT count(*), sum(cost_usd), count(*) FILTER (WHERE cost_usd IS NULL) FROM evaluations"
        f" WHERE {_IN_WINDOW} AND attempts > 0 AND NOT cached",
        {"start": start, "end": end},
    ).fetchall()
    examples = store.conn.execute(
        f"SELECT trace_id FROM evaluations WHERE {_IN_WINDOW} AND cost_usd IS NOT NULL"
        f" ORDER BY cost_usd DESC LIMIT {MAX_EXAMPLES * 3}",
        {"start": start, "end": end},
    ).fetchall()
    return CostStats(start, end, calls, cost or 0.0, unknown, _examples(examples))
