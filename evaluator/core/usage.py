"""What judging used, as one value: tokens, cost and time (Usage). A judge's verdict, the
Evaluation it becomes and each row of the cost ledger (JudgeCall) hold one.

`cost_usd` None means unknown, never free, and a sum with an unknown cost is unknown. Unknown
token counts and times are left out of a sum (the known part is still worth showing).

Stored and sent, the four fields stay flat columns and keys (`input_tokens`, `output_tokens`,
`cost_usd`, `latency_ms`), as the previous release wrote them: `Usage.flat`, `spread_usage` and
`gather_usage` convert at those edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ConfigDict, with_config

USAGE_FIELDS = ("input_tokens", "output_tokens", "cost_usd", "latency_ms")


@with_config(ConfigDict(revalidate_instances="always"))  # checked again inside an Evaluation
@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    """None means unknown, never free: report it as unknown."""
    latency_ms: float | None = None

    def __add__(self, other: Usage) -> Usage:
        """Both together: known tokens and times add up, an unknown cost makes the sum's unknown."""
        return Usage(_known_sum(self.input_tokens, other.input_tokens),
                     _known_sum(self.output_tokens, other.output_tokens),
                     None if self.cost_usd is None or other.cost_usd is None
                     else self.cost_usd + other.cost_usd,
                     _known_sum(self.latency_ms, other.latency_ms))

    def flat(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd, "latency_ms": self.latency_ms}


FREE = Usage(cost_usd=0.0, latency_ms=0.0)
"""Nothing used yet, at a known cost: where a sum starts."""


N = TypeVar("N", int, float)


def _known_sum(a: N | None, b: N | None) -> N | None:
    if a is None:
        return b
    return a if b is None else a + b


def spread_usage(data: dict[str, Any]) -> dict[str, Any]:
    """A record's dict with its nested `usage` spread into the four flat keys, in its place."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "usage":
            out.update(value)
        else:
            out[key] = value
    return out


def gather_usage(data: Any) -> Any:
    """A record's flat dict (a stored row, a sent message) with the four keys gathered into
    `usage`, in place; anything else as it is (for validation to reject)."""
    if isinstance(data, dict) and "usage" not in data:
        data["usage"] = {name: data.pop(name) for name in USAGE_FIELDS if name in data}
    return data
