"""The daily judge budget: spend per UTC day, and the pacing of the random sampling rate to it.

Where spend is counted:
- service mode: every worker adds the cost of its judge calls to a Redis counter per UTC day
  (`evaluator:spend:YYYY-MM-DD`, INCRBYFLOAT, kept three days), which producers (the span
  exporter, `evaluator ingest`) read at most once a second;
- embedded mode (`evaluator run`): today's rows of the DuckDB judge_calls ledger
  (evaluator.store.ledger_spend).
Calls of unknown cost count as 0 (the ledger keeps them as unknown).

Pacing: a fraction `t` into the UTC day, spend `S` is on pace for a budget `B` while
S <= B * t. Ahead of pace, every random rate is multiplied by (B - S) / (B * (1 - t)): the
share of the budget left over the share of the day left. That is 1 on the pace line and falls
to 0 when the budget is spent. The always-evaluate rules (errors, negative feedback, content
filter, attribute rules) are never scaled, so they may overshoot the budget. Weights follow the
rate used, so weighted rates stay unbiased. While producers pace differently (each reads the
counter on its own second), two hosts may decide the same trace differently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Protocol

from evaluator.core.records import utcnow
from evaluator.core.retry import Backoff
from evaluator.core.rows import JudgeCall
from evaluator.queue.channel import RedisStreamChannel, ResultChannel
from evaluator.queue.messages import ResultBatch
from evaluator.sampling.policy import SamplingPolicy, ScaledPolicies

log = logging.getLogger(__name__)

SPEND_KEY_PREFIX = "evaluator:spend:"
SPEND_KEY_TTL_S = 3 * 86_400
SECONDS_PER_DAY = 86_400.0
MAX_READ_BACKOFF_S = 60.0


def pace_factor(budget_usd: float, spent_usd: float, day_fraction: float) -> float:
    """How much of the random rate to keep (0..1) with `spent_usd` of `budget_usd` spent a
    `day_fraction` into the day (see the module docstring)."""
    if spent_usd >= budget_usd:
        return 0.0
    if spent_usd <= budget_usd * day_fraction:
        return 1.0
    return min(1.0, (budget_usd - spent_usd) / (budget_usd * (1.0 - day_fraction)))


class SpendMeter(Protocol):
    def spent_on(self, day: date) -> float:
        """Known judge spend (USD) on a UTC day."""


class SpendRecorder(Protocol):
    def publish_counted(self, channel: ResultChannel, batch: ResultBatch) -> None:
        """Publish `batch` and add its judge calls' known cost to their days' spend, both or
        neither: a worker killed between the two would leave counted spend that the ledger
        never gets (or ledger rows never counted)."""


class InMemorySpend:
    """Spend kept in this process: the in-memory double of RedisSpend (tests, benchmarks)."""

    def __init__(self) -> None:
        self._spent: dict[date, float] = defaultdict(float)
        self._lock = threading.Lock()

    def record(self, calls: Iterable[JudgeCall]) -> None:
        with self._lock:
            for day, cost in _cost_by_day(calls).items():
                self._spent[day] += cost

    def publish_counted(self, channel: ResultChannel, batch: ResultBatch) -> None:
        """In one process nothing can die between the two; a failed publish counts nothing."""
        channel.publish(batch)
        self.record(batch.judge_calls)

    def spent_on(self, day: date) -> float:
        with self._lock:
            return self._spent.get(day, 0.0)


class RedisSpend:
    """The shared per-day counter in Redis: workers record, producers read."""

    def __init__(self, client) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str) -> RedisSpend:
        """A client with short timeouts: a dead Redis must not stall a producer."""
        # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
        import redis

        return cls(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5))

    def record(self, calls: Iterable[JudgeCall]) -> None:
        costs = _cost_by_day(calls)
        if not costs:
            return
        pipe = self._client.pipeline(transaction=False)
        for day, cost in costs.items():
            pipe.incrbyfloat(spend_key(day), cost)
            pipe.expire(spend_key(day), SPEND_KEY_TTL_S)
        pipe.execute()

    def publish_counted(self, channel: ResultChannel, batch: ResultBatch) -> None:
        """One transaction on a results stream (of the same Redis, as the worker sets them up)."""
        if not isinstance(channel, RedisStreamChannel):
            channel.publish(batch)
            self.record(batch.judge_calls)
            return
        counters = {spend_key(day): cost for day, cost in _cost_by_day(batch.judge_calls).items()}
        channel.publish(batch, counters, SPEND_KEY_TTL_S)

    def spent_on(self, day: date) -> float:
        value = self._client.get(spend_key(day))
        return float(value) if value is not None else 0.0

    def by_day(self) -> dict[date, float]:
        """Every day the counter still holds (three at most)."""
        keys = sorted(self._client.scan_iter(match=SPEND_KEY_PREFIX + "*"))
        values = self._client.mget(keys) if keys else []
        return {date.fromisoformat(_text(key)[len(SPEND_KEY_PREFIX):]): float(value)
                for key, value in zip(keys, values, strict=True) if value is not None}


def spend_key(day: date) -> str:
    return SPEND_KEY_PREFIX + day.isoformat()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cost_by_day(calls: Iterable[JudgeCall]) -> dict[date, float]:
    costs: dict[date, float] = defaultdict(float)
    for call in calls:
        if call.usage.cost_usd:
            when = call.created_at or utcnow()
            costs[when.astimezone(UTC).date()] += call.usage.cost_usd
    return dict(costs)


class BudgetPacer:
    """The policy to sample with now: the configured one, its random rates scaled down while
    today's spend runs ahead of the daily budget. Spend is read at most once per `refresh_s`;
    when it cannot be read, the last scale stays, the failure is logged and reads back off."""

    def __init__(self, budget_usd: float, meter: SpendMeter, refresh_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.budget_usd = budget_usd
        self._meter = meter
        self._refresh_s = refresh_s
        self._clock = clock
        self._now = now
        self._next_read_at = float("-inf")
        self._failures = 0
        self._backoff = Backoff(base_s=refresh_s, cap_s=MAX_READ_BACKOFF_S, jitter="none")
        """After failed reads, the wait before the next one doubles up to a minute, so a dead
        Redis costs the exporter's thread one short timeout now and then, not every second."""
        self.scale = 1.0
        self.spent_usd = 0.0
        self._scaled = ScaledPolicies()

    def current_scale(self) -> float:
        clock = self._clock()
        if clock < self._next_read_at:
            return self.scale
        now = self._now().astimezone(UTC)
        try:
            self.spent_usd = self._meter.spent_on(now.date())
        except Exception as exc:
            self._failures += 1
            wait_s = self._backoff.delay_s(self._failures)
            self._next_read_at = clock + wait_s
            log.warning("reading today's judge spend failed (%r); random sampling stays at %.3g "
                        "of its rate; next attempt in %.0f s", exc, self.scale, wait_s)
            return self.scale
        self._failures = 0
        self._next_read_at = clock + self._refresh_s
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        day_fraction = (now - midnight).total_seconds() / SECONDS_PER_DAY
        scale = pace_factor(self.budget_usd, self.spent_usd, day_fraction)
        if scale != self.scale:
            log.info("daily judge budget: $%.4f of $%.2f spent %.0f%% into the UTC day; random "
                     "sampling at %.3g of its rate", self.spent_usd, self.budget_usd,
                     100 * day_fraction, scale)
        self.scale = scale
        return self.scale

    def to_dict(self) -> dict[str, float]:
        return {"budget_usd": self.budget_usd, "spent_today_usd": round(self.spent_usd, 6),
                "random_rate_scale": round(self.scale, 4)}

    def describe(self) -> str:
        return (f"daily judge budget ${self.budget_usd:,.2f}: ${self.spent_usd:,.4f} spent today; "
                f"random sampling at {self.scale:.0%} of its rate")

    def policy(self, policy: SamplingPolicy) -> SamplingPolicy:
        return self._scaled.get(policy, self.current_scale())


def pacer_for(policy: SamplingPolicy, meter: SpendMeter | None) -> BudgetPacer | None:
    """A pacer when the policy has a daily budget and there is a meter to read spend from."""
    if policy.daily_budget_usd is None or meter is None:
        return None
    return BudgetPacer(policy.daily_budget_usd, meter)
