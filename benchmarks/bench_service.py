"""End to end: the span exporter feeding Redis, N `evaluator worker` processes, `evaluator sink`
and the local OpenAI-compatible judge (300 ms) on this machine, measured against its limits.

Per worker-process count (1, 2), with the same worker processes throughout:
1. paced: the app (benchmarks.e2e_producer: opentelemetry-sdk + EvaluatorSpanExporter, 10 %
   sampling) offers 70 % of the tightest limit; span end -> stored score latency, CPU per stage
   (EVALUATOR_STAGE_TIMINGS), traces/s in;
2. saturated: a backlog of sampled traces is queued; evaluations/s stored, judge calls in flight
   (Little's law over the stored latencies), worker CPU and RSS, queue depth.
Then the sink alone drains a backlog of results (its ceiling), and the sizing figures: Redis
memory per queued trace and per waiting result, DuckDB growth per evaluation.
Redis database 12 is flushed before and after. The limits come from bench_limits (same run).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import redis

from benchmarks import bench_limits
from benchmarks.e2e_producer import load_traces
from benchmarks.e2e_support import (
    JUDGE_YAML,
    RESULTS_STREAM,
    WORK_QUEUE,
    Stored,
    Timeline,
    judged_rubrics_dir,
    profile_split,
    profile_worker,
    purge_work_queue,
    read_timings,
    result_batches,
    stage_delta,
    work_items,
)
from benchmarks.procstat import Process, cpu_s, judge_server

LATENCY_MS = bench_limits.LATENCY_MS
THREADS = 8
"""`evaluator worker --threads` of the rows in BENCHMARKS.md (the default was 8 until issue 15
raised it to 32; without stragglers, 8 messages of 20 calls already fill 32 slots)."""
BATCH_SIZE = 5
"""Sampled traces per queue message: the span exporter's default."""
PACED_LOAD = 0.7
PROFILE_S = 8.0
"""py-spy (when installed) samples one saturated worker this long, for the CPU split."""
SAMPLE_RATE = 0.10
RUBRICS = 4
REDIS_URL = bench_limits.REDIS_URL


class Service:
    """The processes of one benchmark run and where they write."""

    def __init__(self, workdir: Path, url: str, quick: bool) -> None:
        self.workdir, self.quick = workdir, quick
        self.warm_s, self.window_s = (4.0, 6.0) if quick else (6.0, 20.0)
        self.db = workdir / "service.duckdb"
        self.timings = workdir / "timings" / "stage"
        self.timings.parent.mkdir()
        judges = workdir / "judges"
        judges.mkdir()
        (judges / "bench.yaml").write_text(JUDGE_YAML.format(url=url, in_flight=bench_limits.IN_FLIGHT))
        self.env = {**os.environ, "EVALUATOR_REDIS_URL": REDIS_URL, "EVALUATOR_DB": str(self.db),
                    "EVALUATOR_JUDGES_DIR": str(judges), "EVALUATOR_JUDGE": "bench",
                    "EVALUATOR_RUBRICS_DIR": str(judged_rubrics_dir(workdir)),
                    "BENCH_JUDGE_KEY": "bench",
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "EVALUATOR_STAGE_TIMINGS": str(self.timings)}
        self.client = redis.Redis.from_url(REDIS_URL)
        self.redis_pid = int(self.client.info("server")["process_id"])
        self.samples = load_traces()
        self.workers: list[Process] = []
        self.sink: Process | None = None
        self.timeline = Timeline(self.client).start()

    def start_sink(self) -> float:
        self.sink = Process(["evaluator", "sink", "--db", str(self.db)], self.env,
                            self.workdir / f"sink-{time.time():.0f}.log")
        self.sink.wait_for_output("writing")
        return time.time()

    def start_workers(self, count: int) -> None:
        self.workers = [Process(["evaluator", "worker", "--processes", "1", "--threads", str(THREADS)],
                                self.env, self.workdir / f"worker-{count}-{i}.log") for i in range(count)]
        self.timeline.pids = [w.pid for w in self.workers]

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []
        self.timeline.pids = []
        purge_work_queue(self.client)

    def wait_drained(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while time.monotonic() < deadline and quiet < 3:
            empty = not self.client.llen(WORK_QUEUE) and not self.client.xlen(RESULTS_STREAM)
            quiet = quiet + 1 if empty else 0
            time.sleep(0.5)

    def enqueue(self, prefix: str, traces: int) -> None:
        from evaluator.queue.broker import build_producer_broker
        from evaluator.queue.producer import enqueue

        broker = build_producer_broker(REDIS_URL)
        try:
            enqueue(broker, work_items(prefix, traces, self.samples), "bench",
                    batch_size=BATCH_SIZE)
        finally:
            broker.close()

    def cpu(self) -> dict[str, float]:
        return {"workers": sum(w.cpu_s() for w in self.workers),
                "sink": self.sink.cpu_s() if self.sink else 0.0, "redis": cpu_s(self.redis_pid)}

    def close(self) -> None:
        self.timeline.stop()
        for process in [*self.workers, *([self.sink] if self.sink else [])]:
            process.stop()
        self.client.flushdb()


def paced(service: Service, count: int, offered_evals: float, batch_size: int = BATCH_SIZE) -> dict:
    """The producer offers `offered_evals`; measured over the window after a warm-up."""
    traces_per_s = offered_evals / RUBRICS / SAMPLE_RATE
    seconds = service.warm_s + service.window_s
    producer = Process(["benchmarks.e2e_producer", REDIS_URL, "--traces-per-s", f"{traces_per_s:.1f}",
                        "--seconds", f"{seconds:g}", "--sample-rate", f"{SAMPLE_RATE:g}",
                        "--batch-size", str(batch_size), "--tag", f"paced{count}-{batch_size}"],
                       service.env, service.workdir / f"producer-{count}-{batch_size}.log")
    time.sleep(service.warm_s)
    t0, cpu0, stages0 = time.time(), service.cpu(), read_timings(service.timings)
    time.sleep(service.window_s)
    t1, cpu1, stages1 = time.time(), service.cpu(), read_timings(service.timings)
    producer.popen.wait(120)
    producer.stop()
    report = producer.log.read_text().strip().splitlines()[-1]
    service.wait_drained()
    sampled = [snap.get(producer.pid, {}).get("stages", {}).get("mask", [0, 0])[1]
               for snap in (stages0, stages1)]
    return {"t0": t0, "t1": t1, "offered": offered_evals, "producer": json.loads(report),
            "producer_stages": stage_delta(stages0, stages1, [producer.pid]),
            "producer_evaluations": (sampled[1] - sampled[0]) * RUBRICS,
            "worker_stages": stage_delta(stages0, stages1, [w.pid for w in service.workers]),
            "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}}


def saturated(service: Service, count: int, tightest: float) -> dict:
    backlog = math.ceil(tightest * 1.5 * (service.window_s + PROFILE_S + 8) / RUBRICS)
    service.enqueue(f"sat{count}-", backlog)
    time.sleep(3.0)
    t0, cpu0 = time.time(), service.cpu()
    time.sleep(service.window_s)
    t1, cpu1 = time.time(), service.cpu()
    folded = service.workdir / f"worker-{count}.folded"
    spy = profile_worker(service.workers[0].pid, PROFILE_S, folded) if count == 1 else None
    if spy is not None:  # after the throughput window, so sampling never slows what is measured
        spy.wait(PROFILE_S + 30)
    rss = max((p[3] for p in service.timeline.window(t0 - 30, t1)), default=0.0)
    depth = [p[1] for p in service.timeline.window(t0, t1)]
    return {"t0": t0, "t1": t1, "backlog": math.ceil(backlog / BATCH_SIZE), "rss": rss, "depth": depth,
            "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}, "profile": profile_split(folded)}


def redis_bytes_per_queued_trace(service: Service, traces: int = 1_000) -> float:
    before = service.client.info("memory")["used_memory"]
    service.enqueue("mem-", traces)
    grown = service.client.info("memory")["used_memory"] - before
    purge_work_queue(service.client)
    return grown / traces


def sink_drain(service: Service, traces: int) -> dict:
    """Stop the sink, queue `traces` x 4 evaluations of results, time a fresh sink draining them."""
    from evaluator.queue.channel import RedisStreamChannel

    service.sink.stop()
    channel = RedisStreamChannel(service.client)
    batches = result_batches("sink-", traces, BATCH_SIZE, service.samples)
    memory = service.client.info("memory")["used_memory"]
    for batch in batches:
        channel.publish(batch)
    memory = service.client.info("memory")["used_memory"] - memory
    size = service.db.stat().st_size
    ready = service.start_sink()
    cpu = service.sink.cpu_s()
    while service.client.xlen(RESULTS_STREAM):
        time.sleep(0.02)
    drained = time.time() - ready
    cpu = service.sink.cpu_s() - cpu
    service.sink.stop()
    service.sink = None
    evaluations = traces * RUBRICS
    return {"evals_per_s": evaluations / drained, "cpu_ms_per_eval": cpu * 1000 / evaluations,
            "redis_bytes_per_eval": memory / evaluations,
            "db_bytes_per_eval": (service.db.stat().st_size - size) / evaluations}


def run(quick: bool = False) -> list[dict]:
    from benchmarks.service_rows import rows

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        workdir = Path(tmp)
        server, url = judge_server(LATENCY_MS, workdir)
        redis.Redis.from_url(REDIS_URL).flushdb()
        service = None
        try:
            limits = bench_limits.limits(url, quick, LATENCY_MS)
            service = Service(workdir, url, quick)
            service.start_sink()
            queued = redis_bytes_per_queued_trace(service)
            phases = {}
            for count in (1, 2):
                tightest = min(limits.judge_bound(count), limits.dramatiq_bound(),
                               limits.client_bound(bench_limits.client_in_use(), count))
                service.start_workers(count)
                phases[count] = {"paced": paced(service, count, PACED_LOAD * tightest),
                                 "saturated": saturated(service, count, tightest),
                                 "tightest": tightest}
                service.stop_workers()
                service.wait_drained()
            drain = sink_drain(service, 2_500 if quick else 10_000)
            stored = Stored.load(service.db)
            return rows(limits, phases, stored, service.timeline, queued, drain)
        finally:
            if service is not None:
                service.close()
            server.stop()


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(r)
