"""Judge spend from the call ledger (per judge, rubric and day) and how often repeated verdicts
disagree (per rubric). Unknown cost is counted apart, never summed as $0."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from evaluator.store.scope import PRODUCTION, Scope

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store



def utc_day(column: str) -> str:
    """The UTC day of a timestamp column as a number: grouping by it, then formatting the few
    days (utc_day_text), costs a tenth of formatting every row's day."""
    return f"epoch_us({column}) // 86400000000"


def utc_day_text(day: str) -> str:
    """YYYY-MM-DD of a utc_day number."""
    return f"strftime(make_timestamp({day} * 86400000000), '%Y-%m-%d')"


_DAY, _DAY_TEXT = utc_day("created_at"), utc_day_text("key")

SPEND_KEYS = {"judge": ("judge", "key"), "rubric": ("coalesce(rubric, '-')", "key"),
              "day": (_DAY, _DAY_TEXT)}
"""How the ledger can be grouped: the grouping expression, and how a group is shown (day in
UTC)."""

_SPEND_SQL = """
SELECT {shown} AS key, * EXCLUDE (key) FROM (
SELECT {key} AS key,
    count(*) AS calls,
    count(*) FILTER (WHERE cached) AS cached,
    count(*) FILTER (WHERE status = 'error') AS errors,
    coalesce(sum(input_tokens) FILTER (WHERE NOT cached), 0) AS input_tokens,
    coalesce(sum(output_tokens) FILTER (WHERE NOT cached), 0) AS output_tokens,
    coalesce(sum(cost_usd), 0) AS known_cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unknown_cost_calls,
    avg(latency_ms) FILTER (WHERE NOT cached) AS mean_latency_ms
FROM judge_calls
WHERE {scope}
GROUP BY ALL)
ORDER BY key
"""

_REPEATS_SQL = """
SELECT rubric,
    count(*) AS repeated,
    count(*) FILTER (WHERE stability < 1) AS disagreeing,
    avg(stability) AS mean_stability
FROM evaluations
WHERE stability IS NOT NULL AND {scope}
GROUP BY rubric
ORDER BY rubric
"""


def format_usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


@dataclass(frozen=True)
class Spend:
    """Judge calls of one group: HTTP attempts and cache hits, tokens, known and unknown cost."""

    key: str
    calls: int
    cached: int
    errors: int
    input_tokens: int
    output_tokens: int
    known_cost_usd: float
    unknown_cost_calls: int
    mean_latency_ms: float | None

    @property
    def http_calls(self) -> int:
        return self.calls - self.cached

    @property
    def spend(self) -> str:
        """`$x`; `unknown` when nothing known costs anything (replies of an unpriced model,
        failed calls at $0); `≥ $x (n calls unknown)` when some cost is known."""
        if not self.unknown_cost_calls:
            return format_usd(self.known_cost_usd)
        if self.known_cost_usd == 0:
            return "unknown"
        return f"≥ {format_usd(self.known_cost_usd)} ({self.unknown_cost_calls} calls unknown)"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "http_calls": self.http_calls, "spend": self.spend,
                "cost_usd": None if self.spend == "unknown" else self.known_cost_usd}


@dataclass(frozen=True)
class RepeatAgreement:
    """Per rubric, evaluations judged more than once and how many of them disagreed."""

    rubric: str
    repeated: int
    disagreeing: int
    mean_stability: float

    @property
    def disagreement_rate(self) -> float:
        return self.disagreeing / self.repeated

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "disagreement_rate": self.disagreement_rate}


def spend_by(store: Store, group: str,
             scope: Scope = PRODUCTION) -> list[Spend]:
    """Ledger totals grouped by `group`: judge, rubric or day."""
    key, shown = SPEND_KEYS[group]
    sql = _SPEND_SQL.format(key=key, shown=shown, scope=scope.sql())
    return [Spend(*row) for row in store.conn.execute(sql, scope.params()).fetchall()]


def repeat_agreement(store: Store,
                     scope: Scope = PRODUCTION) -> list[RepeatAgreement]:
    sql = _REPEATS_SQL.format(scope=scope.sql())
    return [RepeatAgreement(*row) for row in store.conn.execute(sql, scope.params()).fetchall()]


def known_spend_on(store: Store, day: date) -> float:
    """Known judge spend of one UTC day, replays included (all of it was paid)."""
    [(spent,)] = store.conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM judge_calls"
                                    " WHERE strftime(created_at, '%Y-%m-%d') = $day",
                                    {"day": day.isoformat()}).fetchall()
    return float(spent)


def service_spend_by_day(store: Store) -> dict[date, float]:
    """Known spend per UTC day of the calls service-mode workers made (no run id), the ones
    they also count in Redis (evaluator.sampling.spend_check)."""
    rows = store.conn.execute(f"SELECT {_DAY_TEXT}, cost FROM (SELECT {_DAY} AS key,"
                              " coalesce(sum(cost_usd), 0) AS cost FROM judge_calls"
                              " WHERE run_id IS NULL GROUP BY ALL)").fetchall()
    return {date.fromisoformat(day): float(cost) for day, cost in rows}
