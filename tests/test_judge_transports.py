"""Both transports (openai client, litellm) under the one LLMJudge: chosen automatically, same
verdicts, same stored Evaluation, same retries and ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluator.core.records import Trace
from evaluator.core.retry import Backoff
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.base import JudgeClient
from evaluator.judges.config import JudgeConfig
from evaluator.judges.factory import build_llm_judge
from evaluator.judges.llm import TRUNCATED_REASON
from evaluator.judges.runtime import JudgeRuntime
from evaluator.judges.transport import build_transport
from evaluator.rubrics import RubricRegistry
from evaluator.worker.pipeline import evaluate_batch
from tests.support.judging import KEY, KEY_ENV, judge_all, judge_config, llm_judge_of, prompt
from tests.support.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
CLIENTS = ("openai", "litellm")


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(retry_after_s=0.1, hang_s=10) as running:
        yield running


def make_judge(server: OpenAIServer, client: str, **fields: Any) -> JudgeClient:
    config = judge_config(server, client=client, **fields)
    return build_llm_judge(config, JudgeRuntime(), backoff=Backoff(base_s=0.01))


@pytest.mark.parametrize(("model", "client", "expected"), [
    ("openai/gpt-4o-mini", "auto", "openai"),
    ("openai/my-vllm-model", "auto", "openai"),
    ("anthropic/claude-3-5-haiku-latest", "auto", "litellm"),
    ("ollama/llama3", "auto", "litellm"),
    ("openai/gpt-4o-mini", "litellm", "litellm"),
    ("hosted_vllm/llama3", "openai", "openai"),
])
def test_the_transport_follows_the_model_string_unless_forced(model: str, client: str,
                                                              expected: str) -> None:
    config = JudgeConfig(name="j", model=model, client=client)
    assert build_transport(config).name == expected


class RecordingServer(OpenAIServer):
    """Keeps the request bodies it answered."""

    bodies: list[dict[str, Any]]

    def _completion(self, body: dict[str, Any], fault: str, max_tokens: int | None) -> dict:
        self.bodies = [*getattr(self, "bodies", []), body]
        return super()._completion(body, fault, max_tokens)


@pytest.mark.parametrize(("model", "token_key"), [("openai/o3-mini", "max_completion_tokens"),
                                                  ("openai/gpt-4o-mini", "max_tokens")])
def test_the_openai_body_carries_server_parameters_and_the_right_token_limit(
        model: str, token_key: str) -> None:
    with RecordingServer() as server:
        judge = make_judge(server, "openai", model=model,
                           params={"temperature": 0, "top_k": 5, "max_tokens": 64})
        assert judge_all(judge, [prompt()])[0].status == "scored"
    [body] = server.bodies
    assert body["model"] == model.removeprefix("openai/") and body["top_k"] == 5
    assert body[token_key] == 64
    assert set(body) == {"model", "messages", "temperature", "top_k", "response_format", token_key}


class HeaderServer(OpenAIServer):
    """Keeps the headers and target URL of the requests it answered."""

    seen: list[tuple[dict[str, str], str]]

    async def _chat(self, request: Any) -> Any:
        self.seen = [*getattr(self, "seen", []), (dict(request.headers), str(request.url))]
        return await super()._chat(request)


def test_the_openai_transport_sends_the_openai_clients_headers_and_the_key() -> None:
    import openai

    with HeaderServer() as server:
        assert judge_all(make_judge(server, "openai"), [prompt()])[0].status == "scored"
    [(headers, _)] = server.seen
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["User-Agent"] == f"AsyncOpenAI/Python {openai.__version__}"
    assert headers["X-Stainless-Lang"] == "python" and "OpenAI-Organization" not in headers


def test_the_openai_transport_goes_through_http_proxy_unless_no_proxy_names_the_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with HeaderServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        behind = JudgeConfig(name="j", model="openai/m", client="openai",
                             api_base="http://judge.invalid:8123/v1", api_key_env=KEY_ENV)
        judge = build_llm_judge(behind, JudgeRuntime(), backoff=Backoff(base_s=0.01))
        assert judge_all(judge, [prompt()])[0].status == "scored"
        assert [url for _, url in proxy.seen] == ["http://judge.invalid:8123/v1/chat/completions"]
        monkeypatch.setenv("NO_PROXY", "judge.invalid")
        judge = build_llm_judge(behind, JudgeRuntime(), backoff=Backoff(base_s=0.01))
        assert judge_all(judge, [prompt()])[0].status == "error"  # no such host, no proxy
        assert len(proxy.seen) == 1


def test_same_rubrics_through_both_transports_give_the_same_evaluations(
        server: OpenAIServer) -> None:
    rubrics = RubricRegistry.load(REPO / "rubrics").latest()
    items = [WorkItem(Trace(trace_id=f"t{i}", input=f"What does plan {i} include?",
                            context=[f"Plan {i} includes {i} GB."], output=f"{i} GB.",
                            expected=f"{i} GB."),
                      SampleDecision(True, "random", 10.0)) for i in range(3)]
    results = {}
    for client in CLIENTS:
        judge = make_judge(server, client, model="openai/gpt-4o-mini")
        results[client] = asyncio.run(evaluate_batch(items, rubrics, judge, run_id="run-1"))
    volatile: dict[str, Any] = {"usage": {"latency_ms"}, "created_at": True}
    dumped = {client: [e.model_dump(exclude=volatile) for e in batch.evaluations]
              for client, batch in results.items()}
    assert dumped["openai"] == dumped["litellm"]
    assert all(e["status"] == "scored" and e["usage"]["cost_usd"] > 0 for e in dumped["openai"])
    ledgers = {client: [(c.evaluation_id, c.status, c.usage.input_tokens, c.usage.output_tokens, c.usage.cost_usd)
                        for c in batch.judge_calls] for client, batch in results.items()}
    assert ledgers["openai"] == ledgers["litellm"] and len(ledgers["openai"]) == 3 * len(rubrics)
    assert {c.transport for c in results["litellm"].judge_calls} == {"litellm"}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("mode", ["json_schema", "tool", "text"])
def test_every_structured_output_mode_on_both_transports(server: OpenAIServer, client: str,
                                                         mode: str) -> None:
    judge = make_judge(server, client, params={"temperature": 0, "structured_output": mode})
    verdict = judge_all(judge, [prompt("supported")])[0]
    assert (llm_judge_of(judge).mode, verdict.status, verdict.label) == (mode, "scored", "supported")


@pytest.mark.parametrize("client", CLIENTS)
def test_retries_and_the_ledger_are_the_same_on_both_transports(server: OpenAIServer,
                                                                client: str) -> None:
    server.set_faults(["429", "500", "hang", "bad_body"])
    judge = make_judge(server, client, limits={"timeout_s": 0.5, "max_attempts": 5})
    verdict = judge_all(judge, [prompt("supported")])[0]
    assert (verdict.status, verdict.label, verdict.attempts) == ("scored", "supported", 5)
    rows = [(c.attempt, c.status, c.http_status, c.usage.cost_usd is None) for c in verdict.calls]
    assert rows[:2] == [(1, "error", 429, False), (2, "error", 500, False)]
    assert rows[2][:2] == (3, "error") and rows[2][3], "a timeout's cost is unknown"
    assert rows[3][:2] == (4, "error") and rows[4][:3] == (5, "ok", 200)
    assert verdict.usage.cost_usd is None, "one unknown attempt makes the total unknown"
    assert server.stats.total == 5


@pytest.mark.parametrize("client", CLIENTS)
def test_truncated_twice_is_unscored_on_both_transports(server: OpenAIServer, client: str) -> None:
    server.set_faults(["truncated", "truncated"])
    judge = make_judge(server, client, params={"temperature": 0, "max_tokens": 100})
    verdict = judge_all(judge, [prompt()])[0]
    assert (verdict.status, verdict.reason, verdict.attempts) == ("unscored", TRUNCATED_REASON, 2)
    assert [r.max_tokens for r in server.stats.requests] == [100, 200]
