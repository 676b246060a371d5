"""Requests/min and tokens/min per judge, shared by every worker on every host through Redis.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp
per limit: the "theoretical arrival time" TAT). A limit of L per minute gets a burst capacity
C = max(1, L // 60) (one second's worth) and an emission interval T = 60 s / (L - C), so any
60-second window holds at most C + (L - C) = L units. One request charges 1 request and its
token estimate (prompt characters / 4 + max_tokens, which is how providers count a request
against tokens/min before it runs); a single request larger than C tokens is let through
when the bucket is full, so only such oversize requests can overshoot, by their excess.

`reserve()` is one round trip: a Lua script reads Redis' clock, checks every limit of the
judge and, unless the wait would exceed `max_wait_s`, books the request and returns how long
to sleep before sending it. Booking ahead means no retry loops and no thundering herd.
Without Redis the same algorithm runs in-process (per worker process, not shared). When Redis
is unreachable the limiter lets calls through and logs it: provider 429s are still retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from evaluator.judges.attempt import Attempt, Sender, WaitTooLong
from evaluator.judges.config import JudgeLimits
from evaluator.judges.redis_clients import LoopRedis
from evaluator.judges.transport import Reply

log = logging.getLogger(__name__)

KEY_PREFIX = "evaluator:ratelimit:"
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class Rate:
    """One limit: `capacity` units of burst, then one unit per `interval_s`."""

    name: str
    capacity: int
    interval_s: float

    @classmethod
    def per_minute(cls, name: str, limit: int) -> Rate:
        capacity = max(1, limit // 60)
        return cls(name, capacity, 60.0 / max(limit - capacity, 1))


def rates_for(limits: JudgeLimits) -> tuple[Rate, ...]:
    rates = []
    if limits.requests_per_minute:
        rates.append(Rate.per_minute("requests", limits.requests_per_minute))
    if limits.tokens_per_minute:
        rates.append(Rate.per_minute("tokens", limits.tokens_per_minute))
    return tuple(rates)


class RateLimiter(Protocol):
    async def reserve(self, tokens: int, max_wait_s: float | None) -> float | None:
        """Book one request of `tokens`: seconds to sleep before sending it, or None (nothing
        booked) when that would be longer than `max_wait_s`."""


def _costs(rates: tuple[Rate, ...], tokens: int) -> list[int]:
    return [1 if rate.name == "requests" else max(1, tokens) for rate in rates]


class LocalRateLimiter:
    """GCRA in this process (embedded mode, or no Redis configured)."""

    def __init__(self, rates: tuple[Rate, ...], clock: Callable[[], float] = time.monotonic):
        self.rates = rates
        self._clock = clock
        self._tats = [0.0] * len(rates)
        self._lock = threading.Lock()

    async def reserve(self, tokens: int, max_wait_s: float | None) -> float | None:
        with self._lock:
            now = self._clock()
            wait, booked = 0.0, []
            for rate, tat, cost in zip(self.rates, self._tats, _costs(self.rates, tokens), strict=True):
                new_tat = max(tat, now) + cost * rate.interval_s
                wait = max(wait, new_tat - max(rate.capacity, cost) * rate.interval_s - now)
                booked.append(new_tat)
            if max_wait_s is not None and wait > max_wait_s:
                return None
            self._tats = booked
            return wait


_GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local max_wait = tonumber(ARGV[1])
local wait = 0
local booked = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i * 3 - 1])
  local capacity = tonumber(ARGV[i * 3])
  local cost = tonumber(ARGV[i * 3 + 1])
  local tat = tonumber(redis.call('GET', key) or 0)
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local from = new_tat - math.max(capacity, cost) * interval - now
  if from > wait then wait = from end
  booked[i] = new_tat
end
if max_wait >= 0 and wait > max_wait then return {0, math.ceil(wait)} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', booked[i]), 'PX',
             math.ceil((booked[i] - now) / 1000) + 1000)
end
return {1, math.ceil(wait)}
"""
"""KEYS: one TAT key per limit (microseconds on Redis' clock). ARGV: the longest wait in us
(negative: no bound), then per key its interval (us per unit), capacity and cost (units)."""
_GCRA_SHA = hashlib.sha1(_GCRA.encode()).hexdigest()


class RedisRateLimiter:
    """GCRA in Redis, shared by all workers that use the same judge. The reservations of one
    event loop travel as pipelines (see _Pipelined): one round trip for many calls."""

    def __init__(self, redis: LoopRedis, judge: str, rates: tuple[Rate, ...]):
        self.rates = rates
        self._redis = redis
        self._keys = [f"{KEY_PREFIX}{judge}:{rate.name}" for rate in rates]
        self._intervals = [round(rate.interval_s * 1e6, 3) for rate in rates]
        self._pipelines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pipelined] = (
            weakref.WeakKeyDictionary())
        self._warned_at = float("-inf")

    async def reserve(self, tokens: int, max_wait_s: float | None) -> float | None:
        args: list[float | int] = [-1 if max_wait_s is None else int(max_wait_s * 1e6)]
        for rate, interval, cost in zip(self.rates, self._intervals, _costs(self.rates, tokens), strict=True):
            args += [interval, rate.capacity, cost]
        loop = asyncio.get_running_loop()
        pipelined = self._pipelines.get(loop)
        if pipelined is None:
            pipelined = self._pipelines[loop] = _Pipelined(self._redis.client(), self._keys)
        try:
            booked, wait_us = await pipelined.run(args)
        except Exception as exc:  # Redis down: judging goes on, 429s are still retried
            now = time.monotonic()
            if now - self._warned_at > LOG_EVERY_S:
                self._warned_at = now
                log.warning("rate limiter: Redis unreachable (%r); calls go unthrottled", exc)
            return 0.0
        return wait_us / 1e6 if booked else None


class _Pipelined:
    """Group commit: the first call goes out at once; calls made while a pipeline is out wait
    for the next one. Fewer round trips and connections, less CPU per call, and replies come
    back in time for the waits they carry (a connection storm would make them late)."""

    def __init__(self, client: Any, keys: list[str]):
        self._client = client
        self._keys = keys
        self._queue: list[tuple[list[float | int], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, args: list[float | int]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                replies = await self._execute([args for args, _ in batch])
            except Exception as exc:  # every caller hears it
                replies = [exc] * len(batch)
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _execute(self, batch: list[list[float | int]]) -> list[Any]:
        # lazy: redis loads only when a judge uses Redis
        from redis.exceptions import NoScriptError

        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            for args in batch:
                pipe.evalsha(_GCRA_SHA, len(self._keys), *self._keys, *args)
            try:
                return await pipe.execute()
            except NoScriptError:  # a Redis that restarted, or a new one
                await self._client.script_load(_GCRA)
        return await pipe.execute()


class WaitLog:
    """Rate-limit waits of one judge, logged at most every LOG_EVERY_S seconds."""

    def __init__(self, judge: str):
        self.judge = judge
        self._waits = 0
        self._waited_s = 0.0
        self._logged_at = time.monotonic()

    def add(self, wait_s: float) -> None:
        self._waits += 1
        self._waited_s += wait_s
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.info("judge %s: rate limit made %d calls wait %.1fs in all over the last %.0fs",
                     self.judge, self._waits, self._waited_s, now - self._logged_at)
            self._waits, self._waited_s, self._logged_at = 0, 0.0, now


class RateLimitedSender:
    """A Sender that books each request with the limiter right before it goes out (a booking
    made earlier would let requests held up by the in-flight limit bunch up) and sleeps the
    wait. A deferring call's first request waits at most `defer_after_s` (WaitTooLong)."""

    def __init__(self, inner: Sender, limiter: RateLimiter, wait_log: WaitLog,
                 defer_after_s: float):
        self.inner = inner
        self.limiter = limiter
        self.wait_log = wait_log
        self.defer_after_s = defer_after_s

    async def send(self, attempt: Attempt) -> Reply:
        bound = self.defer_after_s if attempt.may_defer and not attempt.calls else None
        wait = await self.limiter.reserve(attempt.tokens, bound)
        if wait is None:
            raise WaitTooLong(f"judge {self.wait_log.judge}: rate limit wait over {bound:g}s")
        if wait > 0:
            self.wait_log.add(wait)
            await asyncio.sleep(wait)
        return await self.inner.send(attempt)
