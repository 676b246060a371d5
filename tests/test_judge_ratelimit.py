"""Rate limits per judge: GCRA in-process and in Redis, and two worker processes sharing one
limit through Redis stay under it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluator.judges.config import JudgeLimits
from evaluator.judges.factory import build_llm_judge
from evaluator.judges.ratelimit import LocalRateLimiter, Rate, RedisRateLimiter, rates_for
from evaluator.judges.redis_clients import LoopRedis
from evaluator.judges.runtime import JudgeRuntime
from tests.support.judging import KEY, KEY_ENV, judge_all, judge_config, prompt
from tests.support.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reserve(limiter, tokens: int = 1, max_wait_s: float | None = None) -> float | None:
    return asyncio.run(limiter.reserve(tokens, max_wait_s))


def max_in_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_a_per_minute_limit_keeps_every_minute_under_it() -> None:
    rate = Rate.per_minute("requests", 600)
    assert (rate.capacity, rate.interval_s) == (10, pytest.approx(60 / 590))
    clock = FakeClock()
    limiter = LocalRateLimiter((rate,), clock)
    sent = []
    for _ in range(2000):  # a greedy caller: sends the moment it is allowed
        clock.now += reserve(limiter)
        sent.append(clock.now)
    assert max_in_window(sent, 60.0) <= 600
    assert max_in_window(sent, 60.0) >= 590, "the limit is used, not wasted"


def test_the_burst_then_the_interval_and_a_bound_that_books_nothing() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter((Rate("requests", 2, 1.0),), clock)
    assert [reserve(limiter) for _ in range(4)] == [0.0, 0.0, 1.0, 2.0]
    assert reserve(limiter, max_wait_s=2.5) is None, "3 s away: refused"
    assert reserve(limiter, max_wait_s=3.0) == 3.0, "the refusal booked nothing"
    clock.now += 10
    assert reserve(limiter) == 0.0


def test_tokens_per_minute_charges_the_estimate_and_lets_one_big_request_through() -> None:
    limits = JudgeLimits(requests_per_minute=6000, tokens_per_minute=60_000)
    clock = FakeClock()
    limiter = LocalRateLimiter(rates_for(limits), clock)
    assert reserve(limiter, tokens=5_000) == 0.0, "bigger than the 1,000-token burst, bucket full"
    wait = reserve(limiter, tokens=1_000)
    assert wait == pytest.approx(5_000 * 60 / 59_000, rel=1e-6)


@pytest.mark.redis
def test_redis_limiter_is_one_bucket_for_every_client(redis_url: str) -> None:
    rates = (Rate("requests", 2, 0.5),)
    first = RedisRateLimiter(LoopRedis(redis_url), "judge-a", rates)
    second = RedisRateLimiter(LoopRedis(redis_url), "judge-a", rates)
    other = RedisRateLimiter(LoopRedis(redis_url), "judge-b", rates)

    async def run() -> list[float | None]:
        return [await first.reserve(1, None), await second.reserve(1, None),
                await first.reserve(1, None), await second.reserve(1, 0.1),
                await other.reserve(1, None)]

    waits = asyncio.run(run())
    assert waits[:2] == [0.0, 0.0]
    assert 0.3 < waits[2] <= 0.5, "the third waits for the interval, less the time gone by"
    assert waits[3] is None, "would wait ~1 s, more than the 0.1 s bound"
    assert waits[4] == 0.0, "another judge has its own bucket"


@pytest.mark.redis
def test_an_unreachable_redis_lets_calls_through(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter(LoopRedis("redis://127.0.0.1:1/0"), "judge", (Rate("r", 1, 60),))
    assert reserve(limiter) == 0.0 and reserve(limiter) == 0.0
    assert "Redis unreachable" in caplog.text


def test_a_judge_waits_for_its_local_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer() as server:
        config = judge_config(server, limits={"requests_per_minute": 600})
        judge = build_llm_judge(config, JudgeRuntime())
        began = time.monotonic()
        verdicts = judge_all(judge, [prompt(note=str(i)) for i in range(20)])
        last_start = max(r.started for r in server.stats.requests)
    assert all(v.status == "scored" for v in verdicts)
    assert last_start - began >= 10 * 60 / 590, "a burst of 10, then 10 at ~0.1 s intervals"


WORKER = """
import asyncio, json, sys
from evaluator.judges.config import JudgeConfig
from evaluator.judges.factory import build_llm_judge
from evaluator.judges.runtime import JudgeRuntime
from tests.support.judging import RUBRIC, TRACE, prompt

config = JudgeConfig.model_validate_json(sys.argv[1])
judge = build_llm_judge(config, JudgeRuntime(sys.argv[2]))
calls, name = int(sys.argv[3]), sys.argv[4]


async def run():
    await judge.judge(RUBRIC, TRACE, prompt(note=f"{name}-warm-up"))  # a running worker's state
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return await asyncio.gather(*(judge.judge(RUBRIC, TRACE, prompt(note=f"{name}-{i}"))
                                  for i in range(calls)))

print(json.dumps([v.status for v in asyncio.run(run())]))
"""


@pytest.mark.redis
def test_two_worker_processes_share_one_limit_through_redis(redis_url: str) -> None:
    limit, calls_each = 1200, 100
    env = {**os.environ, "PYTHONPATH": str(REPO), KEY_ENV: KEY}
    with OpenAIServer(latency_ms=5) as server:
        config = judge_config(server, name="shared", limits={"requests_per_minute": limit},
                              cache={"enabled": False}).model_dump_json()
        workers = [subprocess.Popen(
            [sys.executable, "-c", WORKER, config, redis_url, str(calls_each), name], env=env,
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) for name in ("w1", "w2")]
        assert [worker.stdout.readline().strip() for worker in workers] == ["ready", "ready"]
        # The warm-ups' two tokens are back after two intervals (0.1 s): the bucket is full.
        time.sleep(0.5)
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=120) for worker in workers]
        starts = sorted(r.started for r in server.stats.requests)[2:]  # not the warm-ups
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert json.loads(out) == ["scored"] * calls_each
    rate = Rate.per_minute("requests", limit)
    assert len(starts) == 2 * calls_each
    # Both processes fired all their calls at once; together they got the limit and no more.
    # Over a few seconds, with 5% for a busy machine: a process the OS paused sends the
    # requests that fell due meanwhile together when it resumes.
    window = 4.0
    logs = "\n".join(err for _, err in outputs)
    bound = (rate.capacity + window / rate.interval_s + 1) * 1.05
    assert max_in_window(starts, window) <= bound, logs
    steady = starts[rate.capacity:]
    per_minute = (len(steady) - 1) / (steady[-1] - steady[0]) * 60
    assert per_minute <= limit * 1.02, f"measured {per_minute:.0f} calls/min"
    assert per_minute >= limit * 0.85, f"measured {per_minute:.0f} calls/min: the limit is wasted"
