"""Each retrying site keeps its own policy on the one helper (evaluator.core.retry)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
import redis

from evaluator.core.errors import BrokerError
from evaluator.ingest.otel.delivery import RedisDelivery
from evaluator.queue.messages import ResultBatch
from evaluator.worker.actors import publish_patiently
from evaluator.worker.sink import Sink


class FlakyChannel:
    """A results channel whose publish fails with the given errors first."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.tries = 0
        self.published: list[ResultBatch] = []

    def publish(self, batch: ResultBatch) -> None:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        self.published.append(batch)


def test_publishing_waits_out_a_redis_outage(caplog) -> None:
    channel, batch = FlakyChannel(redis.ConnectionError("down")), ResultBatch()
    with caplog.at_level(logging.WARNING, logger="evaluator.worker.actors"):
        asyncio.run(publish_patiently(channel, batch, patience_s=5.0))
    assert channel.published == [batch]
    assert "retrying in 0.1s" in caplog.text


def test_publishing_gives_up_before_a_wait_past_its_patience() -> None:
    channel = FlakyChannel(*[redis.TimeoutError("hung") for _ in range(10)])
    with pytest.raises(redis.TimeoutError):
        asyncio.run(publish_patiently(channel, ResultBatch(), patience_s=0.55))
    assert channel.tries == 3  # waits 0.1 s and 0.2 s; the next (0.4 s) would end past 0.55 s


def test_publishing_does_not_retry_a_bug() -> None:
    channel = FlakyChannel(ValueError("not an outage"))
    with pytest.raises(ValueError):
        asyncio.run(publish_patiently(channel, ResultBatch(), patience_s=5.0))
    assert channel.tries == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_exporter_tries_a_dead_redis_again_after_1_s_doubling_to_60_s() -> None:
    clock = FakeClock()
    delivery = RedisDelivery("redis://127.0.0.1:1/0", judge="offline", clock=clock, timeout_s=0.5)
    assert not delivery.reachable()
    for wait in (1, 2, 4, 8, 16, 32, 60, 60):
        with pytest.raises(BrokerError, match=f"next attempt in {wait} s"):
            delivery.send([])  # fails at once: no connection is tried while backing off
        clock.now += wait
        assert not delivery.reachable()  # tried again, and failed again


class FailingReads:
    """A results channel whose first reads fail; the read after those sets `stop`."""

    def __init__(self, failures: int, stop: threading.Event, stop_on_failure: bool = False) -> None:
        self.failures, self.stop, self.stop_on_failure = failures, stop, stop_on_failure
        self.reads = 0

    def read(self, max_entries: int, block_ms: int) -> list:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            if self.stop_on_failure:
                self.stop.set()
            raise redis.ConnectionError("Redis restarting")
        self.stop.set()
        return []

    def ack(self, entry_ids: list[str]) -> None:
        """Nothing read, nothing to acknowledge."""


def test_the_sink_retries_a_failed_drain_at_its_pace(tmp_path, caplog) -> None:
    stop = threading.Event()
    channel = FailingReads(2, stop)
    with caplog.at_level(logging.WARNING, logger="evaluator.worker.sink"):
        Sink(channel, tmp_path / "db.duckdb").run(stop, retry_delay_s=0.01)
    assert caplog.text.count("retrying in 0.0s") == 2
    assert channel.reads == 4  # two failures, the read that stops, the last drain


def test_a_sink_stopped_by_a_failure_still_drains_what_is_left(tmp_path) -> None:
    stop = threading.Event()
    channel = FailingReads(1, stop, stop_on_failure=True)
    Sink(channel, tmp_path / "db.duckdb").run(stop, retry_delay_s=30.0)  # the wait ends at once
    assert channel.reads == 2
