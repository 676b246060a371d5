"""What the judges of one process share: the response cache, rate limiters and circuit breakers.

Built once by the entry point from its Settings (`JudgeRuntime.from_settings`) and passed down to
the judges it builds; or explicitly (tests, tools). From settings:
- redis_url (EVALUATOR_REDIS_URL) set: rate limits and the cache live in Redis, shared by every
  worker;
- else rate limits are per process and the cache is a SQLite file next to the DuckDB file
  (`.evaluator-cache/judge.sqlite`), so a second CLI process gets the first one's answers;
- judge_cache (EVALUATOR_JUDGE_CACHE) overrides the cache: `off`, `memory`, `redis` or a SQLite
  file path.
Breakers are always per process: each worker judges its own view of a failing provider.

A call refused by an open circuit fails at once ("judge unavailable (circuit open)"): `run` and
`replay` end quickly and say why. Service workers build theirs with `wait_for_open_circuit`:
there a call waits for the circuit (up to `breaker.max_wait_s`), so a judge outage delays
evaluations instead of failing them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from evaluator.core.errors import ConfigError
from evaluator.core.settings import Settings
from evaluator.judges.breaker import CircuitBreaker
from evaluator.judges.cache import JudgeCache, RedisBackend, SqliteBackend
from evaluator.judges.config import JudgeConfig
from evaluator.judges.ratelimit import (
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    WaitLog,
    rates_for,
)
from evaluator.judges.redis_clients import LoopRedis

CACHE_DIR = ".evaluator-cache"


class JudgeRuntime:
    """`JudgeRuntime()`: no cache, rate limits per process; each runtime has its own breakers."""

    def __init__(self, redis_url: str | None = None, cache: JudgeCache | None = None,
                 wait_for_open_circuit: bool = False):
        self.redis = LoopRedis(redis_url) if redis_url else None
        self._cache = cache
        self._make_cache: Callable[[], JudgeCache] | None = None
        self.wait_for_open_circuit = wait_for_open_circuit
        self._breakers: dict[str, CircuitBreaker] = {}
        self._limiters: dict[str, RateLimiter | None] = {}
        self._wait_logs: dict[str, WaitLog] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, db_path: Path | None = None,
                      wait_for_open_circuit: bool = False) -> JudgeRuntime:
        """`db_path`: the DuckDB file the entry point writes (its --db, else settings.db_path);
        the default cache file sits next to it."""
        runtime = cls(settings.redis_url, wait_for_open_circuit=wait_for_open_circuit)
        made = _cache_from_spec(settings.judge_cache.strip(), runtime.redis,
                                Path(db_path or settings.db_path), settings.judge_cache_max_entries)
        if callable(made):
            runtime._make_cache = made
        else:
            runtime._cache = made
        return runtime

    @property
    def cache(self) -> JudgeCache | None:
        """The judges' response cache. A SQLite file is opened (created) at the first use:
        a run whose judges never cache (the offline judge's) neither creates nor opens one
        (that took 30-140 ms of a run's fixed cost on a busy disk, for its writes and syncs)."""
        with self._lock:
            if self._make_cache is not None:
                self._cache, self._make_cache = self._make_cache(), None
            return self._cache

    @cache.setter
    def cache(self, cache: JudgeCache | None) -> None:
        with self._lock:
            self._cache, self._make_cache = cache, None

    def breaker(self, config: JudgeConfig) -> CircuitBreaker:
        with self._lock:
            found = self._breakers.get(config.name)
            if found is None:
                found = self._breakers[config.name] = CircuitBreaker(
                    config.name, config.breaker, ramp_to=config.limits.max_in_flight)
            return found

    def limiter(self, config: JudgeConfig) -> RateLimiter | None:
        """None when the judge has no requests/tokens per minute limit."""
        with self._lock:
            if config.name not in self._limiters:
                rates = rates_for(config.limits)
                limiter: RateLimiter | None = None
                if rates:
                    limiter = (RedisRateLimiter(self.redis, config.name, rates) if self.redis
                               else LocalRateLimiter(rates))
                self._limiters[config.name] = limiter
            return self._limiters[config.name]

    def wait_log(self, name: str) -> WaitLog:
        with self._lock:
            return self._wait_logs.setdefault(name, WaitLog(name))


def _cache_from_spec(spec: str, redis: LoopRedis | None, db_path: Path,
                     max_entries: int) -> JudgeCache | Callable[[], JudgeCache] | None:
    """The cache a spec names; a SQLite file's as the function that opens it."""
    if spec == "off":
        return None
    if spec == "memory":
        return JudgeCache()
    if spec == "redis" or (not spec and redis):
        if redis is None:
            raise ConfigError("EVALUATOR_JUDGE_CACHE=redis needs EVALUATOR_REDIS_URL")
        return JudgeCache(RedisBackend(redis))
    path = Path(spec) if spec else db_path.parent / CACHE_DIR / "judge.sqlite"
    return lambda: JudgeCache(SqliteBackend(path, max_entries=max_entries))
