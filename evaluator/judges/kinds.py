"""The judge-kind registry: what a judge config's `kind` builds.

`offline`, `litellm` and `panel` are built-in (their builders are in factory.py); a plugin adds a kind with an
entry point in the group `evaluator.judges` naming either a `JudgeKind` or a callable
`build(config: JudgeConfig, context: JudgeContext) -> JudgeClient` (a plain callable is a
kind that neither calls a model through our LLM chain nor is deterministic).
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evaluator.core.plugins import Registry

if TYPE_CHECKING:
    from evaluator.judges.base import JudgeClient
    from evaluator.judges.config import JudgeConfig
    from evaluator.judges.runtime import JudgeRuntime


@dataclass(frozen=True)
class JudgeContext:
    """What a builder may need besides the config: where other judges' configs are (fallbacks,
    panel members) and the process's shared runtime (cache, rate limits, breakers)."""

    judges_dir: Path | None
    runtime: JudgeRuntime | None


Builder = Callable[["JudgeConfig", JudgeContext], "JudgeClient"]


@dataclass(frozen=True)
class JudgeKind:
    builder: Builder | str
    """The build function, or where it is (`module:name`, imported on first use: the built-ins'
    builders live in factory.py, which imports this module)."""
    deterministic: bool = False
    """It gives the same verdict every time: repeated samples are refused."""
    calls_model: bool = False
    """One LLM through the wrapper chain: preflight checks it, it may be another's fallback."""
    repeats_itself: bool = False
    """It handles `samples` itself (a panel)."""

    def build(self, config: JudgeConfig, context: JudgeContext) -> JudgeClient:
        builder = pkgutil.resolve_name(self.builder) if isinstance(self.builder, str) else self.builder
        return builder(config, context)


def _usable(value: object) -> str | None:
    if isinstance(value, JudgeKind) or callable(value):
        return None
    return f"expected a JudgeKind or a callable build(config, context), got {type(value).__name__}"


JUDGE_KINDS: Registry[JudgeKind | Callable[..., JudgeClient]] = Registry(
    "evaluator.judges", "judge kind", _usable)


JUDGE_KINDS.register("offline", JudgeKind("evaluator.judges.factory:build_offline", deterministic=True),
                     "evaluator.judges.offline:OfflineJudge")
JUDGE_KINDS.register("litellm", JudgeKind("evaluator.judges.factory:build_litellm", calls_model=True),
                     "evaluator.judges.llm:LLMJudge")
JUDGE_KINDS.register("panel", JudgeKind("evaluator.judges.factory:build_panel", repeats_itself=True),
                     "evaluator.judges.panel:PanelJudge")


def judge_kind(name: str) -> JudgeKind:
    """The kind called `name` (ConfigError naming the known kinds when there is none)."""
    found = JUDGE_KINDS.get(name)
    return found if isinstance(found, JudgeKind) else JudgeKind(found)
