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

from evaluator.ingest import collect_work
from evaluator.sampling import SamplingPolicy
from evaluator.store import Store

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"

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
        while time.monotonic() < deadline and _count_evaluations(db) < expected_items * 4:
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
    assert sum(data["status_counts"].values()) == expected_items * 4
    assert data["dead_letters"] == 1
    assert {r["rubric"] for r in data["rubrics"]} == {"hallucination", "faithfulness", "relevance", "refusal"}
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations()
    assert len({e.evaluation_id for e in evaluations}) == len(evaluations)
    assert all(e.status in {"scored", "unscored", "error", "skipped"} for e in evaluations)
    assert all(e.reason for e in evaluations if e.status != "scored")
