"""Build the dramatiq broker explicitly from configuration (no import-time global state)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO

from evaluator.errors import BrokerError


def redis_client(url: str):
    """A Redis client that has answered PING, or BrokerError saying what to do."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30,
                                  health_check_interval=30)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BrokerError(
            f"cannot reach Redis at {url} ({exc}). Start Redis (redis-server) or unset "
            "EVALUATOR_REDIS_URL to run embedded with the in-process broker."
        ) from None
    return client


def build_producer_broker(redis_url: str) -> dramatiq.Broker:
    """A Redis broker for enqueueing only (exporters, `evaluator ingest`). It is NOT installed
    as dramatiq's global broker, so it never clobbers a broker the host app uses."""
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(client=redis_client(redis_url))


def build_broker(redis_url: str | None) -> dramatiq.Broker:
    """Redis broker for service mode, dramatiq's in-process StubBroker for embedded mode.

    The broker is also installed as dramatiq's global broker, because dramatiq's worker and
    message APIs look it up there.
    """
    if redis_url:
        from dramatiq.brokers.redis import RedisBroker

        broker: dramatiq.Broker = RedisBroker(client=redis_client(redis_url))
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(AsyncIO())
    dramatiq.set_broker(broker)
    return broker
