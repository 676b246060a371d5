"""Helpers for the judge-layer tests: judge configs pointing at the local server, rubrics,
prompts carrying the label the server should answer, and judging many prompts at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from evaluator.core.records import Trace
from evaluator.core.settings import PROJECT_ROOT, Settings
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.judges.config import JudgeConfig
from evaluator.judges.factory import layers
from evaluator.judges.llm import LLMJudge
from evaluator.rubrics import RenderedPrompt, Rubric, RubricRegistry
from tests.support.openai_server import OpenAIServer

KEY_ENV = "EVALUATOR_TEST_JUDGE_KEY"
KEY = "sk-test-not-a-real-key-4242"
RUBRIC = Rubric(
    criterion="hallucination", version=1, description="test rubric",
    labels={"supported": 1.0, "unsupported": 0.0}, pass_threshold=0.5,
    template_source="", content_hash="0" * 64,
)
TRACE = Trace(trace_id="trace-1", output="Paris.", context=["Paris is the capital of France."])


def published_rubric(ref: str = "hallucination") -> Rubric:
    """A rubric of the repository, for tests that render prompts through the pipeline."""
    return RubricRegistry.load(PROJECT_ROOT / "rubrics").get(ref)


def judge_config(server: OpenAIServer, name: str = "test-judge", **fields: Any) -> JudgeConfig:
    """A judge of `server` with short timeouts; `fields` override any config key."""
    limits = {"timeout_s": 5, "max_attempts": 4, "max_in_flight": 32, **fields.pop("limits", {})}
    data: dict[str, Any] = {
        "name": name, "kind": "litellm", "model": "openai/test-judge", "api_base": server.base_url,
        "api_key_env": KEY_ENV, "params": {"temperature": 0}, "limits": limits, **fields,
    }
    return JudgeConfig.model_validate(data)


def write_judge(directory: Path, config: JudgeConfig) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{config.name}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)),
                    encoding="utf-8")
    return path


def local_judge_settings(directory: Path, server: OpenAIServer, monkeypatch, name: str,
                         **fields: Any) -> Settings:
    """Settings whose judges directory holds the judge `name` of `server` (and its key)."""
    write_judge(directory, judge_config(server, name, **fields))
    monkeypatch.setenv(KEY_ENV, KEY)
    return Settings.from_env(judges_dir=directory)


def prompt(expect: str = "unsupported", note: str = "") -> RenderedPrompt:
    """Messages asking the server for `expect`; `note` makes the prompt (and its cache key)
    unique."""
    user = f"Question and answer go here. {note}\nEXPECT_LABEL={expect}"
    messages = ({"role": "system", "content": "You are a strict judge."},
                {"role": "user", "content": user})
    return RenderedPrompt(messages=messages, prompt_hash=f"test-{expect}-{note}")


def judge_all(judge: JudgeClient, prompts: Sequence[RenderedPrompt],
              rubric: Rubric = RUBRIC) -> list[JudgeVerdict]:
    async def run() -> list[JudgeVerdict]:
        return await asyncio.gather(*(judge.judge(rubric, TRACE, p) for p in prompts))

    return asyncio.run(run())


def llm_judge_of(judge: JudgeClient) -> LLMJudge:
    """The LLMJudge inside a built judge's wrapper chain (the first, behind fallbacks)."""
    return next(layer for layer in layers(judge) if isinstance(layer, LLMJudge))
