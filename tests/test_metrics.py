"""Prometheus metrics: what the hooks record, the CPU they cost, the HTTP exposition, and the
worker and sink processes serving them on --metrics-port (through a real Redis)."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from evaluator.core.records import utcnow
from evaluator.core.settings import Settings
from evaluator.core.usage import Usage
from evaluator.queue.channel import InMemoryChannel
from evaluator.queue.messages import ResultBatch, work_message
from evaluator.rubrics import RubricRegistry
from evaluator.worker.actors import WorkerContext, process_message
from evaluator.worker.metrics import EvaluatorMetrics, ExporterStatsCollector, metrics, start_metrics_server
from evaluator.worker.sink import Sink
from tests.support.alert_streams import evaluation

ROOT = Path(__file__).resolve().parent.parent


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sample(m: EvaluatorMetrics, name: str, **labels) -> float | None:
    return m.registry.get_sample_value(name, labels)


def judged(**fields):
    base = {"label": "relevant", "score": 1.0, "judge": "gpt", "cost": 0.002}
    return evaluation("t1", "relevance", utcnow(), **{**base, **fields})


def test_record_evaluations():
    m = EvaluatorMetrics(CollectorRegistry())
    evaluations = [
        judged().model_copy(update={"usage": Usage(500, 40, 0.002, 800.0), "attempts": 3}),
        judged(cost=None).model_copy(update={"usage": Usage(latency_ms=100.0)}),
        judged().model_copy(update={"cached": True}),
        evaluation("t2", "faithfulness", utcnow(), status="skipped", attempts=0, cost=None),
    ]
    m.record_evaluations(evaluations)
    assert sample(m, "evaluator_evaluations_total", rubric="relevance", label="relevant",
                  status="scored") == 3
    assert sample(m, "evaluator_evaluations_total", rubric="faithfulness", label="",
                  status="skipped") == 1
    assert sample(m, "evaluator_judge_latency_seconds_count", judge="gpt") == 2
    assert sample(m, "evaluator_judge_latency_seconds_sum", judge="gpt") == pytest.approx(0.9)
    assert sample(m, "evaluator_judge_tokens_total", judge="gpt", direction="input") == 500
    assert sample(m, "evaluator_judge_cost_usd_total", judge="gpt") == pytest.approx(0.002)
    assert sample(m, "evaluator_judge_cost_unknown_total", judge="gpt") == 1
    assert sample(m, "evaluator_judge_retries_total", judge="gpt") == 2
    assert sample(m, "evaluator_judge_cache_hits_total", judge="gpt") == 1


def test_recording_costs_microseconds_per_evaluation():
    m = EvaluatorMetrics(CollectorRegistry())
    batch = [judged().model_copy(update={"usage": Usage(300, 30, 0.002, 500.0)}) for _ in range(2000)]
    m.record_evaluations(batch[:10])  # label children created once
    started = time.process_time()
    m.record_evaluations(batch)
    m.record_written(batch, 0, 0)
    per_evaluation = (time.process_time() - started) / len(batch)
    assert per_evaluation < 1e-4, f"{per_evaluation * 1e6:.1f} us per evaluation"


def test_sink_records_rows_and_lag(tmp_path):
    channel = InMemoryChannel()
    old = judged().model_copy(update={"created_at": utcnow() - timedelta(seconds=30)})
    channel.publish(ResultBatch(evaluations=[old]))
    before = metrics().registry.get_sample_value("evaluator_sink_lag_seconds_count") or 0
    Sink(channel, tmp_path / "m.duckdb").drain_once(block_ms=10)
    registry = metrics().registry
    assert registry.get_sample_value("evaluator_sink_lag_seconds_count") == before + 1
    assert registry.get_sample_value("evaluator_sink_lag_seconds_bucket", {"le": "60.0"}) >= 1
    assert registry.get_sample_value("evaluator_sink_rows_written_total", {"table": "evaluations"}) >= 1


def test_worker_hook_counts_processed_evaluations(tmp_path):
    settings = Settings.from_env()
    context = WorkerContext(RubricRegistry.load(settings.rubrics_dir), InMemoryChannel(),
                            settings.judges_dir)
    trace = {"trace_id": "m-1", "input": "What is 2+2?", "output": "4", "context": ["2+2 is 4"]}
    message = work_message([{"trace": trace, "sample_reason": "random", "sample_weight": 10.0}],
                           "offline", ["relevance"], None)

    def counted() -> float:
        return sum(s.value for f in metrics().registry.collect() if f.name == "evaluator_evaluations"
                   for s in f.samples if s.name.endswith("_total") and s.labels["rubric"] == "relevance")

    before = counted()
    asyncio.run(process_message(context, message))
    assert counted() == before + 1


def test_queue_depth_is_read_at_scrape_time():
    m = EvaluatorMetrics(CollectorRegistry())
    depth = {"n": 3}
    m.watch_queue_depth("results", lambda: depth["n"])
    assert sample(m, "evaluator_queue_depth", queue="results") == 3
    depth["n"] = 7
    assert sample(m, "evaluator_queue_depth", queue="results") == 7
    m.watch_queue_depth("work", lambda: 1 / 0)
    assert math.isnan(sample(m, "evaluator_queue_depth", queue="work"))


def test_exporter_drops_are_collected_from_its_stats():
    class FakeExporter:
        stats = {"spans_received": 10, "traces_enqueued": 2, "dropped_buffer_full": 3,
                 "dropped_enqueue_failed": 1, "buffered_spans": 4}

    registry = CollectorRegistry()
    registry.register(ExporterStatsCollector(FakeExporter()))
    assert registry.get_sample_value("evaluator_exporter_dropped_total", {"reason": "buffer_full"}) == 3
    assert registry.get_sample_value("evaluator_exporter_dropped_total", {"reason": "enqueue_failed"}) == 1
    assert registry.get_sample_value("evaluator_exporter_buffered_spans") == 4


def test_metrics_server_serves_the_registry():
    m = EvaluatorMetrics(CollectorRegistry())
    m.record_evaluations([judged()])
    server = start_metrics_server(free_port(), addr="127.0.0.1", registry=m.registry)
    try:
        text = scrape(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    assert 'evaluator_evaluations_total{label="relevant",rubric="relevance",status="scored"} 1.0' in text


FIRED = 'evaluator_alert_notifications_total{kind="firing",rule="hallucination_rate"}'


@pytest.mark.redis
def test_worker_and_sink_serve_metrics(redis_url, tmp_path):
    db = tmp_path / "svc.duckdb"
    env = {**os.environ, "EVALUATOR_REDIS_URL": redis_url, "EVALUATOR_DB": str(db)}
    sink_port, worker_port = free_port(), free_port()
    command = [sys.executable, "-m", "evaluator"]
    sink = subprocess.Popen([*command, "sink", "--metrics-port", str(sink_port),
                             "--alerts-every", "0.5"], env=env, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen([*command, "worker", "--threads", "2", "--metrics-port",
                               str(worker_port)], env=env, stderr=subprocess.DEVNULL)
    try:
        ingest = subprocess.run([*command, "ingest", str(ROOT / "datasets" / "sample_traces.jsonl")],
                                env=env, capture_output=True, text=True, timeout=120)
        assert ingest.returncode == 0, ingest.stderr
        deadline = time.monotonic() + 90
        sink_text = worker_text = ""
        while time.monotonic() < deadline:
            try:
                worker_text, sink_text = scrape(worker_port), scrape(sink_port)
            except OSError:
                pass
            if 'evaluator_sink_rows_written_total{table="evaluations"}' in sink_text and \
                    "evaluator_evaluations_total{" in worker_text and FIRED in sink_text:
                break  # the alert schedule has run on the data, and fired
            time.sleep(0.5)
        factual = 'label="factual",rubric="hallucination",status="scored"'
        assert f"evaluator_evaluations_total{{{factual}}}" in worker_text
        assert 'evaluator_queue_depth{queue="work"}' in worker_text
        assert "evaluator_judge_latency_seconds_bucket" in worker_text
        assert 'evaluator_queue_depth{queue="results"}' in sink_text
        assert "evaluator_sink_lag_seconds_count" in sink_text
        assert FIRED in sink_text
    finally:
        for process in (worker, sink):
            process.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        _, sink_log = sink.communicate(timeout=60)
    assert "checking 7 alert rules every 0.5s" in sink_log
    assert "alert check failed" not in sink_log
    assert "FIRING hallucination_rate" in sink_log, sink_log[-2000:]
