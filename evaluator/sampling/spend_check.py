"""Reconciling judge spend: what service-mode workers counted vs what the ledger recorded.

Workers add every judge call's known cost to a Redis counter per UTC day the moment the call
completes (evaluator.sampling.spend), and publish its ledger row at the same time
(evaluator.worker.call_log). The two agree once the sink has stored everything; the
difference is spend whose ledger rows are still on their way, or were lost with Redis. Only
ledger rows of service mode count here (no run id: `evaluator ingest` and the span exporter):
`evaluator run` and replays pay their judges without the Redis counter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from evaluator.sampling.spend import RedisSpend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpendCheck:
    """One UTC day: USD counted by the workers (Redis) and recorded in the ledger (DuckDB)."""

    day: date
    counted_usd: float
    recorded_usd: float

    @property
    def unrecorded_usd(self) -> float:
        return self.counted_usd - self.recorded_usd

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "counted_usd": round(self.counted_usd, 6),
                "recorded_usd": round(self.recorded_usd, 6),
                "unrecorded_usd": round(self.unrecorded_usd, 6)}


def spend_checks(counted: dict[date, float], recorded: dict[date, float]) -> list[SpendCheck]:
    """Days the counter still holds (it keeps three); a day the ledger has alone is left out,
    since its counter expired."""
    return [SpendCheck(day, counted[day], recorded.get(day, 0.0)) for day in sorted(counted)]


def counted_spend(redis_url: str | None) -> dict[date, float] | None:
    """The workers' counters per day; None without Redis, or when it cannot be read (logged)."""
    if not redis_url:
        return None

    try:
        return RedisSpend.from_url(redis_url).by_day()
    except Exception as exc:
        log.warning("could not read the judge spend counted in Redis (%r): the report shows "
                    "the ledger alone", exc)
        return None
