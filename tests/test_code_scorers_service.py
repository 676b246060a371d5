"""A user's code-scorer rubric in service mode: ingest -> Redis -> worker process -> sink -> DuckDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from evaluator.store import Store
from tests.test_code_scorers import traces_file, user_rubrics

pytestmark = pytest.mark.redis


def test_a_user_code_rubric_runs_in_the_worker_and_sink(private_redis_url, tmp_path):
    db = tmp_path / "service.duckdb"
    env = {**os.environ, "EVALUATOR_REDIS_URL": private_redis_url, "EVALUATOR_DB": str(db),
           "EVALUATOR_RUBRICS_DIR": str(user_rubrics(tmp_path / "rubrics"))}

    def evaluator(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "evaluator", *args], env=env)

    sink, worker = evaluator("sink"), evaluator("worker", "--threads", "2", "--no-preflight")
    try:
        ingest = subprocess.run([sys.executable, "-m", "evaluator", "ingest", "--sample-rate", "1",
                                 str(traces_file(tmp_path / "traces.jsonl"))],
                                env=env, capture_output=True, text=True, timeout=120)
        assert ingest.returncode == 0, ingest.stderr
        deadline = time.monotonic() + 90
        evaluations = []
        while time.monotonic() < deadline and len(evaluations) < 9:
            time.sleep(0.3)
            if db.exists():
                with Store(db, read_only=True) as store:
                    evaluations = store.evaluations()
    finally:
        for process in (worker, sink):
            process.send_signal(signal.SIGTERM)
        for process in (worker, sink):
            process.wait(timeout=60)
    rows = {(e.trace_id, e.rubric): e for e in evaluations}
    assert len(rows) == 9
    assert [rows[(t, "order_id")].label for t in ("t-1", "t-2", "t-3")] == ["pass", "fail", "fail"]
    assert (rows[("t-1", "answer")].label, rows[("t-2", "answer")].label) == ("pass", "fail")
    assert rows[("t-1", "order_id")].judge == "code:regex"
    assert rows[("t-3", "refusal")].label == "refused"
