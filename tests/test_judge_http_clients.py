"""The openai transport's HTTP clients (aiohttp underneath) are closed with their event loop:
by asyncio.run's shutdown of async generators, by close_http_clients() on a loop that ends
without it, and by a service worker when it stops (dramatiq's loop); nothing is left for
aiohttp to warn about."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware.asyncio import AsyncIO

from evaluator.core.retry import Backoff
from evaluator.judges.base import JudgeClient
from evaluator.judges.factory import build_llm_judge
from evaluator.judges.runtime import JudgeRuntime
from evaluator.judges.transport_openai import OpenAITransport, close_http_clients
from evaluator.worker.service import ClosesJudgeClients
from tests.support.judging import KEY, KEY_ENV, RUBRIC, TRACE, judge_config, llm_judge_of, prompt
from tests.support.openai_server import OpenAIServer


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


@pytest.fixture
def judge(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> JudgeClient:
    monkeypatch.setenv(KEY_ENV, KEY)
    return build_llm_judge(judge_config(server, client="openai"), JudgeRuntime(),
                           backoff=Backoff(base_s=0.01))


def clients_of(judge: JudgeClient) -> list:
    transport = llm_judge_of(judge).transport
    assert isinstance(transport, OpenAITransport)
    return [client for per_key in transport._clients.values() for client in per_key.values()]


def unclosed_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()
    return [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]


async def one_call(judge: JudgeClient) -> str:
    return (await judge.judge(RUBRIC, TRACE, prompt("supported"))).status


def test_asyncio_run_closes_the_clients_its_loop_opened(judge: JudgeClient,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    assert asyncio.run(one_call(judge)) == "scored"
    assert asyncio.run(one_call(judge)) == "scored", "a second loop gets clients of its own"
    clients = clients_of(judge)
    assert clients and all(client.is_closed() for client in clients)
    assert unclosed_warnings(caplog) == []


def test_close_http_clients_closes_a_loop_that_ends_without_shutting_generators_down(
        judge: JudgeClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(one_call(judge)) == "scored"
        [first] = clients_of(judge)
        loop.run_until_complete(close_http_clients())
        assert first.is_closed()
        assert loop.run_until_complete(one_call(judge)) == "scored", "a new client after close"
        loop.run_until_complete(close_http_clients())
    finally:
        loop.close()
    assert all(client.is_closed() for client in clients_of(judge))
    assert unclosed_warnings(caplog) == []


def test_a_stopping_worker_closes_the_clients_on_dramatiqs_loop(
        judge: JudgeClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    broker = StubBroker()
    broker.add_middleware(AsyncIO())
    broker.add_middleware(ClosesJudgeClients(), after=AsyncIO)
    statuses: list[str] = []

    async def judge_once() -> None:
        statuses.append(await one_call(judge))

    actor = dramatiq.Actor(judge_once, broker=broker, actor_name="judge_once",
                           queue_name="default", priority=0, options={})
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        actor.send()
        broker.join(actor.queue_name)
        worker.join()
    finally:
        worker.stop()
    assert statuses == ["scored"]
    assert all(client.is_closed() for client in clients_of(judge))
    assert unclosed_warnings(caplog) == []


def test_new_loops_and_judges_reuse_the_openai_client_built_for_a_key_and_server(
        server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23.4: building the openai client (its httpx client and SSL context, ~24 ms) on each
    new loop held the first calls of every replay; it never sends, so one per key and server
    serves every loop and judge (the preflight's builds the run's)."""
    import openai

    from evaluator.judges import transport_openai

    built: list[openai.AsyncOpenAI] = []

    class Counted(openai.AsyncOpenAI):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(openai, "AsyncOpenAI", Counted)
    monkeypatch.setattr(transport_openai, "_openai_clients", {})
    monkeypatch.setenv(KEY_ENV, KEY)
    for _ in range(2):
        judge = build_llm_judge(judge_config(server, client="openai"), JudgeRuntime(),
                                backoff=Backoff(base_s=0.01))
        assert asyncio.run(one_call(judge)) == "scored"
        assert asyncio.run(one_call(judge)) == "scored"
    assert len(built) == 1
    monkeypatch.setenv(KEY_ENV, "sk-another-key")
    judge = build_llm_judge(judge_config(server, client="openai"), JudgeRuntime(),
                            backoff=Backoff(base_s=0.01))
    assert asyncio.run(one_call(judge)) == "scored"
    assert len(built) == 2, "a key of its own"
