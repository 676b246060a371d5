"""Build the dramatiq broker explicitly from configuration (no import-time global state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO

from evaluator.core.errors import BrokerError
from evaluator.queue.heartbeat import Heartbeat
from evaluator.queue.messages import QUEUE_NAME

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker  # imported where built: redis loads lazily


def redis_client(url: str, timeout_s: float = 30.0):
    """A Redis client that has answered PING, or BrokerError saying what to do. No command
    waits longer than `timeout_s` for a reply (nor 3 s for a connection)."""
    # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=min(3.0, timeout_s),
                                  socket_timeout=timeout_s, health_check_interval=30)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BrokerError(
            f"cannot reach Redis at {url} ({exc}). Start Redis (redis-server) or unset "
            "EVALUATOR_REDIS_URL to run embedded with the in-process broker."
        ) from None
    return client


def build_producer_broker(redis_url: str, timeout_s: float = 30.0,
                          heartbeat_timeout_s: float = 60.0) -> RedisBroker:
    """A Redis broker that consumes nothing (exporters and `evaluator ingest` enqueue; the sink
    sweeps for dead workers with it). It is NOT installed as dramatiq's global broker, so it
    never clobbers a broker the host app uses."""
    # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(client=redis_client(redis_url, timeout_s),
                       heartbeat_timeout=int(heartbeat_timeout_s * 1000))


@overload
def build_broker(redis_url: str, heartbeat_timeout_s: float = ...,
                 maintenance_chance: int = ...) -> RedisBroker: ...
@overload
def build_broker(redis_url: None, heartbeat_timeout_s: float = ...,
                 maintenance_chance: int = ...) -> StubBroker: ...
def build_broker(redis_url: str | None, heartbeat_timeout_s: float = 60.0,
                 maintenance_chance: int = 1000) -> RedisBroker | StubBroker:
    """Redis broker for service mode, dramatiq's in-process StubBroker for embedded mode.

    With Redis, a worker whose heartbeat is older than `heartbeat_timeout_s` is dead: the
    messages it fetched and never acknowledged go back to the queue, found by the sweep every
    worker runs every heartbeat_timeout_s / 4 (evaluator.queue.heartbeat), and by chance:
    `maintenance_chance` per million broker commands also look for dead workers.

    The broker is also installed as dramatiq's global broker, because dramatiq's worker and
    message APIs look it up there.
    """
    if redis_url:
        # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
        from dramatiq.brokers.redis import RedisBroker

        broker: RedisBroker | StubBroker = RedisBroker(
            client=redis_client(redis_url), heartbeat_timeout=int(heartbeat_timeout_s * 1000),
            maintenance_chance=maintenance_chance)
        broker.add_middleware(Heartbeat(QUEUE_NAME))
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(AsyncIO())
    dramatiq.set_broker(broker)
    return broker
