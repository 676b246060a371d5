"""Back-pressure: with the judge slow or down the work queue stays within its bound, the span
exporter samples less and counts what it held back (never an always-evaluate trace), the app's
request path never waits, and `evaluator ingest` waits for room or fails clearly."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from evaluator.core.records import Trace
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.queue.backpressure import QueueFullError, QueueGauge
from evaluator.sampling.policy import SamplingPolicy, decide
from evaluator.sampling.throttle import HELD_BACK, MIN_RATE_SCALE, SamplingThrottle
from tests.support.figures import record
from tests.support.openai_server import OpenAIServer
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
QUEUE_KEY = "dramatiq:evaluator"


class FakeRedis:
    def __init__(self, depth: int = 0) -> None:
        self.depth = depth
        self.reads = 0

    def llen(self, key: str) -> int:
        assert key == QUEUE_KEY
        self.reads += 1
        return self.depth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def traces(count: int, status: str = "ok") -> list[Trace]:
    return [Trace(trace_id=f"{status}-{i}", output="answer", status=status) for i in range(count)]


def test_gauge_reads_redis_once_per_refresh_and_counts_its_own_sends():
    client, clock = FakeRedis(depth=4), Clock()
    gauge = QueueGauge(client, max_depth=10, refresh_s=1.0, clock=clock)
    assert gauge.depth() == 4 and gauge.depth() == 4 and client.reads == 1
    gauge.count_sent(0.5)
    gauge.count_sent(5.5)
    assert gauge.depth() == 10 and gauge.full and client.reads == 1
    clock.now += 1.0
    assert gauge.depth() == 4 and not gauge.full and client.reads == 2


def test_gauge_keeps_the_last_depth_when_redis_cannot_be_read():
    class Down(FakeRedis):
        def llen(self, key: str) -> int:
            raise redis.ConnectionError("down")

    gauge = QueueGauge(Down(), max_depth=3, refresh_s=0.0)
    gauge.count_sent(2)
    assert gauge.depth() == 2


def test_reserve_waits_for_room_then_counts_the_message():
    client, clock = FakeRedis(depth=5), Clock()
    gauge = QueueGauge(client, max_depth=5, refresh_s=1.0, clock=clock, sleep=clock.sleep)
    original_sleep = clock.sleep

    def workers_drain(seconds: float) -> None:
        original_sleep(seconds)
        client.depth = max(0, client.depth - 1)

    gauge._sleep = workers_drain
    gauge.reserve(timeout_s=30)
    assert gauge.reserved == 1 and gauge.depth() == 5 and clock.now == 101.0


def test_reserve_gives_up_with_a_clear_error():
    clock = Clock()
    gauge = QueueGauge(FakeRedis(depth=7), max_depth=7, refresh_s=1.0, clock=clock, sleep=clock.sleep)
    with pytest.raises(QueueFullError) as caught:
        gauge.reserve(timeout_s=5)
    message = str(caught.value)
    assert "held 7 messages (limit 7, EVALUATOR_MAX_QUEUE_DEPTH) for 5s" in message
    assert "workers are not keeping up" in message and clock.now >= 105


def test_throttle_holds_back_random_samples_while_full_but_never_always_evaluate_ones():
    client, clock = FakeRedis(depth=50), Clock()
    throttle = SamplingThrottle(QueueGauge(client, max_depth=50, clock=clock), batch_size=20,
                                clock=clock)
    policy = SamplingPolicy(rate=1.0)
    random_decisions = [throttle.decide(t, policy) for t in traces(100)]
    assert {d.reason for d in random_decisions} == {HELD_BACK}
    assert not any(d.sampled for d in random_decisions)
    errors = [throttle.decide(t, policy) for t in traces(40, status="error")]
    assert all(d.sampled and d.reason == "error" and d.weight == 1.0 for d in errors)
    throttle.delivered(40)
    assert throttle.gauge.depth() == 52, "the 40 errors went as two messages"


def test_throttle_counts_the_messages_its_admitted_traces_will_make():
    client, clock = FakeRedis(depth=7), Clock()
    throttle = SamplingThrottle(QueueGauge(client, max_depth=10, clock=clock), batch_size=20,
                                clock=clock)
    decisions = [throttle.decide(t, SamplingPolicy(rate=1.0)) for t in traces(100)]
    assert sum(d.sampled for d in decisions) == 60, "three messages of 20 fill the queue to 10"
    throttle.delivered(60)
    assert throttle.gauge.depth() == 10


def test_throttle_halves_the_random_rate_each_second_over_the_bound_and_recovers():
    client, clock = FakeRedis(depth=0), Clock()
    throttle = SamplingThrottle(QueueGauge(client, max_depth=10, clock=clock), batch_size=20,
                                clock=clock)
    policy = SamplingPolicy(rate=0.5)
    sample = traces(4000)
    client.depth = 10
    scales = []
    for _ in range(12):
        throttle.decide(sample[0], policy)
        scales.append(throttle.scale)
        clock.now += 1.0
    assert scales[:4] == [0.5, 0.25, 0.125, 0.0625] and scales[-1] == MIN_RATE_SCALE
    client.depth = 6  # below the bound, above half: hold the rate where it is
    clock.now += 1.0
    decisions = [throttle.decide(t, policy) for t in sample]
    kept = [d for d in decisions if d.sampled]
    assert throttle.scale == MIN_RATE_SCALE
    assert all(d.weight == 1 / (0.5 * MIN_RATE_SCALE) for d in kept)
    held_back = sum(d.reason == HELD_BACK for d in decisions)
    assert len(kept) < 20 and len(kept) + held_back == sum(decide(t, policy).sampled for t in sample)
    client.depth = 0
    for _ in range(12):
        clock.now += 1.0
        throttle.decide(sample[0], policy)
    assert throttle.scale == 1.0


def test_throttle_scales_segment_and_rubric_rates_too():
    from evaluator.sampling.policy import SegmentRate

    client, clock = FakeRedis(depth=10), Clock()
    throttle = SamplingThrottle(QueueGauge(client, max_depth=10, clock=clock), batch_size=5000,
                                clock=clock)
    policy = SamplingPolicy(rate=0.0, segment_rates=(SegmentRate("model", "m", 1.0, "hallucination"),),
                            rubric_rates={"refusal": 0.5})
    sample = [Trace(trace_id=f"s-{i}", output="answer", model="m") for i in range(2000)]
    throttle.decide(sample[0], policy)  # full: halve, and hold this sample back
    client.depth = 6  # below the bound, above half: the next adjustment halves once more
    clock.now += 1.0
    kept = [d for d in (throttle.decide(t, policy) for t in sample) if d.sampled]
    assert throttle.scale == 0.25
    assert 400 <= len(kept) <= 600, "the segment's rate 1.0 is scaled too"
    assert all(d.weight == 4.0 and d.rate == 0.0
               and d.rubric_rates == {"hallucination": 0.25, "refusal": 0.125} for d in kept)


# -- against Redis, with a real worker whose judge is slow or down ------------------------------


def _judges_dir(directory: Path, api_base: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "stalled.yaml").write_text(
        f"name: stalled\nkind: litellm\nmodel: openai/stalled\napi_base: {api_base}\n"
        "api_key_env: STALLED_JUDGE_KEY\nparams: {temperature: 0}\n"
        "limits: {max_in_flight: 2, timeout_s: 30, max_attempts: 2}\n", encoding="utf-8")
    return directory


def _service_env(redis_url: str, tmp_path: Path, judges: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "EVALUATOR_REDIS_URL": redis_url,
            "EVALUATOR_DB": str(tmp_path / "bp.duckdb"), "EVALUATOR_JUDGES_DIR": str(judges),
            "STALLED_JUDGE_KEY": "sk-stalled", **extra}


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "evaluator", "worker", "--processes", "1",
                                 "--threads", "1"], env=env, stdout=out, stderr=out)


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)  # its judge calls would hold up a graceful stop
    process.wait()


class DepthWatch:
    """Polls the queue length every 20 ms and remembers the largest value seen."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self.max_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.max_seen = max(self.max_seen, int(self._client.llen(QUEUE_KEY)))

    def __enter__(self) -> DepthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _chat(tracer, index: int, error: bool = False) -> float:
    """One LLM call's span, as the app's request path makes it; returns the seconds it took."""
    started = time.perf_counter()
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                             "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": f"q{index}",
                             "gen_ai.completion.0.content": f"answer {index}"})
        if error:
            span.set_status(Status(StatusCode.ERROR, "upstream timeout"))
    return time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("judge_state", ["slow", "down"])
def test_exporter_samples_less_when_the_judge_is_slow_or_down(judge_state, private_redis_url,
                                                              tmp_path):
    max_depth, batch_size = 15, 10
    with OpenAIServer(latency_ms=5_000) as slow_server:
        api_base = (slow_server.base_url if judge_state == "slow"
                    else f"http://127.0.0.1:{free_port()}/v1")
        env = _service_env(private_redis_url, tmp_path, _judges_dir(tmp_path / "judges", api_base))
        worker = _start_worker(env, tmp_path / "worker.log")
        exporter = EvaluatorSpanExporter(private_redis_url, judge="stalled",
                                         policy=SamplingPolicy(rate=1.0), mask=lambda t: t,
                                         batch_size=batch_size, max_queue_depth=max_depth)
        app_thread, in_request, exported_in_request = threading.get_ident(), [False], []
        export = exporter.export

        def export_noting_the_thread(spans):
            if threading.get_ident() == app_thread and in_request[0]:
                exported_in_request.append(len(spans))
            return export(spans)

        def request(index: int, error: bool = False) -> float:
            in_request[0] = True
            try:
                return _chat(tracer, index, error)
            finally:
                in_request[0] = False

        exporter.export = export_noting_the_thread
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
        tracer = provider.get_tracer("app")
        durations: list[float] = []
        try:
            with DepthWatch(private_redis_url) as watch:
                for index in range(2_500):  # ~5 s of traffic at ~500 LLM calls a second
                    durations.append(request(index))
                    if index % 50 == 49:
                        time.sleep(0.1)
                provider.force_flush()
            before = exporter.stats
            for index in range(30):  # always-evaluate traces, sent although the queue is full
                durations.append(request(10_000 + index, error=True))
            provider.force_flush()
            after = exporter.stats
        finally:
            provider.shutdown()
            _stop(worker)

    held_back = after["dropped_backpressure"]
    p99_ms = statistics.quantiles(durations, n=100)[98] * 1000
    record("backpressure", judge=judge_state, traces=len(durations), max_queue_depth=max_depth,
           max_queue_seen=watch.max_seen, enqueued=after["traces_enqueued"], held_back=held_back,
           app_span_p99_ms=round(p99_ms, 3), app_span_max_ms=round(max(durations) * 1000, 3))
    assert watch.max_seen <= max_depth
    assert held_back > 1_000, after
    assert after["traces_enqueued"] + held_back == after["traces_completed"] == len(durations)
    assert after["traces_enqueued"] - before["traces_enqueued"] == 30
    assert after["dropped_backpressure"] == before["dropped_backpressure"]
    assert after["dropped_enqueue_failed"] == 0
    # the app's request path never waits on the exporter: its Redis round trips run on the
    # span processor's thread (the time each span took is a figure above, not a test)
    assert exported_in_request == []


def _trace_file(path: Path, count: int) -> Path:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:count]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _ingest(env: dict[str, str], file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluator", "ingest", str(file), "--sample-rate",
                           "1.0", "--judge", "offline"], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.redis
def test_ingest_into_a_full_queue_fails_clearly_after_waiting(private_redis_url, tmp_path):
    env = _service_env(private_redis_url, tmp_path, ROOT / "judges", EVALUATOR_MAX_QUEUE_DEPTH="3",
                       EVALUATOR_QUEUE_WAIT_S="1.5")
    started = time.monotonic()
    result = _ingest(env, _trace_file(tmp_path / "traces.jsonl", 100))
    assert result.returncode == 2, result.stderr
    assert "work queue held 3 messages (limit 3, EVALUATOR_MAX_QUEUE_DEPTH) for 1.5s" in result.stderr
    assert "3 messages were sent" in result.stderr
    assert time.monotonic() - started >= 1.5
    assert redis.Redis.from_url(private_redis_url).llen(QUEUE_KEY) == 3


@pytest.mark.slow
@pytest.mark.redis
def test_ingest_waits_for_the_workers_to_make_room(private_redis_url, tmp_path):
    env = _service_env(private_redis_url, tmp_path, ROOT / "judges", EVALUATOR_MAX_QUEUE_DEPTH="2")
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        with DepthWatch(private_redis_url) as watch:
            result = _ingest(env, _trace_file(tmp_path / "traces.jsonl", 400))
    finally:
        _stop(worker)
    assert result.returncode == 0, result.stderr
    assert "sampled 400, enqueued 20 messages" in result.stdout
    assert "work queue full" in result.stderr
    assert watch.max_seen <= 2
