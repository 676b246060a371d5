"""Judge configurations: `judges/<name>.yaml`, validated, hashed for provenance."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evaluator.core.errors import ConfigError, first_problem
from evaluator.core.records import canonical_json, sha256_hex
from evaluator.core.settings import DEFAULT_JUDGES_DIR
from evaluator.judges.kinds import judge_kind

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class JudgePrices(BaseModel):
    """USD per million tokens; overrides litellm's offline price map when set."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class JudgeLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_in_flight: int = Field(default=32, ge=1, le=4096)
    requests_per_minute: int | None = Field(default=None, ge=1)
    """Shared by every worker on every host (through Redis when EVALUATOR_REDIS_URL is set)."""
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Charged per request as the prompt's estimated tokens plus max_tokens, as providers do."""
    timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=20)
    fallback_after_wait_s: float = Field(default=5.0, ge=0)
    """With fallbacks: a rate-limit wait longer than this sends the call to the next judge."""


class JudgeBreaker(BaseModel):
    """When a judge that keeps failing is paused (per judge, per worker process)."""

    model_config = ConfigDict(extra="forbid")

    consecutive_failures: int = Field(default=5, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    window: int = Field(default=20, ge=2)
    """The failure rate is taken over this many most recent calls (once there are that many)."""
    cooldown_s: float = Field(default=30.0, gt=0)
    """How long the circuit stays open before probe calls may test the judge again."""
    half_open_probes: int = Field(default=3, ge=1)
    """Half-open: calls let through at first; each success lets one more in (slow start) until
    `limits.max_in_flight` are, when the circuit closes."""
    max_wait_s: float = Field(default=120.0, ge=0)
    """Service mode (`evaluator worker`), without a fallback: how long a call waits for an open
    circuit before it is an error. `run` and `replay` do not wait: they fail the call at once."""


class JudgeCache(BaseModel):
    """The judge-response cache, used only for deterministic calls (temperature 0 or a seed)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    ttl_s: int = Field(default=30 * 24 * 3600, ge=1)


class JudgeConfig(BaseModel):
    """One judge: which model, with which parameters, at what price and limits."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """Letters, digits, `.`, `_`, `-` (it is shown in terminals, reports and metric labels)."""
    kind: str = Field(default="litellm", pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    """`litellm`: one model (called through litellm or the openai client, see `client`);
    `panel`: several judges named in `panel`, aggregated; `offline`: heuristics, no model; any
    other name: a judge kind a plugin registers (evaluator.judges.kinds)."""
    model: str | None = None
    """litellm model string, e.g. `openai/gpt-4o-mini` or `anthropic/claude-3-5-haiku-latest`."""
    client: Literal["auto", "litellm", "openai"] = "auto"
    """`auto` calls `openai/...` models through the openai client (cheaper per call), the rest
    through litellm; `litellm` or `openai` forces one. Never changes a verdict, so not hashed."""
    api_base: str | None = None
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself)."""
    params: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0})
    prices: JudgePrices | None = None
    limits: JudgeLimits = Field(default_factory=JudgeLimits)
    breaker: JudgeBreaker = Field(default_factory=JudgeBreaker)
    cache: JudgeCache = Field(default_factory=JudgeCache)
    fallbacks: list[str] = Field(default_factory=list)
    """Judges (names) used in order when this one's circuit is open or its rate limit would
    make a call wait longer than `limits.fallback_after_wait_s`."""
    panel: list[str] = Field(default_factory=list)
    """kind `panel`: the member judges (names); each judges every trace."""
    aggregate: Literal["majority", "mean"] = "majority"
    """How a panel's (or repeated samples') verdicts become one: majority vote or mean score."""
    samples: int = Field(default=1, ge=1, le=20)
    """How many times each member judges each trace (the spread is stored as stability)."""
    samples_by_rubric: dict[str, Annotated[int, Field(ge=1, le=20)]] = Field(default_factory=dict)
    """Per rubric criterion, overrides `samples`, e.g. {hallucination: 3}."""
    description: str = ""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError("a judge name is 1 to 64 letters, digits, '.', '_' or '-', starting"
                             " with a letter or digit, e.g. gpt-4o-mini")
        return name

    @property
    def config_hash(self) -> str:
        """Hash of everything that can change a verdict (not limits, prices or descriptions).

        Repeat-judging settings join the hash only when used, so older hashes stay valid.
        """
        identity: dict[str, Any] = {"kind": self.kind, "model": self.model, "params": self.params}
        if self.samples != 1 or self.samples_by_rubric:
            identity["samples"] = [self.samples, self.samples_by_rubric, self.aggregate]
        return sha256_hex(canonical_json(identity))[:16]

    def samples_for(self, criterion: str) -> int:
        return self.samples_by_rubric.get(criterion, self.samples)


MAX_CONFIG_NODES = 10_000
MAX_CONFIG_DEPTH = 32


def _check_size(data: Any, path: Path) -> None:
    """Refuse a config that is huge once YAML aliases are expanded ("billion laughs": a few
    lines of anchors stand for 10^9 values, which hashing the params would walk for hours)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES or depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{path}: too large once YAML aliases are expanded (more than"
                              f" {MAX_CONFIG_NODES:,} values or {MAX_CONFIG_DEPTH} levels deep):"
                              " write the values out")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def load_judge_config(name_or_path: str, judges_dir: Path | None = None) -> JudgeConfig:
    """Load `<judges_dir>/<name>.yaml` (judges_dir: Settings.judges_dir; the bundled judges/ when
    None) or an explicit path with yaml.safe_load, and validate it."""
    judges_dir = judges_dir or DEFAULT_JUDGES_DIR
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = judges_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in judges_dir.glob("*.yaml")) if judges_dir.is_dir() else []
        raise ConfigError(
            f"judge {name_or_path!r} not found (no file {path}); judges in {judges_dir} "
            f"(EVALUATOR_JUDGES_DIR): {', '.join(available) or 'none'}; or give the path of a "
            "judge .yaml file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a judge config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    _check_size(data, path)
    data.setdefault("name", path.stem)
    try:
        config = JudgeConfig.model_validate(data)
    except ValidationError as exc:
        problem = first_problem(exc)
        raise ConfigError(f"{path}: field '{problem.where}': {problem.message}") from None
    try:
        judge_kind(config.kind)
    except ConfigError as exc:
        raise ConfigError(f"{path}: field 'kind': {exc}") from None
    if config.name != path.stem:  # --judge NAME would store evaluations under another name
        raise ConfigError(f"{path}: name {config.name!r} differs from the file name: rename the "
                          f"file {config.name}.yaml, or set name: {path.stem}")
    return config
