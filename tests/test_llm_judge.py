"""LLMJudge through the real clients (the openai client for `openai/...` models, litellm for the
rest) against the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from evaluator.core.errors import ConfigError
from evaluator.core.retry import Backoff
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.judges.config import JudgeConfig
from evaluator.judges.factory import build_judge, build_llm_judge, layers, load_judge
from evaluator.judges.llm import TRUNCATED_REASON, LLMJudge
from evaluator.judges.retry import is_retryable
from evaluator.judges.runtime import JudgeRuntime
from evaluator.rubrics import RenderedPrompt
from tests.support.judging import KEY, KEY_ENV, RUBRIC, TRACE, llm_judge_of, prompt
from tests.support.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
def make_judge(server: OpenAIServer, params: dict[str, Any] | None = None, **fields: Any) -> JudgeClient:
    limits = {"timeout_s": 5, "max_attempts": 4, "max_in_flight": 32, **fields.pop("limits", {})}
    config = JudgeConfig(
        name="test-judge", kind="litellm", model=fields.pop("model", "openai/test-judge"),
        api_base=server.base_url, api_key_env=KEY_ENV, params={"temperature": 0, **(params or {})},
        limits=limits, **fields,
    )
    return build_llm_judge(config, JudgeRuntime(), backoff=Backoff(base_s=0.01))


def judge_many(judge: JudgeClient, prompts: Sequence[RenderedPrompt]) -> list[JudgeVerdict]:
    async def run() -> list[JudgeVerdict]:
        return await asyncio.gather(*(judge.judge(RUBRIC, TRACE, p) for p in prompts))

    return asyncio.run(run())


def judge_one(judge: JudgeClient, expect: str = "unsupported") -> JudgeVerdict:
    return judge_many(judge, [prompt(expect)])[0]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(retry_after_s=0.2, hang_s=10) as running:
        yield running


def test_json_schema_mode_scores_with_tokens_and_cost_from_config_prices(server: OpenAIServer) -> None:
    judge = make_judge(server, prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    verdict = judge_one(judge, "unsupported")
    assert llm_judge_of(judge).mode == "json_schema"
    assert (verdict.status, verdict.label, verdict.score, verdict.attempts) == ("scored", "unsupported", 0.0, 1)
    assert verdict.reasoning and verdict.raw_reply.startswith("{")
    assert verdict.usage.input_tokens > 0 and verdict.usage.output_tokens > 0
    expected = (verdict.usage.input_tokens * 1.0 + verdict.usage.output_tokens * 2.0) / 1e6
    assert verdict.usage.cost_usd == pytest.approx(expected)
    assert verdict.usage.latency_ms > 0 and verdict.reason is None


def test_cost_is_unknown_for_an_unpriced_model_and_priced_by_litellm_for_a_known_one(
    server: OpenAIServer,
) -> None:
    assert judge_one(make_judge(server)).usage.cost_usd is None
    known = judge_one(make_judge(server, model="openai/gpt-4o-mini"))
    assert known.status == "scored" and known.usage.cost_usd is not None and known.usage.cost_usd > 0


def test_forced_tool_call_mode(server: OpenAIServer) -> None:
    judge = make_judge(server, params={"structured_output": "tool"})
    verdict = judge_one(judge, "supported")
    assert llm_judge_of(judge).mode == "tool"
    assert (verdict.status, verdict.label, verdict.score) == ("scored", "supported", 1.0)
    assert '"label"' in verdict.raw_reply


def test_text_mode(server: OpenAIServer) -> None:
    judge = make_judge(server, params={"structured_output": "text"})
    verdict = judge_one(judge, "supported")
    assert (verdict.status, verdict.label) == ("scored", "supported")
    assert verdict.raw_reply.rstrip().endswith("Label: supported")


def test_rate_limit_honours_retry_after_then_succeeds(server: OpenAIServer) -> None:
    server.set_faults(["429"])
    started = time.monotonic()
    verdict = judge_one(make_judge(server))
    assert (verdict.status, verdict.attempts) == ("scored", 2)
    assert time.monotonic() - started >= 0.2, "Retry-After: 0.2 was not honoured"
    assert server.stats.by_status == {429: 1, 200: 1}


def test_server_errors_until_attempts_run_out_give_an_error_verdict(server: OpenAIServer) -> None:
    server.set_faults(["500", "503", "bad_body", "500", "500"])
    verdict = judge_one(make_judge(server, limits={"max_attempts": 4}))
    assert (verdict.status, verdict.attempts, verdict.label) == ("error", 4, None)
    assert verdict.reason.startswith("judge call failed after 4 attempts: InternalServerError")
    assert server.stats.total == 4


def test_timeout_is_retried(server: OpenAIServer) -> None:
    server.set_faults(["hang"])
    verdict = judge_one(make_judge(server, limits={"timeout_s": 0.3}))
    assert (verdict.status, verdict.attempts) == ("scored", 2)


def test_client_errors_are_not_retried_and_never_leak_the_key(server: OpenAIServer) -> None:
    server.set_faults(["401"])
    verdict = judge_one(make_judge(server))
    assert (verdict.status, verdict.attempts, server.stats.total) == ("error", 1, 1)
    assert "AuthenticationError" in verdict.reason and KEY_ENV in verdict.reason
    assert "openai/test-judge" in verdict.reason
    assert KEY not in repr(verdict)


def test_missing_api_key_env_var_is_an_error_naming_it_unless_the_judge_has_an_api_base(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    hosted = make_judge(server).config.model_copy(update={"api_base": None})
    verdict = judge_one(build_llm_judge(hosted, JudgeRuntime()))
    assert (verdict.status, verdict.attempts, server.stats.total) == ("error", 0, 0)
    assert f"set the environment variable {KEY_ENV}" in verdict.reason
    local = judge_one(make_judge(server))  # a local server: no key is sent
    assert (local.status, server.stats.total) == ("scored", 1)


@pytest.mark.parametrize("fault", ["invalid_json", "off_menu", "garbage"])
def test_unusable_reply_is_unscored_with_the_raw_reply(server: OpenAIServer, fault: str) -> None:
    server.set_faults([fault])
    verdict = judge_one(make_judge(server))
    assert (verdict.status, verdict.label, verdict.score, verdict.attempts) == ("unscored", None, None, 1)
    assert verdict.reason and verdict.raw_reply


def test_truncated_reply_is_retried_with_twice_the_room(server: OpenAIServer) -> None:
    server.truncate_below_max_tokens = 2000
    verdict = judge_one(make_judge(server))
    assert (verdict.status, verdict.attempts) == ("scored", 2)
    assert [r.max_tokens for r in server.stats.requests] == [1024, 2048]
    assert verdict.usage.output_tokens > 1024, "tokens of the truncated attempt are counted too"


def test_truncated_twice_is_unscored(server: OpenAIServer) -> None:
    server.set_faults(["truncated", "truncated"])
    verdict = judge_one(make_judge(server, params={"max_tokens": 100}))
    assert (verdict.status, verdict.reason, verdict.attempts) == ("unscored", TRUNCATED_REASON, 2)
    assert verdict.raw_reply
    assert [r.max_tokens for r in server.stats.requests] == [100, 200]


def test_in_flight_limit_holds_under_100_concurrent_calls(server: OpenAIServer) -> None:
    server.set_latency(20)
    judge = make_judge(server, limits={"max_in_flight": 10})
    verdicts = judge_many(judge, [prompt() for _ in range(100)])
    assert all(v.status == "scored" for v in verdicts)
    assert server.stats.total == 100
    assert server.stats.max_in_flight <= 10


def test_one_judge_serves_several_event_loops(server: OpenAIServer) -> None:
    judge = make_judge(server, limits={"max_in_flight": 2})
    for _ in range(2):
        assert all(v.status == "scored" for v in judge_many(judge, [prompt()] * 4))


def test_every_verdict_is_terminal_under_mixed_faults(server: OpenAIServer) -> None:
    odds = {"429": 0.05, "500": 0.04, "503": 0.03, "hang": 0.02, "bad_body": 0.03,
            "invalid_json": 0.03, "truncated": 0.04, "off_menu": 0.03, "garbage": 0.03}
    server.set_faults(odds, seed=7)
    server.retry_after_s = 0.05
    # retries only: the breaker's window never fills, so a loaded machine's burst of timeouts
    # (CI once saw 20 in a row at 0.5 s) cannot pause the judge and fail the rest at once
    judge = make_judge(server, limits={"timeout_s": 2.0, "max_attempts": 3, "max_in_flight": 50},
                       breaker={"consecutive_failures": 1000, "failure_rate": 1.0, "window": 1000})
    verdicts = judge_many(judge, [prompt() for _ in range(200)])
    assert {v.status for v in verdicts} <= {"scored", "unscored", "error"}
    assert all(v.reason for v in verdicts if v.status != "scored")
    assert all(v.label is None and v.score is None for v in verdicts if v.status != "scored")
    assert sum(v.status == "scored" for v in verdicts) > 150
    attempts = sum(v.attempts for v in verdicts)
    timed_out = sum(c.http_status is None and "Timeout" in (c.error_class or "")
                    for v in verdicts for c in v.calls)
    # every attempt is one request the server saw, except that on a loaded machine a connection
    # can time out (2 s here) before the server accepts it
    assert 0 <= attempts - server.stats.total <= timed_out


def test_factory_builds_each_kind(server: OpenAIServer) -> None:
    assert any(isinstance(layer, LLMJudge) for layer in layers(load_judge("local", REPO / "judges")))
    offline = build_judge(JudgeConfig(name="offline", kind="offline", params={}))
    assert type(offline).__name__ == "OfflineJudge"


@pytest.mark.parametrize("params", [{"structured_output": "xml"}, {"api_key": "sk-in-config"},
                                    {"response_format": {"type": "text"}}])
def test_bad_judge_params_are_config_errors(server: OpenAIServer, params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        make_judge(server, params=params)


def test_retry_policy() -> None:
    class Status(Exception):
        def __init__(self, status_code: int):
            self.status_code = status_code

    assert [is_retryable(Status(s)) for s in (429, 500, 503, 408, 400, 401, 404)] == [
        True, True, True, True, False, False, False]
    assert not is_retryable(ValueError("bug"))
    backoff = Backoff(base_s=1.0, cap_s=4.0, retry_after_cap_s=10.0)
    assert all(0 <= backoff.delay_s(n) <= min(4.0, 2 ** (n - 1)) for n in range(1, 8))
    assert 10.0 <= backoff.delay_s(1, retry_after=120.0) <= 11.0


def test_importing_the_judge_modules_does_not_import_litellm_or_openai() -> None:
    code = ("import sys, evaluator.judges.llm, evaluator.judges.factory, evaluator.judges.panel;"
            " print('litellm' in sys.modules, 'openai' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, "False False"), done.stderr
