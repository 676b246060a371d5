"""Alert rules as validated config: what to watch, over which window, how sure to be, who cares.

The rule set lives in a YAML file (`alerts.yaml` at the project root by default, or the file
named by EVALUATOR_ALERTS_CONFIG / `--config`). Each rule has a `kind`:

- `label_rate`: weighted share of scored evaluations with given labels (hallucination rate).
- `status_rate`: share of judge calls ending with given statuses (judge error rate).
- `mean_score`: weighted mean score below a floor (faithfulness, relevance).
- `score_drop`: mean score down by more than a fraction from the window before.
- `cost_ratio`: judge cost of the last window (a day) above a multiple of the one before.
- `silent_failure`: the app's own error rate is low while a quality score drops.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from evaluator.core.errors import ConfigError, first_problem
from evaluator.core.settings import PROJECT_ROOT
from evaluator.monitoring.alerts.sinks import LogSinkConfig, SinkConfig

DEFAULT_CONFIG_PATH = PROJECT_ROOT / "alerts.yaml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_DAYS = 36500
"""Longer durations (100 years) would overflow date arithmetic: refused with a clear error."""
MAX_WINDOWS = 100
"""A rule reads at most this many consecutive windows (`sustained_for` / `window`)."""
MAX_RULE_SPAN_DAYS = 366
"""A rule reads at most this far back (all the windows it needs, end to end)."""


def parse_duration(value: Any) -> timedelta:
    """'90s', '5m', '15m', '1h', '1d' (a bare number is seconds): whole seconds, at least 1s
    and at most MAX_DURATION_DAYS; anything else is a ValueError saying so."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration: write e.g. 90s, 5m, 15m, 1h or 1d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION_DAYS * _UNIT_SECONDS["d"]:
        raise ValueError(f"{value!r} is too long: a duration is at most {MAX_DURATION_DAYS}d")
    if not (seconds >= 1 and seconds.is_integer()):  # NaN fails both
        raise ValueError(f"a duration is a whole number of seconds, at least 1s, got {value!r}")
    return timedelta(seconds=int(seconds))


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    priority: Literal["P1", "P2", "P3"] = "P2"
    window: Duration = timedelta(minutes=15)
    min_samples: int = Field(default=30, ge=1)
    """Fewer evaluations than this in a window is too little evidence to fire or resolve."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    cooldown: Duration = timedelta(minutes=30)
    """No second firing notification for the same rule and labels within this time."""
    enabled: bool = True

    def windows_needed(self) -> int:
        """Consecutive windows the rule reads, newest first."""
        return 1

    @model_validator(mode="after")
    def _checkable(self) -> RuleBase:
        """Refuse at load what no check could read (instead of failing every check)."""
        if self.windows_needed() > MAX_WINDOWS:
            raise ValueError(f"sustained_for spans {self.windows_needed()} windows of"
                             f" {format_duration(self.window)}; at most {MAX_WINDOWS} windows:"
                             " use a longer window or a shorter sustained_for")
        if self.window * self.windows_needed() > timedelta(days=MAX_RULE_SPAN_DAYS):
            raise ValueError(f"the rule reads {self.window_text()} back; at most"
                             f" {MAX_RULE_SPAN_DAYS}d: use a shorter window")
        return self

    def window_text(self) -> str:
        return format_duration(self.window)


class _Sustainable(RuleBase):
    sustained_for: Duration | None = None
    """Fire only when every window covering this span breaches (e.g. 10m over 5m windows)."""
    weighted: bool = True
    """Weight by sample_weight, so the rate estimates all traffic, not just the sample."""

    def windows_needed(self) -> int:
        if self.sustained_for is None:
            return 1
        return max(1, -(-int(self.sustained_for.total_seconds()) // int(self.window.total_seconds())))

    def window_text(self) -> str:
        k = self.windows_needed()
        return format_duration(self.window) if k == 1 else f"{k} x {format_duration(self.window)}"


class LabelRateRule(_Sustainable):
    kind: Literal["label_rate"]
    rubrics: list[str] = Field(min_length=1)
    labels: list[str] = Field(min_length=1)
    above: Fraction


class StatusRateRule(_Sustainable):
    kind: Literal["status_rate"]
    statuses: list[Literal["unscored", "error"]] = Field(min_length=1)
    above: Fraction
    rubrics: list[str] | None = None
    """None: one rate over every rubric."""
    weighted: bool = False
    """Judge health is about the calls made, not the traffic they stand for."""


class MeanScoreRule(_Sustainable):
    kind: Literal["mean_score"]
    rubrics: list[str] = Field(min_length=1)
    below: Fraction


class ScoreDropRule(RuleBase):
    kind: Literal["score_drop"]
    rubrics: list[str] = Field(min_length=1)
    max_drop: float = Field(gt=0.0, lt=1.0)
    """Relative drop from the previous window: 0.10 fires when current < 90% of previous."""
    weighted: bool = True

    def windows_needed(self) -> int:
        return 2

    def window_text(self) -> str:
        return f"{format_duration(self.window)} vs previous {format_duration(self.window)}"


class SilentFailureRule(ScoreDropRule):
    kind: Literal["silent_failure"]  # type: ignore[assignment]
    app_error_below: Fraction = 0.02
    """The app looks healthy: its (weighted) error rate is under this."""


class CostRatioRule(RuleBase):
    kind: Literal["cost_ratio"]
    window: Duration = timedelta(days=1)
    max_ratio: float = Field(gt=1.0)
    min_samples: int = Field(default=1, ge=1)
    min_cost_usd: float = Field(default=1.0, ge=0.0)
    """Spend below this does not alert, whatever the ratio."""

    def windows_needed(self) -> int:
        return 2

    def window_text(self) -> str:
        return f"{format_duration(self.window)} vs previous {format_duration(self.window)}"


Rule = Annotated[
    LabelRateRule | StatusRateRule | MeanScoreRule | ScoreDropRule | SilentFailureRule | CostRatioRule,
    Field(discriminator="kind"),
]


def _log_sink_only() -> list[SinkConfig]:
    return [LogSinkConfig(kind="log")]


class AlertConfig(BaseModel):
    """The whole file: rules, and where notifications go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=_log_sink_only)

    @model_validator(mode="after")
    def _unique_names(self) -> AlertConfig:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(duplicates)}")
        return self

    @property
    def enabled_rules(self) -> list[Any]:
        return [rule for rule in self.rules if rule.enabled]


def load_alert_config(path: str | Path | None = None) -> AlertConfig:
    """Read and validate the rules file (--config, else Settings.alerts_config, else alerts.yaml);
    ConfigError names the file and the bad field."""
    path = Path(path or DEFAULT_CONFIG_PATH)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no alert rules at {path}: copy alerts.yaml from the Evaluator repository there, or"
            f" point EVALUATOR_ALERTS_CONFIG / --config at your rules file"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the alert rules {path}: {exc}") from None
    try:
        return AlertConfig.model_validate(data or {})
    except ValidationError as exc:
        problem = first_problem(exc)
        raise ConfigError(
            f"invalid alert rules {path}: {problem.where}: {problem.message} ({problem.count}"
            " problem(s)); fix the file (see the Monitoring section of the README)"
        ) from None
