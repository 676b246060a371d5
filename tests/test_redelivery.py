"""A killed worker's unacknowledged messages go back to the queue within 2x the heartbeat timeout,
found by the sweep each worker and the sink run on a timer, not by dramatiq's per-command chance
of maintenance (which took 95-313 s with the defaults).

The defaults (timeout 60 s) are proven against a real Redis with the sweep's clock advanced by
hand; real processes are killed with a 2 s timeout, to keep the run short."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from evaluator.core.settings import Settings
from evaluator.ingest.files import collect_work
from evaluator.queue.broker import build_broker, build_producer_broker
from evaluator.queue.heartbeat import Sweeper
from evaluator.queue.messages import QUEUE_NAME
from evaluator.queue.producer import enqueue
from evaluator.sampling.policy import SamplingPolicy
from tests.support.judging import KEY, KEY_ENV, judge_config, write_judge
from tests.support.openai_server import OpenAIServer
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
QUEUE_KEY = f"dramatiq:{QUEUE_NAME}"

pytestmark = pytest.mark.redis


def _messages(count: int) -> list[dramatiq.Message]:
    return [dramatiq.Message(queue_name=QUEUE_NAME, actor_name="evaluate_batch",
                             args=({"items": [], "judge": "offline"},), kwargs={}, options={})
            for _ in range(count)]


def _taken_by_a_worker_that_dies(url: str, count: int) -> int:
    """`count` messages fetched by a worker that never acknowledges them nor beats again; the
    time (dramatiq ms) of its last heartbeat."""
    dead = RedisBroker(client=redis.Redis.from_url(url), maintenance_chance=0)
    dead.declare_queue(QUEUE_NAME)
    for message in _messages(count):
        dead.enqueue(message)
    consumer = dead.consume(QUEUE_NAME, prefetch=count, timeout=50)
    taken = 0
    while taken < count:
        taken += next(consumer) is not None
    last_beat = current_millis()
    return last_beat


def test_with_the_default_timeout_a_dead_workers_messages_are_back_within_2x(redis_url):
    settings = Settings.from_env()
    assert settings.worker_heartbeat_timeout_s == 60.0, "this test is about the defaults"
    live = build_broker(redis_url, settings.worker_heartbeat_timeout_s,
                        settings.broker_maintenance_chance)
    client = redis.Redis.from_url(redis_url)
    died_at = _taken_by_a_worker_that_dies(redis_url, 3)
    assert client.llen(QUEUE_KEY) == 0
    now = died_at
    back_at: list[int] = []

    def wait(seconds: float) -> bool:
        """The sweeper's timer, on a clock this test moves: stop once the messages are back."""
        nonlocal now
        if client.llen(QUEUE_KEY) == 3:
            back_at.append(now)
            return True
        now += int(seconds * 1000)
        return now - died_at > 600_000

    try:
        Sweeper(live, [QUEUE_NAME], clock_ms=lambda: now).run(wait)
    finally:
        live.close()
    assert back_at, "the messages never came back"
    recovery_s = (back_at[0] - died_at) / 1000
    print(f"default timeout 60 s: back after {recovery_s:.0f} s (sweep clock)")
    assert 60 <= recovery_s <= 2 * 60, "not before the timeout (a busy worker), not after 2x"


@pytest.fixture
def slow_judge(tmp_path, monkeypatch):
    """A judges directory whose `slow` judge answers after 60 s: a worker holds its messages."""
    with OpenAIServer(latency_ms=60_000) as server:
        write_judge(tmp_path / "judges", judge_config(server, "slow", limits={"timeout_s": 120}))
        monkeypatch.setenv(KEY_ENV, KEY)
        yield tmp_path / "judges"


def test_a_killed_workers_messages_are_back_within_2x_the_timeout(tmp_path, slow_judge):
    """Real processes, maintenance by chance down to 1 command in a million, so the sweep does it:
    SIGKILL a worker holding 4 messages; they are back within 2x the heartbeat timeout (2 s)."""
    timeout_s = 2.0
    with RedisServer(tmp_path / "redis", persistent=False) as server:
        env = {**os.environ, "EVALUATOR_REDIS_URL": server.url,
               "EVALUATOR_DB": str(tmp_path / "db.duckdb"), "EVALUATOR_JUDGES_DIR": str(slow_judge),
               "EVALUATOR_WORKER_HEARTBEAT_TIMEOUT_S": str(timeout_s),
               "EVALUATOR_BROKER_MAINTENANCE_CHANCE": "1"}
        client = redis.Redis.from_url(server.url)
        producer = build_producer_broker(server.url)
        items = collect_work(SAMPLE, SamplingPolicy(rate=1.0)).items[:20]
        enqueue(producer, items, "slow", batch_size=5)
        processes = [subprocess.Popen([sys.executable, "-m", "evaluator", *args], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for args in (["sink"], ["worker", "--processes", "1", "--threads", "4", "--no-preflight"])]
        sink, worker = processes
        try:
            _until(lambda: client.llen(QUEUE_KEY) == 0, "the worker to take the 4 messages")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            killed = time.monotonic()
            _until(lambda: client.llen(QUEUE_KEY) == 4, "the messages to come back")
            recovery_s = time.monotonic() - killed
        finally:
            for process in processes:
                process.kill()
                process.wait(timeout=30)
            producer.close()
    print(f"timeout {timeout_s:g} s: back after {recovery_s:.2f} s")
    assert recovery_s <= 2 * timeout_s


def _until(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)
