"""The sampling policy's rules from a YAML file (EVALUATOR_SAMPLING_CONFIG), read as data.

    segments:                      # first match sets the random rate of a trace
      - {field: model, value: gpt-4o, rate: 0.05}
      - {field: route, value: /checkout, rate: 0.15}   # route = metadata["route"]
    always_when:                   # evaluated whatever the rate
      - {key: customer_tier, value: enterprise}
      - {key: tag, value: canary}

The base rate stays `--sample-rate` / EVALUATOR_SAMPLE_RATE.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluator.errors import ConfigError
from evaluator.sampling import AttributeRule, SamplingPolicy, SegmentRate

CONFIG_ENV = "EVALUATOR_SAMPLING_CONFIG"


class _Segment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Literal["model", "provider", "prompt_version", "route"]
    value: str
    rate: float = Field(ge=0, le=1)


class _Attribute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    value: str | None = None


class _SamplingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segments: list[_Segment] = Field(default_factory=list)
    always_when: list[_Attribute] = Field(default_factory=list)


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
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"sampling config {path}: field '{where}': {first['msg']}") from None


def sampling_policy(rate: float, path: Path | None = None) -> SamplingPolicy:
    """The policy at `rate`, with the segments and attribute rules of the config file if any."""
    path = path or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is None:
        return SamplingPolicy(rate=rate)
    rules = load_sampling_rules(path)
    return SamplingPolicy(
        rate=rate,
        segment_rates=tuple(SegmentRate(s.field, s.value, s.rate) for s in rules.segments),
        always_when=tuple(AttributeRule(a.key, a.value) for a in rules.always_when),
    )
