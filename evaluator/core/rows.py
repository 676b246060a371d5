"""Rows the worker sends the store besides Evaluations and dead letters: the masked traces it
judged (StoredTrace) and the cost ledger (JudgeCall).

The cost ledger has one JudgeCall per HTTP attempt (retries, panel members and samples included)
and per cache hit, so spend can be summed per judge, rubric and day.

A call's id is random and minted when the call is made: the same result re-delivered to the
sink is stored once, while a message judged twice (a worker retry) really did pay twice.
A call's cost (`usage.cost_usd`) None means unknown, never free: a reply the price map cannot
price, or a timeout (the provider may have billed a reply we never saw). An error response or a
refused connection costs 0; a cache hit costs 0.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from evaluator.core.records import Trace, utcnow
from evaluator.core.usage import USAGE_FIELDS, Usage

OK, ERROR, CACHED = "ok", "error", "cached"
"""Call statuses: a reply came back (usable or not), the attempt failed, a cache hit."""


@dataclass(frozen=True)
class StoredTrace:
    """A masked trace as the store keeps it, with the sampling decision that let it in."""

    trace: Trace
    sample_reason: str
    sample_weight: float


@dataclass(slots=True)
class JudgeCall:
    """One judge call. The evaluation fields are stamped by the pipeline once the row's
    Evaluation exists; the judge does not know them."""

    call_id: str
    judge: str
    model: str | None
    transport: str | None
    sample: int
    attempt: int
    status: str
    http_status: int | None = None
    error_class: str | None = None
    usage: Usage = Usage()
    cached: bool = False
    created_at: datetime | None = None
    evaluation_id: str | None = None
    trace_id: str | None = None
    rubric: str | None = None
    rubric_version: int | None = None
    run_id: str | None = None

    @classmethod
    def new(cls, **fields: Any) -> JudgeCall:
        return cls(call_id=uuid.uuid4().hex, created_at=utcnow(), **fields)

    def flat(self) -> dict[str, Any]:
        """The row as the store's columns: usage spread into its four fields."""
        data = {name: getattr(self, name) for name in _FIELDS}  # asdict() deep-copies: slower
        data.update(self.usage.flat())
        return data

    def to_json(self) -> dict[str, Any]:
        """The row in a results message: flat, as a sink of the previous release reads it."""
        data = self.flat()
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JudgeCall:
        fields = dict(data)
        if fields.get("created_at"):
            fields["created_at"] = datetime.fromisoformat(fields["created_at"])
        fields["usage"] = Usage(*(fields.pop(name, None) for name in USAGE_FIELDS))
        return cls(**fields)


_FIELDS = tuple(field.name for field in fields(JudgeCall) if field.name != "usage")
