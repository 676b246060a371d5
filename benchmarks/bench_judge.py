"""Judge calls: one worker process against the local OpenAI-compatible server at 200 ms.

Each measurement runs in a child process of its own (its CPU is that process's CPU time; the
server runs apart). Measured in the same run:
- our dramatiq worker (AsyncIO middleware, the evaluate actor, batches of 20 traces, the
  default in-flight limit of 32) over the openai client and over litellm: evaluations/s and
  CPU ms per evaluation;
- the baseline: dramatiq's default synchronous actor, 8 threads, one `litellm.completion` per
  evaluation;
- the HTTP clients alone (32 concurrent calls to a 0 ms server): litellm, the openai client's
  typed `chat.completions.create`, and our transport's post of a ready body (aiohttp with
  the openai client's URL and headers; measured in the worker's process right after it), so
  our own CPU per evaluation (worker total minus that post) can be compared with litellm's own per-call cost;
- the Redis rate limiter: reservations per second from one event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.procstat import ROOT, judge_server

LATENCY_MS = 200
IN_FLIGHT = 32
"""JudgeLimits.max_in_flight's default."""
BATCH = 20
BASELINE_THREADS = 8
KEY_ENV = "EVALUATOR_BENCH_JUDGE_KEY"
REDIS_URL = os.environ.get("EVALUATOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None, ratio=None):
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    return {"benchmark": "judge", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def _traces(count: int, offset: int = 0) -> list[dict]:
    """Traces unique to this process, so every prompt is new (no hits in a shared cache)."""
    run = os.urandom(4).hex()
    return [{"trace_id": f"bench-{run}-{offset + i:06d}",
             "input": f"What does plan {offset + i} include?",
             "context": [f"Plan {offset + i} includes {i % 50} GB of storage and {i % 7} seats."],
             "output": f"Plan {offset + i} ({run}) includes {i % 50} GB of storage."}
            for i in range(count)]


def _child(mode: str, url: str, count: int, *extra: str, **env_vars: str) -> dict:
    """Run one measurement in a child process; returns its JSON result."""
    env = {**os.environ, KEY_ENV: "sk-bench", "EVALUATOR_JUDGE_CACHE": "memory",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT), **env_vars}
    command = [sys.executable, "-m", "benchmarks.bench_judge", mode, url, str(count), *extra]
    done = subprocess.run(command,
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_judge {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    evaluations = 600 if quick else 3000
    baseline_evaluations = 160 if quick else 480
    raw_calls = 500 if quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("slow", "fast"):
            (Path(tmp) / name).mkdir()
        slow, slow_url = judge_server(LATENCY_MS, Path(tmp) / "slow")
        fast, fast_url = judge_server(0, Path(tmp) / "fast")
        try:
            ours = {"openai": _child("worker-openai", slow_url, evaluations, fast_url,
                                     str(raw_calls)),
                    "litellm": _child("worker-litellm", slow_url, evaluations)}
            if _redis_reachable():
                ours["openai, Redis rate limit + cache"] = _child(
                    "worker-openai", slow_url, evaluations, EVALUATOR_REDIS_URL=REDIS_URL,
                    EVALUATOR_JUDGE_CACHE="redis")
            baseline = _child("baseline", slow_url, baseline_evaluations)
            alone = {client: _child(f"alone-{client}", fast_url, raw_calls)
                     for client in ("openai-create", "litellm")}
        finally:
            slow.stop()
            fast.stop()
    limiter = _limiter_rate(2000 if quick else 10000)
    ceiling = IN_FLIGHT / (LATENCY_MS / 1000)
    sync_name = f"dramatiq sync actor, {BASELINE_THREADS} threads, litellm"
    rows = []
    for client, result in ours.items():
        rows.append(_row(f"evals/s, 1 worker process, asyncio, {client} client, in-flight "
                         f"{IN_FLIGHT}, judge at {LATENCY_MS} ms", result["per_s"], "evals/s",
                         sync_name, baseline["per_s"],
                         goal=f">= {0.9 * ceiling:.0f} (90% of in-flight / latency)"))
        rows.append(_row(f"CPU per evaluation, asyncio worker, {client} client",
                         result["cpu_ms"], "ms", sync_name, baseline["cpu_ms"]))
    litellm_alone = alone["litellm"]["cpu_ms"]
    rows.append(_row("CPU per call, openai client alone (chat.completions.create)",
                     alone["openai-create"]["cpu_ms"], "ms", "litellm alone", litellm_alone))
    post = ours["openai"]["post_cpu_ms"]
    rows.append(_row("CPU per call, our transport's post of a ready body (aiohttp)",
                     post, "ms", "litellm alone", litellm_alone))
    rows.append(_row("our CPU per evaluation (asyncio worker minus its HTTP posts)",
                     ours["openai"]["cpu_ms"] - post, "ms", "litellm alone, per call",
                     litellm_alone, goal="< 0.5x litellm alone"))
    if limiter is not None:
        rows.append(_row("Redis rate limiter reservations/s (one event loop, pipelined)",
                         limiter["per_s"], "reservations/s", goal=">= 500/s"))
        rows.append(_row("CPU per rate-limit reservation", limiter["cpu_us"], "us"))
    return rows


def _redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _limiter_rate(count: int) -> dict | None:
    if not _redis_reachable():
        return None
    from evaluator.judges.ratelimit import Rate, RedisRateLimiter
    from evaluator.judges.redis_clients import LoopRedis

    limiter = RedisRateLimiter(LoopRedis(REDIS_URL), f"bench-{os.getpid()}",
                               (Rate("requests", 10**9, 1e-9), Rate("tokens", 10**12, 1e-12)))

    async def reserve_all() -> tuple[float, float]:
        await limiter.reserve(1, None)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(limiter.reserve(1500, None) for _ in range(count)))
        return time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = asyncio.run(reserve_all())
    return {"per_s": count / wall, "cpu_us": cpu / count * 1e6}


# -- child processes -------------------------------------------------------------------------


def _judges_dir(url: str, client: str) -> Path:
    from evaluator.judges.config import JudgeConfig

    directory = Path(tempfile.mkdtemp(prefix="bench-judges-"))
    limits = {}
    if os.environ.get("EVALUATOR_REDIS_URL"):  # limits far above the load: their cost, no waits
        limits = {"requests_per_minute": 10**7, "tokens_per_minute": 10**10}
    config = JudgeConfig(name="bench", model="openai/bench-judge", api_base=url, client=client,
                         api_key_env=KEY_ENV, limits=limits,
                         prices={"input_per_mtok": 0.15, "output_per_mtok": 0.6})
    (directory / "bench.yaml").write_text(config.model_dump_json(), encoding="utf-8")
    return directory


def _worker(client: str, url: str, count: int) -> dict:
    """Our worker: StubBroker + AsyncIO middleware + the evaluate actor, 8 dramatiq threads."""
    import dramatiq

    from evaluator.core.records import parse_trace
    from evaluator.core.settings import PROJECT_ROOT
    from evaluator.core.work import SampleDecision, WorkItem
    from evaluator.queue.broker import build_broker
    from evaluator.queue.channel import InMemoryChannel
    from evaluator.queue.messages import QUEUE_NAME, encode_items, work_message
    from evaluator.rubrics import RubricRegistry
    from evaluator.worker.actors import WorkerContext, register_evaluate_actor

    broker = build_broker(None)
    channel = InMemoryChannel()
    registry = RubricRegistry.load(PROJECT_ROOT / "rubrics")
    context = WorkerContext(registry, channel, _judges_dir(url, client))
    actor = register_evaluate_actor(broker, context)
    worker = dramatiq.Worker(broker, worker_threads=BASELINE_THREADS)
    worker.start()
    decision = SampleDecision(True, "random", 10.0)

    def send(traces: list[dict]) -> None:
        for start in range(0, len(traces), BATCH):
            items = [WorkItem(parse_trace(t), decision) for t in traces[start:start + BATCH]]
            actor.send(work_message(encode_items(items), "bench", ["hallucination"], "bench"))
        broker.join(QUEUE_NAME, fail_fast=True)

    try:
        send(_traces(2 * IN_FLIGHT, offset=10**6))  # warm up: imports, connections
        while channel.read(1000, 1):
            pass
        cpu, wall = time.process_time(), time.perf_counter()
        send(_traces(count))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        worker.stop()
        broker.close()
    evaluations = [e for _, batch in channel.read(10**6, 1) for e in batch.evaluations]
    scored = sum(e.status == "scored" for e in evaluations)
    if len(evaluations) != count or scored != count:
        raise RuntimeError(f"{len(evaluations)} evaluations, {scored} scored, of {count}")
    return {"per_s": count / wall, "cpu_ms": cpu / count * 1000}


def _baseline(url: str, count: int) -> dict:
    """dramatiq's default synchronous actor (8 threads): render, litellm.completion, parse."""
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    from evaluator.core.records import parse_trace
    from evaluator.core.settings import PROJECT_ROOT
    from evaluator.judges.parsing import parse_verdict
    from evaluator.judges.structured import structured_output_kwargs
    from evaluator.judges.transport_litellm import import_litellm
    from evaluator.rubrics import RubricRegistry, render

    litellm = import_litellm()
    rubric = RubricRegistry.load(PROJECT_ROOT / "rubrics").get("hallucination")
    labels = tuple(rubric.labels)
    structured = structured_output_kwargs("json_schema", labels)
    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    verdicts: list[str] = []

    def judge_one(trace: dict) -> None:
        prompt = render(rubric, parse_trace(trace))
        response = litellm.completion(model="openai/bench-judge", api_base=url, api_key="sk-bench",
                                      messages=list(prompt.messages), temperature=0,
                                      max_tokens=1024, num_retries=0, timeout=60, **structured)
        verdicts.append(parse_verdict(response.choices[0].message.content, labels).label)

    actor = dramatiq.Actor(judge_one, broker=broker, actor_name="judge_one", queue_name="baseline",
                           priority=0, options={})
    worker = dramatiq.Worker(broker, worker_threads=BASELINE_THREADS)
    worker.start()
    try:
        for trace in _traces(2 * BASELINE_THREADS, offset=10**6):
            actor.send(trace)
        broker.join("baseline", fail_fast=True)
        cpu, wall = time.process_time(), time.perf_counter()
        for trace in _traces(count):
            actor.send(trace)
        broker.join("baseline", fail_fast=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        worker.stop()
    if len(verdicts) != count + 2 * BASELINE_THREADS:
        raise RuntimeError(f"baseline judged {len(verdicts)}")
    return {"per_s": count / wall, "cpu_ms": cpu / count * 1000}


def _alone(client: str, url: str, count: int) -> dict:
    """The HTTP client by itself: the same request shape, IN_FLIGHT at once, nothing else."""
    from evaluator.core.records import parse_trace
    from evaluator.core.settings import PROJECT_ROOT
    from evaluator.judges.structured import structured_output_kwargs
    from evaluator.rubrics import RubricRegistry, render

    rubric = RubricRegistry.load(PROJECT_ROOT / "rubrics").get("hallucination")
    messages = [list(render(rubric, parse_trace(t)).messages) for t in _traces(count)]
    request = {"temperature": 0, "max_tokens": 1024,
               **structured_output_kwargs("json_schema", tuple(rubric.labels))}
    if client == "openai-post":
        from evaluator.judges.transport_openai import HTTPClient, openai_client

        sdk: Any = None  # our transport's post, made on the loop that measures

        async def call(prompt: list) -> object:
            nonlocal sdk
            sdk = sdk or HTTPClient(openai_client("sk-bench", url), 60)
            return await sdk.post({"model": "bench-judge", "messages": prompt, **request})
    elif client.startswith("openai"):
        import openai

        # the client's typed call, over its aiohttp backend
        sdk = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0, timeout=60,
                                 http_client=openai.DefaultAioHttpClient(timeout=60))

        async def call(prompt: list) -> object:
            return await sdk.chat.completions.create(model="bench-judge", messages=prompt,
                                                     **request)
    else:
        from evaluator.judges.transport_litellm import import_litellm

        litellm = import_litellm()

        async def call(prompt: list) -> object:
            return await litellm.acompletion(model="openai/bench-judge", api_base=url,
                                             api_key="sk-bench", messages=prompt, num_retries=0,
                                             timeout=60, **request)

    async def measure() -> tuple[float, float]:
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(prompt: list) -> object:
            async with slots:
                return await call(prompt)

        await asyncio.gather(*(one(p) for p in messages[: 2 * IN_FLIGHT]))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(p) for p in messages))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if client.startswith("openai"):
            await sdk.close()
        return wall, cpu

    wall, cpu = asyncio.run(measure())
    return {"per_s": count / wall, "cpu_ms": cpu / count * 1000}


def _main(argv: list[str]) -> None:
    mode, url, count = argv[0], argv[1], int(argv[2])
    if mode.startswith("worker-"):
        result = _worker(mode.removeprefix("worker-"), url, count)
        if len(argv) > 3:  # the post alone, in this same process, for our own share of its CPU
            result["post_cpu_ms"] = _alone("openai-post", argv[3], int(argv[4]))["cpu_ms"]
    elif mode.startswith("alone-"):
        result = _alone(mode.removeprefix("alone-"), url, count)
    else:
        result = _baseline(url, count)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _main(sys.argv[1:])
    else:
        for r in run(quick=True):
            print(r)
