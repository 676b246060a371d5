"""A Redis without persistence loses the queue and the uncommitted results on a restart: every
service process says so at start, the sink keeps what it had read when Redis goes away, and a
consumer group lost with Redis is reported at ERROR with how many entries may be gone."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from evaluator.core.records import Evaluation
from evaluator.core.settings import Settings
from evaluator.queue.channel import RedisStreamChannel
from evaluator.queue.messages import ResultBatch
from evaluator.queue.persistence import NONE, PERSISTENT, SNAPSHOTS, UNKNOWN, redis_persistence
from evaluator.store import Store
from evaluator.worker.service import run_sink
from evaluator.worker.sink import Sink
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"

pytestmark = pytest.mark.redis


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


@pytest.mark.parametrize(("persistent", "extra", "mode"), [
    (True, (), PERSISTENT),
    (False, (), NONE),
    (False, ("--save", "900 1"), SNAPSHOTS),
    (False, ("--rename-command", "CONFIG", ""), UNKNOWN),
])
def test_persistence_is_read_from_config_or_unknown_when_config_is_disabled(
        tmp_path, persistent, extra, mode):
    with RedisServer(tmp_path / "redis", persistent=persistent, extra_args=extra) as server:
        assert redis_persistence(_client(server)).mode == mode


def _start_and_stop_a_sink(tmp_path, caplog, persistent: bool) -> None:
    """The sink's start-up against a Redis of its own, then an immediate stop."""
    with RedisServer(tmp_path / "redis", persistent=persistent) as server:
        settings = _with_url(Settings.from_env(), server.url)
        stop = threading.Event()
        stop.set()
        with caplog.at_level(logging.INFO):
            run_sink(settings, tmp_path / "sink.duckdb", stop=stop)


def test_the_sink_warns_at_start_when_redis_does_not_persist(tmp_path, caplog):
    _start_and_stop_a_sink(tmp_path, caplog, persistent=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("REDIS HAS NO PERSISTENCE" in m and "appendonly yes" in m for m in warnings)


def test_no_warning_when_redis_is_append_only(tmp_path, caplog):
    _start_and_stop_a_sink(tmp_path, caplog, persistent=True)
    assert not [r for r in caplog.records if "PERSIST" in r.getMessage()]


def test_ingest_warns_on_stderr_and_still_sends(tmp_path):
    with RedisServer(tmp_path / "redis", persistent=False) as server:
        env = {**os.environ, "EVALUATOR_REDIS_URL": server.url}
        done = subprocess.run([sys.executable, "-m", "evaluator", "ingest", str(SAMPLE)],
                              env=env, capture_output=True, text=True, timeout=120)
        queued = _client(server).hlen("dramatiq:evaluator.msgs")
    assert done.returncode == 0, done.stderr
    assert "REDIS HAS NO PERSISTENCE" in done.stderr
    assert queued > 0


def _failed_reads(channel: RedisStreamChannel, most: int) -> list[str]:
    """Read until Redis says NOGROUP (a lost connection may come first); the errors seen."""
    errors: list[str] = []
    while len(errors) < most and not any("NOGROUP" in e for e in errors):
        with pytest.raises((redis.ConnectionError, redis.ResponseError)) as failure:
            channel.read(max_entries=10, block_ms=10)
        errors.append(str(failure.value))
    return errors


def _with_url(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"redis_url": url})


def _batch(trace_id: str) -> ResultBatch:
    evaluation = Evaluation(evaluation_id=f"e-{trace_id}", trace_id=trace_id, rubric="relevance",
                            rubric_version=1, rubric_hash="r", judge="j", judge_hash="jh",
                            status="skipped", reason="test")
    return ResultBatch(evaluations=[evaluation])


class _FailingAfter:
    """A channel that delivers its entries, then fails the way a dying Redis does."""

    def __init__(self, entries) -> None:
        self._entries = list(entries)
        self.acked: list[str] = []

    def read(self, max_entries: int, block_ms: int):
        if self._entries:
            entries, self._entries = self._entries[:max_entries], self._entries[max_entries:]
            return entries
        raise redis.ConnectionError("Connection closed by server.")

    def ack(self, entry_ids):
        self.acked.extend(entry_ids)

    def publish(self, batch):
        raise NotImplementedError

    def depth(self) -> int:
        return len(self._entries)


def test_the_sink_writes_what_it_read_when_a_redis_read_fails(tmp_path):
    """A Redis restarted without persistence cannot re-deliver what the sink read: the sink must
    not throw away the batch it was collecting."""
    batches = [_batch(f"t{i}") for i in range(3)]
    channel = _FailingAfter([(str(i), b.to_json()) for i, b in enumerate(batches)])
    sink = Sink(channel, tmp_path / "sink.duckdb", max_wait_s=5.0)
    sink.drain_once(block_ms=10)
    with Store(tmp_path / "sink.duckdb", read_only=True) as store:
        stored = {e.trace_id for e in store.evaluations()}
    assert stored == {e.trace_id for b in batches for e in b.evaluations}
    assert channel.acked == ["0", "1", "2"]


def test_rows_written_before_a_failed_ack_are_counted(tmp_path):
    """Redis still down when the sink acknowledges: the rows are in DuckDB (the entries come
    again and are stored once), and the sink's count says so."""
    channel = _FailingAfter([("0", _batch("t0").to_json())])
    channel.ack = lambda entry_ids: (_ for _ in ()).throw(redis.ConnectionError("down"))
    sink = Sink(channel, tmp_path / "sink.duckdb", max_wait_s=5.0)
    with pytest.raises(redis.ConnectionError):
        sink.drain_once(block_ms=10)
    assert sink.rows_written == 1


def test_a_lost_consumer_group_is_logged_at_error_with_what_may_be_lost(tmp_path, caplog):
    with RedisServer(tmp_path / "redis", persistent=False) as server:
        sink_side = RedisStreamChannel(_client(server))
        sink_side.ensure_group()
        worker_side = RedisStreamChannel(_client(server))
        for _ in range(5):
            worker_side.publish(ResultBatch())
        assert len(sink_side.read(max_entries=2, block_ms=10)) == 2
        server.restart()  # no persistence: the stream and its group are gone
        with caplog.at_level(logging.ERROR):
            failures = _failed_reads(sink_side, 2)
        assert "NOGROUP" in failures[-1], failures
        worker_side.publish(ResultBatch())
        assert len(sink_side.read(max_entries=10, block_ms=10)) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "up to 5 result entries may be lost" in errors[0]
