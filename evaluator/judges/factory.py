"""Build the JudgeClient a judge config describes: offline, one LLM (with its fallbacks),
repeated samples of one LLM, or a panel of several judges."""

from __future__ import annotations

from pathlib import Path

from evaluator.core.errors import ConfigError
from evaluator.judges.config import JudgeConfig, load_judge_config
from evaluator.judges.base import JudgeClient
from evaluator.judges.runtime import JudgeRuntime


def build_judge(config: JudgeConfig, judges_dir: Path | None = None,
                runtime: JudgeRuntime | None = None) -> JudgeClient:
    """Fallback and panel member names are loaded from `judges_dir`.

    Each implementation is imported only when asked for, so the offline judge never pays for
    importing the LLM clients' dependencies.
    """
    if config.kind == "panel":
        from evaluator.judges.panel import PanelJudge, panel_hash

        if not config.panel:
            raise ConfigError(f"judge '{config.name}': kind 'panel' needs a 'panel' list of judges")
        repeated = config.samples != 1 or bool(config.samples_by_rubric)
        members = [_member(config.name, name, judges_dir, runtime, repeated)
                   for name in config.panel]
        samples = [config.samples, config.samples_by_rubric]
        return PanelJudge(config.name, panel_hash(config.aggregate, samples, members), members,
                          config.aggregate, config.samples_for)
    judge = _single(config, judges_dir, runtime)
    if config.samples == 1 and not config.samples_by_rubric:
        return judge
    if config.kind == "offline":
        raise ConfigError(f"judge '{config.name}': the offline judge is deterministic; "
                          "repeating it (samples) would only repeat the same verdict")
    from evaluator.judges.panel import PanelJudge

    return PanelJudge(config.name, config.config_hash, [judge], config.aggregate,
                      config.samples_for)


def load_judge(name: str, judges_dir: Path | None = None,
               runtime: JudgeRuntime | None = None) -> JudgeClient:
    """Load `judges/<name>.yaml` (or a path to a YAML file) and build its judge."""
    config = load_judge_config(name, judges_dir)
    if judges_dir is None and Path(name).suffix in {".yaml", ".yml"}:
        judges_dir = Path(name).parent  # fallbacks and members live next to the file
    return build_judge(config, judges_dir, runtime)


def _single(config: JudgeConfig, judges_dir: Path | None,
            runtime: JudgeRuntime | None) -> JudgeClient:
    if config.kind == "offline":
        from evaluator.judges.offline import OfflineJudge

        return OfflineJudge(config)
    from evaluator.judges.llm import LLMJudge

    fallbacks = []
    for name in config.fallbacks:
        fallback = load_judge_config(name, judges_dir)
        if fallback.kind != "litellm" or fallback.name == config.name:
            raise ConfigError(f"judge '{config.name}': fallback '{name}' must be another "
                              "LLM judge (kind 'litellm')")
        fallbacks.append(LLMJudge(fallback, runtime=runtime))
    return LLMJudge(config, runtime=runtime, fallbacks=fallbacks)


def _member(panel: str, name: str, judges_dir: Path | None, runtime: JudgeRuntime | None,
            repeated: bool) -> JudgeClient:
    config = load_judge_config(name, judges_dir)
    if config.kind == "panel" or config.samples != 1 or config.samples_by_rubric:
        raise ConfigError(f"judge '{panel}': panel member '{name}' must be a single judge; "
                          "set samples on the panel instead")
    if repeated and config.kind == "offline":
        raise ConfigError(f"judge '{panel}': the offline member '{name}' is deterministic; "
                          "a panel that samples more than once needs LLM members")
    return _single(config, judges_dir, runtime)
