"""Crash safety of the service: SIGKILL a worker mid-batch, the sink mid-flush, then Redis itself,
and still every sampled trace ends with exactly one terminal Evaluation per rubric.

Runs the real processes (`evaluator sink`, two `evaluator worker --processes 1`, `evaluator
ingest`) against a Redis of the test's own that fsyncs every write, and an LLM judge (the local
OpenAI-compatible server, with latency) so that batches are really in flight when killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import redis

from evaluator.core.records import TERMINAL_STATUSES
from evaluator.ingest.files import collect_work
from evaluator.queue.channel import RedisStreamChannel
from evaluator.queue.messages import QUEUE_NAME, ResultBatch
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.policy import SamplingPolicy
from evaluator.store import Store
from tests.support.figures import record
from tests.support.openai_server import OpenAIServer
from tests.support.redis_server import persistent_redis  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
JUDGE = "crash-judge"
KEY_ENV = "CRASH_JUDGE_API_KEY"
DEADLINE_S = 150

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def _judge_config(directory: Path, base_url: str) -> Path:
    directory.mkdir()
    (directory / f"{JUDGE}.yaml").write_text(
        f"name: {JUDGE}\nkind: litellm\nmodel: openai/crash-judge\napi_base: {base_url}\n"
        f"api_key_env: {KEY_ENV}\nparams: {{temperature: 0}}\n"
        "limits: {max_in_flight: 16, timeout_s: 20, max_attempts: 4}\n",
        encoding="utf-8")
    return directory


class Service:
    """The sink and worker processes, each a direct child that can be SIGKILLed."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen] = {}
        self.kills: list[str] = []

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "evaluator", *args], env=self.env, stdout=log, stderr=log)
        log.close()

    def kill(self, name: str) -> None:
        process = self.processes[name]
        assert process.poll() is None, f"{name} died on its own: see {self.logs / name}.log"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.kills.append(name)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _stored_pairs(db: Path) -> int:
    """Distinct (trace, rubric) pairs stored so far (0 before the sink's first write)."""
    if not db.exists():
        return 0
    with Store(db, read_only=True, lock_timeout_s=30) as store:
        return store.conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT trace_id, rubric FROM evaluations)").fetchone()[0]


def _wait_for(what: str, condition: Callable[[], bool], deadline: float,
              state: Callable[[], str] = lambda: "") -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; {state()}")
        time.sleep(0.05)


def _redis_state(client: redis.Redis) -> Callable[[], str]:
    """What the queue and results keys hold, for the failure message."""
    def describe() -> str:
        sizes = {}
        for key in client.scan_iter("*"):
            kind = client.type(key).decode()
            size = {"list": client.llen, "hash": client.hlen, "set": client.scard,
                    "zset": client.zcard, "stream": client.xlen}.get(kind, lambda _: "?")(key)
            sizes[key.decode()] = f"{kind}:{size}"
        return f"redis keys: {sizes}; unacked results: {_unacked_results(client)}"
    return describe


def _unacked_results(client: redis.Redis) -> int:
    """Results the sink has read but not yet acknowledged: it is in the middle of a flush."""
    try:
        return int(client.xpending("evaluator:results", "sink")["pending"])
    except redis.ResponseError:
        return 0


def _work_left(client: redis.Redis) -> int:
    """Work messages not yet acknowledged by a worker (queued, delayed or in flight)."""
    return sum(int(client.hlen(f"dramatiq:{name}.msgs")) for name in (QUEUE_NAME, f"{QUEUE_NAME}.DQ"))


def test_no_evaluation_lost_or_duplicated_through_worker_sink_and_redis_kills(
        persistent_redis, tmp_path):  # noqa: F811
    expected_traces = len(collect_work(SAMPLE, SamplingPolicy(rate=1.0)).items)
    rubrics = [r.criterion for r in RubricRegistry.load(ROOT / "rubrics").latest()]
    expected = expected_traces * len(rubrics)
    db = tmp_path / "crash.duckdb"
    client = redis.Redis.from_url(persistent_redis.url)

    with OpenAIServer(latency_ms=60, jitter_ms=30) as judge_server:
        env = {
            **os.environ,
            "EVALUATOR_REDIS_URL": persistent_redis.url,
            "EVALUATOR_DB": str(db),
            "EVALUATOR_JUDGES_DIR": str(_judge_config(tmp_path / "judges", judge_server.base_url)),
            "EVALUATOR_WORKER_HEARTBEAT_TIMEOUT_S": "3",
            "EVALUATOR_BROKER_MAINTENANCE_CHANCE": "1000000",
            "EVALUATOR_ALERTS_EVERY_S": "0",
            KEY_ENV: "sk-crash-test-key",
        }
        service = Service(env, tmp_path)
        worker = ("worker", "--processes", "1", "--threads", "4", "--no-preflight")
        service.start("sink", "sink")
        service.start("worker-a", *worker)
        service.start("worker-b", *worker)
        started = time.monotonic()
        deadline = started + DEADLINE_S
        try:
            ingest = subprocess.run(
                [sys.executable, "-m", "evaluator", "ingest", str(SAMPLE), "--sample-rate", "1.0",
                 "--judge", JUDGE], env=env, capture_output=True, text=True, timeout=120)
            assert ingest.returncode == 0, ingest.stderr
            assert f"sampled {expected_traces}" in ingest.stdout

            # 1. A worker, while its judge calls are in flight.
            _wait_for("first evaluations", lambda: _stored_pairs(db) >= expected * 0.10, deadline)
            _wait_for("judge calls in flight", lambda: judge_server.stats.in_flight > 0, deadline)
            service.kill("worker-a")
            service.start("worker-a2", *worker)

            # 2. The sink, between reading results and acknowledging them.
            _wait_for("more evaluations", lambda: _stored_pairs(db) >= expected * 0.25, deadline)
            _wait_for("a flush in progress", lambda: _unacked_results(client) > 0, deadline)
            service.kill("sink")
            for read_only in (True, False):  # the file opens cleanly after a kill -9 of its writer
                with Store(db, read_only=read_only) as store:
                    store.status_counts()
            service.start("sink-2", "sink")

            # 3. Redis itself, killed and started again on the same port and directory.
            _wait_for("half the evaluations", lambda: _stored_pairs(db) >= expected * 0.50, deadline)
            persistent_redis.restart(hard=True, down_s=2.0)
            service.kills.append("redis")

            state = _redis_state(client)
            _wait_for("every evaluation", lambda: _stored_pairs(db) >= expected, deadline, state)
            _wait_for("an empty queue", lambda: _work_left(client) == 0, deadline, state)
            _wait_for("an empty results stream",
                      lambda: RedisStreamChannel(client).depth() == 0, deadline, state)
            elapsed = time.monotonic() - started
        finally:
            service.stop_all()

    for read_only in (True, False):
        connection = duckdb.connect(str(db), read_only=read_only)
        connection.execute("SELECT count(*) FROM evaluations").fetchone()
        connection.close()
    with Store(db, read_only=True) as store:
        per_pair = store.conn.execute(
            "SELECT trace_id, rubric, count(*) AS n FROM evaluations GROUP BY ALL").fetchall()
        statuses = dict(store.conn.execute(
            "SELECT status, count(*) FROM evaluations GROUP BY status").fetchall())
        unexplained = store.conn.execute(
            "SELECT count(*) FROM evaluations WHERE status <> 'scored' AND coalesce(reason, '') = ''"
        ).fetchone()[0]
        traces_stored = store.conn.execute("SELECT count(*) FROM traces").fetchone()[0]
    publish_waits = sum(log.read_text(errors="replace").count("publishing results failed")
                        for log in tmp_path.glob("worker-*.log"))
    duplicated = sum(n - 1 for _, _, n in per_pair)
    lost = expected - len(per_pair)
    record("crash_safety", traces=expected_traces, rubrics=len(rubrics), evaluations=expected,
           kills=service.kills, lost=lost, duplicated=duplicated, statuses=statuses,
           judge_requests=judge_server.stats.total, publishes_that_waited_for_redis=publish_waits,
           elapsed_s=round(elapsed, 1))
    assert lost == 0
    assert duplicated == 0
    assert set(statuses) <= set(TERMINAL_STATUSES)
    assert unexplained == 0
    assert traces_stored == expected_traces
    assert service.kills == ["worker-a", "sink", "redis"]


def test_sink_recreates_its_consumer_group_when_redis_lost_it(tmp_path):
    """A Redis restarted without persistence (or flushed) forgets the sink's consumer group; the
    sink must create it again instead of failing with NOGROUP forever."""
    from tests.support.redis_server import RedisServer

    with RedisServer(tmp_path / "redis", persistent=False) as server:
        client = redis.Redis.from_url(server.url)
        sink_side = RedisStreamChannel(client)
        sink_side.ensure_group()
        client.flushall()
        with pytest.raises(redis.ResponseError, match="NOGROUP"):
            sink_side.read(max_entries=10, block_ms=10)
        RedisStreamChannel(client).publish(ResultBatch())
        assert len(sink_side.read(max_entries=10, block_ms=10)) == 1


WRITER = """
import os, sys
from evaluator.core.records import Evaluation
from evaluator.store import Store

db, mode, batch = sys.argv[1], sys.argv[2], 0
row = Evaluation(evaluation_id="", trace_id="t", rubric="r", rubric_version=1, rubric_hash="h",
                 judge="j", judge_hash="jh", status="skipped", reason="crash test")
store = Store(db) if mode == "held-open" else None
print("writing", flush=True)
while True:
    batch += 1
    rows = [row.model_copy(update={"evaluation_id": f"{os.getpid()}-{batch}-{i}"})
            for i in range(10_000)]
    if store is None:
        Store.write_once(db, evaluations=rows)
    else:
        store.write_batch(evaluations=rows)
"""


def test_duckdb_opens_cleanly_after_each_kill_of_its_writer(tmp_path):
    """A writer committing 10,000-row batches in a loop is SIGKILLed 16 times at random moments,
    alternately the sink's way (open, write one batch, close) and holding the file open (its
    write-ahead log then outlives each commit, so most kills leave one to replay). Each time the
    file opens read-write and read-only and holds whole batches only."""
    import random

    db, rng, counts, wal_left = tmp_path / "killed.duckdb", random.Random(8), [], 0
    for kill in range(16):
        mode = "held-open" if kill % 2 else "write-once"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), mode], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "writing\n"
        time.sleep(rng.uniform(0.3, 1.2))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        wal_left += (tmp_path / "killed.duckdb.wal").exists()
        for read_only in (False, True):
            with Store(db, read_only=read_only) as store:
                rows = store.conn.execute("SELECT count(*) FROM evaluations").fetchone()[0]
        counts.append(rows)
        assert rows % 10_000 == 0, f"a partial batch survived the kill: {rows} rows"
    record("duckdb_writer_kills", kills=len(counts), kills_leaving_a_wal=wal_left,
           clean_opens=len(counts) * 2, rows_after_last_kill=counts[-1], partial_batches=0)
    assert counts == sorted(counts) and counts[-1] > 0 and wal_left > 0
