"""Judge configurations: `judges/<name>.yaml`, validated, hashed for provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluator.errors import ConfigError
from evaluator.records import canonical_json, sha256_hex


class JudgePrices(BaseModel):
    """USD per million tokens; overrides litellm's offline price map when set."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class JudgeLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_in_flight: int = Field(default=32, ge=1, le=4096)
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=20)


class JudgeConfig(BaseModel):
    """One judge: which model, with which parameters, at what price and limits."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["offline", "litellm"] = "litellm"
    model: str | None = None
    """litellm model string, e.g. `openai/gpt-4o-mini` or `anthropic/claude-3-5-haiku-latest`."""
    api_base: str | None = None
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself)."""
    params: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0})
    prices: JudgePrices | None = None
    limits: JudgeLimits = Field(default_factory=JudgeLimits)
    fallbacks: list[str] = Field(default_factory=list)
    description: str = ""

    @property
    def config_hash(self) -> str:
        """Hash of everything that can change a verdict (not limits, prices or descriptions)."""
        identity = {"kind": self.kind, "model": self.model, "params": self.params}
        return sha256_hex(canonical_json(identity))[:16]


def judges_dir_default() -> Path:
    from evaluator.settings import Settings

    return Settings.from_env().judges_dir


def load_judge_config(name_or_path: str, judges_dir: Path | None = None) -> JudgeConfig:
    """Load `judges/<name>.yaml` (or an explicit path) with yaml.safe_load and validate it."""
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = (judges_dir or judges_dir_default()) / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ConfigError(
            f"judge config {path} not found; available judges: {', '.join(available) or 'none'}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.setdefault("name", path.stem)
    try:
        return JudgeConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: field '{where}': {first['msg']}") from None
