"""A slow judge call must not idle the worker: evaluations/s with 10 % of calls taking 3 s longer
(stragglers), against the same worker with none and against the old default of 8 threads.

One `evaluator worker` process (32 calls in flight, default threads), `evaluator sink`, the
local judge at 300 ms (+ 3 s for one call in ten: the `slow` fault), a backlog of sampled
traces in 5-trace messages (the exporter's default). By Little's law a straggler holds its slot
for 3.3 s, so the ceiling falls from 32 / 0.3 s to 32 / 0.57 s; what the worker controls is
whether the slots stay full, so the goal compares the rate with that ceiling.
Redis database 11 is flushed before and after.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import redis

from benchmarks import bench_limits
from benchmarks.e2e_support import Stored, work_items
from benchmarks.e2e_producer import load_traces
from benchmarks.procstat import Process, free_port

REDIS_URL = "redis://127.0.0.1:6379/11"
LATENCY_MS = bench_limits.LATENCY_MS
IN_FLIGHT = bench_limits.IN_FLIGHT
SLOW_SHARE, SLOW_S = 0.10, 3.0
TRACES_PER_MESSAGE = 5
OLD_THREADS = 8
"""`evaluator worker --threads` before issue 15: 8 messages at once, each held by its slowest call."""
RUBRICS = 4
JUDGE_YAML = """name: bench
kind: litellm
model: openai/bench-judge
api_base: {url}
api_key_env: BENCH_JUDGE_KEY
params: {{temperature: 0}}
limits: {{max_in_flight: {in_flight}, timeout_s: 30, max_attempts: 3}}
"""


def _judge(workdir: Path, slow_share: float) -> tuple[Process, str]:
    port = free_port()
    args = ["tests.support.openai_server", "--port", str(port), "--latency-ms", f"{LATENCY_MS:g}",
            "--slow-s", f"{SLOW_S:g}"]
    if slow_share:
        args += ["--fault", f"slow={slow_share:g}"]
    server = Process(args, os.environ, workdir / f"judge-{slow_share:g}.log")
    server.wait_for_output("listening on")
    return server, f"http://127.0.0.1:{port}/v1"


def _measure(workdir: Path, slow_share: float, quick: bool, threads: int | None = None) -> dict:
    """Evaluations/s stored over a window at saturation."""
    from evaluator.queue.broker import build_producer_broker
    from evaluator.queue.producer import enqueue

    warm_s, window_s = (5.0, 10.0) if quick else (8.0, 25.0)
    run_dir = workdir / f"slow-{slow_share:g}-{threads}"
    (run_dir / "judges").mkdir(parents=True)
    server, url = _judge(run_dir, slow_share)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    (run_dir / "judges" / "bench.yaml").write_text(JUDGE_YAML.format(url=url, in_flight=IN_FLIGHT))
    env = {**os.environ, "EVALUATOR_REDIS_URL": REDIS_URL, "EVALUATOR_DB": str(run_dir / "db.duckdb"),
           "EVALUATOR_JUDGES_DIR": str(run_dir / "judges"), "EVALUATOR_JUDGE": "bench",
           "BENCH_JUDGE_KEY": "bench",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    ceiling = IN_FLIGHT / (LATENCY_MS / 1000)  # calls/s without stragglers
    traces = math.ceil(ceiling * 1.5 * (warm_s + window_s) / RUBRICS)
    producer = build_producer_broker(REDIS_URL)
    try:
        enqueue(producer, work_items(f"s{slow_share:g}-", traces, load_traces()), "bench",
                batch_size=TRACES_PER_MESSAGE)
    finally:
        producer.close()
    sink = Process(["evaluator", "sink"], env, run_dir / "sink.log")
    worker = Process(["evaluator", "worker", "--processes", "1",
                      *(["--threads", str(threads)] if threads else [])], env, run_dir / "worker.log")
    try:
        time.sleep(warm_s)
        t0 = time.time()
        time.sleep(window_s)
        t1 = time.time()
    finally:
        worker.stop()
        time.sleep(1.0)  # the sink stores what the worker published
        sink.stop()
        server.stop()
        client.flushdb()
    stored = Stored.load(run_dir / "db.duckdb")
    return {"rate": stored.stored_per_s(t0, t1)}


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None, ratio=None):
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    return {"benchmark": "stragglers", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-stragglers-") as tmp:
        workdir = Path(tmp)
        none = _measure(workdir, 0.0, quick)
        slow = _measure(workdir, SLOW_SHARE, quick)
        before = _measure(workdir, SLOW_SHARE, quick, threads=OLD_THREADS)
    where = (f"1 worker process, {IN_FLIGHT} in flight, judge {LATENCY_MS:g} ms, "
             f"{TRACES_PER_MESSAGE} traces a message")
    mean_latency = (1 - SLOW_SHARE) * LATENCY_MS / 1000 + SLOW_SHARE * (LATENCY_MS / 1000 + SLOW_S)
    ceiling = IN_FLIGHT / mean_latency
    return [
        _row(f"evaluations/s stored, no stragglers, {where}", none["rate"], "evals/s",
             "in-flight limit / latency", IN_FLIGHT / (LATENCY_MS / 1000)),
        _row(f"evaluations/s stored, 10 % of calls {SLOW_S:g} s slower, {where} (stragglers hold "
             "their slot: Little's law caps this at limit / mean latency)", slow["rate"],
             "evals/s", "no stragglers", none["rate"]),
        _row(f"evaluations/s stored with stragglers, against the in-flight limit / mean latency "
             f"({mean_latency:.2f} s)", slow["rate"], "evals/s", "in-flight limit / mean latency",
             ceiling, goal=">= 80 % (slots as full as without stragglers)"),
        _row(f"evaluations/s stored with stragglers, --threads {OLD_THREADS} (before issue 15)",
             before["rate"], "evals/s", "in-flight limit / mean latency", ceiling),
    ]


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(r)
