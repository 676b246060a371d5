"""The whole service path through a real Redis: ingest -> worker process -> sink process -> DuckDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluator.ingest.files import collect_work
from evaluator.queue.broker import build_producer_broker
from evaluator.queue.producer import enqueue
from evaluator.sampling.policy import SamplingPolicy
from evaluator.sampling.spend_check import counted_spend, spend_checks
from evaluator.store import Store
from evaluator.store.cost_queries import service_spend_by_day
from tests.support.judging import KEY, KEY_ENV, judge_config, write_judge
from tests.support.openai_server import OpenAIServer
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
RUBRICS = 5
"""Evaluations per trace: one per rubric (correctness is skipped, the samples carry no reference)."""

pytestmark = pytest.mark.redis


def _evaluator(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evaluator", *args], env=env, **kwargs)


def _count_evaluations(db: Path) -> int:
    if not db.exists():
        return 0
    with Store(db, read_only=True) as store:
        return sum(store.status_counts().values())


def test_ingest_worker_sink_end_to_end(redis_url, tmp_path):
    db = tmp_path / "service.duckdb"
    env = {**os.environ, "EVALUATOR_REDIS_URL": redis_url, "EVALUATOR_DB": str(db)}
    bad_line = tmp_path / "traces.jsonl"
    bad_line.write_text(SAMPLE.read_text(encoding="utf-8") + '{"trace_id": 42, "output": 1}\n',
                        encoding="utf-8")
    expected_items = len(collect_work(bad_line, SamplingPolicy(rate=0.10)).items)

    sink = _evaluator("sink", env=env)
    worker = _evaluator("worker", "--processes", "2", "--threads", "4", env=env)
    try:
        ingest = subprocess.run([sys.executable, "-m", "evaluator", "ingest", str(bad_line)],
                                env=env, capture_output=True, text=True, timeout=120)
        assert ingest.returncode == 0, ingest.stderr
        assert f"sampled {expected_items}" in ingest.stdout
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _count_evaluations(db) < expected_items * RUBRICS:
            time.sleep(0.5)
        # while the sink is still running, report must be able to read the file
        report = subprocess.run([sys.executable, "-m", "evaluator", "report", "--json"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert report.returncode == 0, report.stderr
    finally:
        for process in (worker, sink):
            process.send_signal(signal.SIGTERM)
        for process in (worker, sink):
            process.wait(timeout=60)

    data = json.loads(report.stdout)
    assert sum(data["status_counts"].values()) == expected_items * RUBRICS
    assert data["dead_letters"] == 1
    assert {r["rubric"] for r in data["rubrics"]} == {"hallucination", "faithfulness", "relevance", "refusal",
                                                    "correctness"}
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations()
    assert len({e.evaluation_id for e in evaluations}) == len(evaluations)
    assert all(e.status in {"scored", "unscored", "error", "skipped"} for e in evaluations)
    assert all(e.reason for e in evaluations if e.status != "scored")


def test_a_killed_workers_judge_calls_reach_the_ledger(tmp_path, monkeypatch):
    """SIGKILL a worker in the middle of its messages: every judge call it got an answer for is
    on the ledger (only the calls in flight at the kill may be missing), and the spend the
    workers counted in Redis matches the ledger in `evaluator report`."""
    in_flight = 16
    items = collect_work(SAMPLE, SamplingPolicy(rate=1.0)).items[:40]
    db = tmp_path / "service.duckdb"
    with OpenAIServer(latency_ms=200, jitter_ms=50) as server, \
            RedisServer(tmp_path / "redis", persistent=True) as redis_server:
        write_judge(tmp_path / "judges", judge_config(
            server, "priced", client="openai", prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            limits={"max_in_flight": in_flight}))
        env = {**os.environ, KEY_ENV: KEY, "EVALUATOR_REDIS_URL": redis_server.url,
               "EVALUATOR_DB": str(db), "EVALUATOR_JUDGES_DIR": str(tmp_path / "judges"),
               "EVALUATOR_WORKER_HEARTBEAT_TIMEOUT_S": "2"}
        _send(redis_server.url, items, "priced", batch_size=20)
        sink = _evaluator("sink", env=env, stderr=subprocess.DEVNULL)
        worker = _evaluator("worker", "--processes", "1", "--threads", "2", "--no-preflight", env=env,
                            stderr=subprocess.DEVNULL)
        started = [sink, worker]
        try:
            _wait(lambda: server.stats.total >= 60, "60 judge calls")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            answered_before_kill = server.stats.total
            started.append(_evaluator("worker", "--processes", "1", "--threads", "2",
                                      "--no-preflight", env=env, stderr=subprocess.DEVNULL))
            _wait(lambda: _count_evaluations(db) >= len(items) * RUBRICS, "every evaluation stored")
            # All evaluations can be stored while the redelivered message is still being judged
            # (the killed worker published its finished traces early): wait for the sink to
            # store the calls the workers counted, as a user reading the report later would.
            _wait(lambda: _ledger_calls(db) + in_flight >= server.stats.total
                  and _unrecorded_usd(redis_server.url, db) < 1e-9,
                  "the ledger rows of every counted call", timeout_s=30)
            report = subprocess.run([sys.executable, "-m", "evaluator", "report", "--json"],
                                    env=env, capture_output=True, text=True, timeout=60)
        finally:
            for process in started:
                process.send_signal(signal.SIGTERM)
            for process in started:
                process.wait(timeout=60)
        requests = server.stats.total
    recorded = _ledger_calls(db)
    print(f"judge requests {requests} (killed worker: {answered_before_kill}), ledger {recorded}")
    assert _count_evaluations(db) == len(items) * RUBRICS
    assert requests - in_flight <= recorded <= requests
    (day,) = json.loads(report.stdout)["spend_reconciliation"]
    assert day["counted_usd"] > 0
    assert day["unrecorded_usd"] == pytest.approx(0, abs=1e-9)


def _unrecorded_usd(redis_url: str, db: Path) -> float:
    counted = counted_spend(redis_url) or {}
    with Store(db, read_only=True) as store:
        recorded = service_spend_by_day(store)
    return sum(check.unrecorded_usd for check in spend_checks(counted, recorded))


def _ledger_calls(db: Path) -> int:
    with Store(db, read_only=True) as store:
        return store.conn.execute("SELECT count(*) FROM judge_calls WHERE NOT cached").fetchone()[0]


def _wait(condition, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_redis_restart_without_persistence_is_reported_and_survived(tmp_path):
    """Redis restarted without persistence: the sink and the worker said at start what such a
    restart loses, the sink says at ERROR that its consumer group was gone, and the service
    goes on: work sent after the restart is judged and stored."""
    items = collect_work(SAMPLE, SamplingPolicy(rate=1.0)).items[:20]
    db = tmp_path / "service.duckdb"
    with RedisServer(tmp_path / "redis", persistent=False) as redis_server:
        env = {**os.environ, "EVALUATOR_REDIS_URL": redis_server.url, "EVALUATOR_DB": str(db)}
        logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("sink", "worker")}
        sink = _evaluator("sink", env=env, stderr=logs["sink"])
        worker = _evaluator("worker", "--processes", "1", "--threads", "4", env=env,
                            stderr=logs["worker"])
        try:
            _send(redis_server.url, items[:10])
            _wait(lambda: _count_evaluations(db) >= 40, "the first 10 traces stored")
            redis_server.restart()
            _send(redis_server.url, items[10:])
            _wait(lambda: _count_evaluations(db) >= 80, "the traces sent after the restart")
        finally:
            for process in (worker, sink):
                process.send_signal(signal.SIGTERM)
            for process in (worker, sink):
                process.wait(timeout=60)
            for log in logs.values():
                log.close()
    sink_log = (tmp_path / "sink.log").read_text()
    worker_log = (tmp_path / "worker.log").read_text()
    assert "REDIS HAS NO PERSISTENCE" in sink_log and "REDIS HAS NO PERSISTENCE" in worker_log
    errors = [json.loads(line) for line in sink_log.splitlines()
              if line.startswith("{") and '"ERROR"' in line]
    assert any("was gone" in e["message"] and "may be lost" in e["message"] for e in errors)


def _send(url: str, items, judge: str = "offline", batch_size: int = 5) -> None:
    producer = build_producer_broker(url)
    try:
        enqueue(producer, items, judge, batch_size=batch_size)
    finally:
        producer.close()
