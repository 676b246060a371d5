"""Build the JudgeClient a judge config describes."""

from __future__ import annotations

from pathlib import Path

from evaluator.judge_config import JudgeConfig, load_judge_config
from evaluator.judges.base import JudgeClient


def build_judge(config: JudgeConfig) -> JudgeClient:
    """The offline heuristics for kind "offline", the litellm client for kind "litellm".

    Each implementation is imported only when asked for, so the offline judge never pays for
    importing litellm's dependencies.
    """
    if config.kind == "offline":
        from evaluator.judges.offline import OfflineJudge

        return OfflineJudge(config)
    from evaluator.judges.llm import LiteLLMJudge

    return LiteLLMJudge(config)


def load_judge(name: str, judges_dir: Path | None = None) -> JudgeClient:
    """Load `judges/<name>.yaml` (or a path to a YAML file) and build its judge."""
    return build_judge(load_judge_config(name, judges_dir))
