"""Judge calls are recorded as they complete: a worker killed in the middle of a message has
already published (and counted as spend) every call that came back, not only the ones of
messages it finished."""

from __future__ import annotations

import asyncio
import pytest

from evaluator.pipeline import WorkItem
from evaluator.records import Trace
from evaluator.rubrics import RubricRegistry
from evaluator.sampling import SampleDecision
from evaluator.settings import PROJECT_ROOT
from evaluator.spend import InMemorySpend
from evaluator.worker.actors import WorkerContext, process_message, work_message
from evaluator.worker.messages import ResultBatch, encode_items
from tests.support.judging import KEY, KEY_ENV, judge_config, write_judge
from tests.support.openai_server import OpenAIServer

PRICES = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}


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
    spent = sum(call.cost_usd for call in calls)
    assert spent > 0
    assert context.spend.spent_on(calls[0].created_at.date()) == pytest.approx(spent)


def test_a_finished_message_records_each_call_once(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer() as server:
        context = _context(tmp_path, server)
        batch = asyncio.run(asyncio.wait_for(process_message(context, _message(2)), timeout=60))
    recorded = context.channel.calls() + batch.judge_calls
    assert len(batch.evaluations) == 8
    assert len({call.call_id for call in recorded}) == len(recorded) == 8
    assert context.spend.spent_on(recorded[0].created_at.date()) == pytest.approx(
        sum(call.cost_usd for call in recorded))
