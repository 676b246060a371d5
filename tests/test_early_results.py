"""A message's results leave the worker as they complete: a worker killed in the middle of a
message has already published (and counted as spend) every judge call that came back, and a
slow call holds back only its own trace's results, not the message's."""

from __future__ import annotations

import asyncio

import pytest

from evaluator.core.records import Trace
from evaluator.core.settings import PROJECT_ROOT
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.queue.messages import ResultBatch, encode_items, work_message
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.spend import InMemorySpend
from evaluator.worker.actors import WorkerContext, process_message, publish_patiently
from evaluator.worker.early_results import EarlyResults
from tests.support.judging import KEY, KEY_ENV, judge_config, write_judge
from tests.support.openai_server import OpenAIServer

PRICES = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
RUBRICS = 5
JUDGED = 4
"""Rubrics per trace, and those that call the judge (correctness is skipped: no reference)."""


def _message(traces: int) -> dict:
    items = [WorkItem(Trace(trace_id=f"t{i}", input="What is the capital of France?",
                            output="Paris.", context=["Paris is the capital of France."]),
                      SampleDecision(True, "random", 10.0)) for i in range(traces)]
    return work_message(encode_items(items), "priced", [], "run-1")


class RecordingChannel:
    """The results channel as the worker sees it: what was published, in order."""

    def __init__(self) -> None:
        self.batches: list[ResultBatch] = []

    def publish(self, batch: ResultBatch) -> None:
        self.batches.append(ResultBatch.from_json(batch.to_json()))

    def calls(self) -> list:
        return [call for batch in self.batches for call in batch.judge_calls]

    def traces(self) -> list[str]:
        return [stored.trace.trace_id for batch in self.batches for stored in batch.traces]


def _context(directory, server: OpenAIServer) -> WorkerContext:
    write_judge(directory, judge_config(server, "priced", prices=PRICES, client="openai",
                                        limits={"timeout_s": 30, "max_attempts": 1}))
    return WorkerContext(RubricRegistry.load(PROJECT_ROOT / "rubrics"), RecordingChannel(),
                         directory, spend=InMemorySpend())


def test_calls_of_a_message_killed_midway_are_published_and_counted(tmp_path, monkeypatch):
    """One trace x 4 rubrics; 3 calls come back, the 4th hangs when the worker dies."""
    monkeypatch.setenv(KEY_ENV, KEY)

    async def killed_after_three_calls(context: WorkerContext) -> None:
        task = asyncio.create_task(process_message(context, _message(1)))
        while len(context.channel.calls()) < 3:
            assert not task.done()
            await asyncio.sleep(0.01)
        task.cancel()

    with OpenAIServer(faults=["ok", "ok", "ok", "hang"], hang_s=30) as server:
        context = _context(tmp_path, server)
        asyncio.run(asyncio.wait_for(killed_after_three_calls(context), timeout=20))
    calls = context.channel.calls()
    assert len(calls) == 3 and all(call.status == "ok" for call in calls)
    assert all(call.evaluation_id and call.trace_id == "t0" for call in calls)
    assert context.channel.traces() == [], "the trace's results wait for its last rubric"
    spent = sum(call.usage.cost_usd for call in calls)
    assert spent > 0
    assert context.spend.spent_on(calls[0].created_at.date()) == pytest.approx(spent)


def test_a_straggler_holds_back_only_its_own_trace(tmp_path, monkeypatch):
    """3 traces x 4 rubrics; the first call hangs (5 s): the other two traces' results are
    published while it is still out."""
    monkeypatch.setenv(KEY_ENV, KEY)

    async def until_two_traces_published(context: WorkerContext) -> None:
        task = asyncio.create_task(process_message(context, _message(3)))
        while len(context.channel.traces()) < 2:
            assert not task.done(), "the straggler ended before the other traces were published"
            await asyncio.sleep(0.01)
        task.cancel()

    with OpenAIServer(faults=["hang"], hang_s=5) as server:
        context = _context(tmp_path, server)
        asyncio.run(asyncio.wait_for(until_two_traces_published(context), timeout=20))
    published = [e for batch in context.channel.batches for e in batch.evaluations]
    assert sorted(context.channel.traces()) == ["t1", "t2"]
    assert sorted(e.trace_id for e in published) == ["t1"] * RUBRICS + ["t2"] * RUBRICS


def test_each_record_of_a_finished_message_is_published_once(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer() as server:
        context = _context(tmp_path, server)
        early = EarlyResults(context.channel, context.spend)
        batch = asyncio.run(asyncio.wait_for(process_message(context, _message(2), early), 60))
    rest = early.rest(batch)
    assert len(batch.evaluations) == 2 * RUBRICS and len(batch.judge_calls) == 2 * JUDGED
    assert len(rest) == 0, "everything went out as it completed"
    published = context.channel.batches
    assert sorted(e.evaluation_id for b in published for e in b.evaluations) == sorted(
        e.evaluation_id for e in batch.evaluations)
    assert sorted(c.call_id for c in context.channel.calls()) == sorted(
        c.call_id for c in batch.judge_calls)
    assert sorted(context.channel.traces()) == ["t0", "t1"]
    assert context.spend.spent_on(batch.judge_calls[0].created_at.date()) == pytest.approx(
        sum(call.usage.cost_usd for call in batch.judge_calls))


class FailingChannel(RecordingChannel):
    def publish(self, batch: ResultBatch) -> None:
        raise ConnectionError("Redis restarting")


def test_what_could_not_be_published_early_goes_with_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer() as server:
        context = _context(tmp_path, server)
        context.channel = FailingChannel()
        early = EarlyResults(context.channel, context.spend)
        batch = asyncio.run(asyncio.wait_for(process_message(context, _message(2), early), 60))
    rest = early.rest(batch)
    assert (len(rest.evaluations), len(rest.traces), len(rest.judge_calls)) == (
        2 * RUBRICS, 2, 2 * JUDGED)


class SlowCacheBackend:
    """A shared cache whose writes take a while, as Redis's do under load: the judge call has
    come back and freed its in-flight slot, but its evaluation is not finished."""

    async def get(self, key: str) -> None:
        return None

    async def put(self, key: str, value: str, ttl_s: int) -> None:
        await asyncio.sleep(5)


def test_a_call_is_published_before_its_in_flight_slot_is_reused(tmp_path, monkeypatch):
    """One slot, one trace x 4 rubrics, a cache write that takes 5 s after each reply: when the
    second request reaches the server, the first call is already on the results stream, so a
    kill loses at most the calls in flight (the killed-worker test bounds it so)."""
    from evaluator.judges.cache import JudgeCache
    from evaluator.judges.factory import load_judge
    from evaluator.judges.runtime import JudgeRuntime

    monkeypatch.setenv(KEY_ENV, KEY)

    async def killed_at_the_second_request(context: WorkerContext, server: OpenAIServer) -> None:
        task = asyncio.create_task(process_message(context, _message(1)))
        while server.stats.total < 2:
            assert not task.done()
            await asyncio.sleep(0.001)
        task.cancel()

    with OpenAIServer() as server:
        write_judge(tmp_path, judge_config(server, "priced", prices=PRICES, client="openai",
                                           limits={"timeout_s": 30, "max_in_flight": 1}))
        context = WorkerContext(RubricRegistry.load(PROJECT_ROOT / "rubrics"), RecordingChannel(),
                                tmp_path, spend=InMemorySpend())
        runtime = JudgeRuntime(cache=JudgeCache(SlowCacheBackend()))
        context._judges["priced"] = load_judge("priced", tmp_path, runtime)
        asyncio.run(asyncio.wait_for(killed_at_the_second_request(context, server), timeout=20))
    calls = context.channel.calls()
    assert len(calls) >= 1, "the first reply's ledger row waited for its evaluation to finish"
    assert calls[0].evaluation_id and calls[0].trace_id == "t0" and calls[0].rubric
    assert context.spend.spent_on(calls[0].created_at.date()) == pytest.approx(
        sum(call.usage.cost_usd for call in calls))


@pytest.mark.redis
def test_a_publish_cut_off_by_a_kill_counts_no_spend(tmp_path, monkeypatch, redis_url):
    """Counting a call's cost and publishing it are one Redis transaction: a worker killed
    mid-publish leaves neither behind, so the day's counted spend never holds calls the ledger
    will not get (`evaluator report`'s spend reconciliation would show them as unrecorded)."""
    import redis

    from evaluator.queue.channel import RedisStreamChannel
    from evaluator.sampling.spend import RedisSpend, spend_key
    from tests.support.tcp_proxy import CuttingProxy

    monkeypatch.setenv(KEY_ENV, KEY)
    direct = redis.Redis.from_url(redis_url)
    port, db = direct.connection_pool.connection_kwargs["port"], direct.connection_pool.connection_kwargs["db"]
    with OpenAIServer() as server, CuttingProxy(port, lambda chunk: b"XADD" in chunk) as proxy:
        through_proxy = redis.Redis(port=proxy.port, db=db, socket_timeout=5)
        context = _context(tmp_path, server)
        context.channel = RedisStreamChannel(through_proxy)
        context.spend = RedisSpend(through_proxy)
        early = EarlyResults(context.channel, context.spend)
        batch = asyncio.run(asyncio.wait_for(process_message(context, _message(1), early), 60))
    assert proxy.cuts > 0
    assert len(batch.judge_calls) == JUDGED
    day = spend_key(batch.judge_calls[0].created_at.date())
    assert (direct.xlen("evaluator:results"), direct.get(day)) == (0, None), \
        "spend was counted for calls never published"

    # the message's rest, published once Redis answers again, is counted with it
    rest = early.rest(batch)
    asyncio.run(publish_patiently(RedisStreamChannel(direct), rest, RedisSpend(direct)))
    (entry,) = direct.xrange("evaluator:results")
    published = ResultBatch.from_json(entry[1][b"b"]).judge_calls
    assert len(published) == JUDGED
    assert float(direct.get(day)) == pytest.approx(sum(call.usage.cost_usd for call in published))
