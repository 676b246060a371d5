"""The sampling policy's rules from a YAML file (EVALUATOR_SAMPLING_CONFIG), read as data.

    segments:                      # first match sets the random rate of a trace
      - {field: model, value: gpt-4o, rate: 0.05}
      - {field: route, value: /checkout, rate: 0.15}   # route = metadata["route"]
      - {field: prompt_version, value: v7, rate: 0.5, rubric: hallucination}
    rubrics:                       # a rubric's own rate, when no segment sets one
      hallucination: 0.15
      refusal: 0.05
    always_when:                   # evaluated whatever the rate, by every rubric
      - {key: customer_tier, value: enterprise}
      - {key: tag, value: canary}
    daily_budget_usd: 25           # pace random sampling to this judge spend per UTC day

The base rate stays `--sample-rate` / EVALUATOR_SAMPLE_RATE; EVALUATOR_DAILY_BUDGET_USD, when
set, wins over daily_budget_usd (the caller passes both from its Settings).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluator.core.errors import ConfigError, first_problem
from evaluator.sampling.policy import AttributeRule, SamplingPolicy, SegmentRate

BUDGET_ENV = "EVALUATOR_DAILY_BUDGET_USD"

Rate = Annotated[float, Field(ge=0, le=1)]


class _Segment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Literal["model", "provider", "prompt_version", "route"]
    value: str
    rate: Rate
    rubric: str | None = Field(default=None, min_length=1)


class _Attribute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    value: str | None = None


class _SamplingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segments: list[_Segment] = Field(default_factory=list)
    always_when: list[_Attribute] = Field(default_factory=list)
    rubrics: dict[str, Rate] = Field(default_factory=dict)
    daily_budget_usd: float | None = Field(default=None, ge=0)


def load_sampling_rules(path: Path) -> _SamplingFile:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"sampling config {path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"sampling config {path}: not valid YAML: {exc}") from None
    try:
        return _SamplingFile.model_validate(data)
    except ValidationError as exc:
        problem = first_problem(exc)
        raise ConfigError(f"sampling config {path}: field '{problem.where}': {problem.message}"
                          ) from None


def sampling_policy(rate: float, path: Path | None = None,
                    daily_budget_usd: float | None = None) -> SamplingPolicy:
    """The policy at `rate`, with the rules of the config file if any (Settings.sampling_config);
    `daily_budget_usd` (Settings.daily_budget_usd), when given, wins over the file's."""
    rules = load_sampling_rules(path) if path is not None else _SamplingFile()
    budget = rules.daily_budget_usd if daily_budget_usd is None else daily_budget_usd
    if budget is not None and not math.isfinite(budget):
        raise ConfigError(f"the daily judge budget (daily_budget_usd, {BUDGET_ENV}) must be a"
                          f" finite number of USD, e.g. 25, got {budget}; unset it for no budget")
    return SamplingPolicy(
        rate=rate,
        segment_rates=tuple(SegmentRate(s.field, s.value, s.rate, s.rubric)
                            for s in rules.segments),
        always_when=tuple(AttributeRule(a.key, a.value) for a in rules.always_when),
        rubric_rates=dict(rules.rubrics),
        daily_budget_usd=budget,
    )


def check_rubric_names(policy: SamplingPolicy, criteria: Iterable[str]) -> None:
    """A rate for a rubric that does not exist (a typo) would silently never apply: refuse it."""
    known = set(criteria)
    unknown = sorted(policy.named_rubrics - known)
    if unknown:
        raise ConfigError(
            f"sampling config names rubric(s) {', '.join(unknown)}, which are not loaded; "
            f"rubric rates are keyed by criterion: one of {', '.join(sorted(known))}")
