"""Ceilings measured in a process of their own, printed as one JSON line (bench_limits runs it).

    python -m benchmarks.client_probe aiohttp|litellm|openai|openai-httpx URL --in-flight N --seconds S
        bare judge calls (a rendered faithfulness prompt, JSON-schema output, as the judge asks)
        with N in flight: calls/s, CPU ms per call and latency percentiles, after a warm-up.
        `aiohttp` is the leanest client: a ready body posted with aiohttp alone (what any
        Python client can reach on this machine right now); `openai` the openai client's own
        call over its aiohttp backend (the judge's transport before issue 23 item 4);
        `openai-httpx` its default httpx stack.
    python -m benchmarks.client_probe dramatiq REDIS_URL --messages M
        a no-op async actor behind dramatiq's Redis broker and AsyncIO middleware, fed messages
        the size of ours (5 traces): messages/s through enqueue + consume + ack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time

from evaluator.core.records import parse_trace
from evaluator.core.settings import PROJECT_ROOT
from evaluator.rubrics import RubricRegistry, render

MODEL = "bench-judge"
WARMUP_S = 1.5


def sample_request() -> tuple[list[dict], dict]:
    """Messages and response_format of one real judge request (faithfulness, a sample trace)."""
    with open(PROJECT_ROOT / "datasets" / "sample_traces.jsonl", encoding="utf-8") as lines:
        trace = parse_trace(next(lines))
    rubric = RubricRegistry.load(PROJECT_ROOT / "rubrics").get("faithfulness")
    schema = {"type": "object", "additionalProperties": False, "required": ["reasoning", "label"],
              "properties": {"reasoning": {"type": "string"},
                             "label": {"type": "string", "enum": list(rubric.labels)}}}
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "verdict", "strict": True, "schema": schema}}
    return [dict(m) for m in render(rubric, trace).messages], response_format


def _caller(kind: str, url: str):
    """The call to make, and what closes its client at the end (None: litellm keeps its own)."""
    messages, response_format = sample_request()
    if kind == "aiohttp":
        import aiohttp

        body = json.dumps({"model": MODEL, "messages": messages, "temperature": 0,
                           "response_format": response_format, "max_tokens": 1024}).encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def post() -> None:
            async with session.post(f"{url}/chat/completions", data=body, headers=headers) as reply:
                reply.raise_for_status()
                json.loads(await reply.read())
        return post, session.close
    if kind == "litellm":
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True

        async def call() -> None:
            await litellm.acompletion(model=f"openai/{MODEL}", api_base=url, api_key="bench",
                                      messages=messages, response_format=response_format,
                                      temperature=0, max_tokens=1024, timeout=30, num_retries=0,
                                      max_retries=0)
        return call, None
    import openai

    http = {} if kind == "openai-httpx" else {"http_client": openai.DefaultAioHttpClient(timeout=30)}
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, timeout=30, **http)

    async def call() -> None:
        await client.chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                             response_format=response_format, max_tokens=1024)
    return call, client.close


async def _calls(kind: str, url: str, in_flight: int, seconds: float) -> dict:
    call, close = _caller(kind, url)
    await call()  # first call pays the lazy set-up
    started = time.monotonic()
    window_start, window_end = started + WARMUP_S, started + WARMUP_S + seconds
    completed: list[float] = []
    latencies: list[float] = []
    failed = 0
    cpu: list[float] = []

    async def lane() -> None:
        nonlocal failed
        while time.monotonic() < window_end:
            sent = time.monotonic()
            try:
                await call()
            except Exception:
                failed += 1
                continue
            completed.append(time.monotonic())
            if window_start <= sent:
                latencies.append((completed[-1] - sent) * 1000)

    async def clock() -> None:
        for at in (window_start, window_end):
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            cpu.append(time.process_time())

    await asyncio.gather(clock(), *(lane() for _ in range(in_flight)))
    if close is not None:
        await close()
    counted = sum(window_start <= t <= window_end for t in completed)
    cuts = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [float("nan")] * 19
    return {"kind": kind, "in_flight": in_flight, "calls_per_s": counted / seconds,
            "cpu_ms_per_call": (cpu[1] - cpu[0]) * 1000 / max(counted, 1), "failed": failed,
            "p50_ms": cuts[9], "p95_ms": cuts[18]}


def _dramatiq(redis_url: str, messages: int) -> dict:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware.asyncio import AsyncIO

    from evaluator.queue.messages import QUEUE_NAME

    broker = RedisBroker(url=redis_url)
    broker.add_middleware(AsyncIO())
    dramatiq.set_broker(broker)
    broker.client.flushdb()
    done = threading.Event()
    seen = [0]

    async def noop(payload: dict) -> None:
        seen[0] += 1
        if seen[0] >= messages:
            done.set()

    actor = dramatiq.Actor(noop, broker=broker, actor_name="noop", queue_name=QUEUE_NAME,
                           priority=0, options={})
    with open(PROJECT_ROOT / "datasets" / "sample_traces.jsonl", encoding="utf-8") as lines:
        items = [{"trace": json.loads(next(lines)), "sample_reason": "random", "sample_weight": 10.0}
                 for _ in range(5)]
    payload = {"items": items, "judge": "bench", "rubrics": [], "run_id": None}
    started = time.perf_counter()
    for _ in range(messages):
        actor.send(payload)
    enqueue_s = time.perf_counter() - started
    worker = dramatiq.Worker(broker, worker_threads=8)
    started = time.perf_counter()
    worker.start()
    done.wait(300)
    consume_s = time.perf_counter() - started
    worker.stop()
    broker.client.flushdb()
    broker.close()
    return {"kind": "dramatiq", "messages": seen[0], "enqueue_per_s": messages / enqueue_s,
            "consume_per_s": seen[0] / consume_s,
            "message_bytes": len(json.dumps(payload))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["aiohttp", "litellm", "openai", "openai-httpx", "dramatiq"])
    parser.add_argument("url")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    if args.kind == "dramatiq":
        result = _dramatiq(args.url, args.messages)
    else:
        result = asyncio.run(_calls(args.kind, args.url, args.in_flight, args.seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
