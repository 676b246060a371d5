"""The JudgeClient interface every judge implements, and the verdict it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from evaluator.core.records import ClaimVerdict, Status, Trace
from evaluator.core.rows import JudgeCall
from evaluator.core.usage import Usage
from evaluator.judges.ledger import totals
from evaluator.rubrics import RenderedPrompt, Rubric


@dataclass
class JudgeVerdict:
    """What one judge call produced. `status` is terminal: scored, unscored or error."""

    status: Status
    label: str | None = None
    score: float | None = None
    reasoning: str | None = None
    reason: str | None = None
    """Why the verdict is unscored or error (empty when scored)."""
    raw_reply: str | None = None
    usage: Usage = Usage()
    attempts: int = 1
    cached: bool = False
    calls: list[JudgeCall] = field(default_factory=list)
    """The ledger: one row per HTTP attempt and per cache hit behind this verdict."""
    stability: float | None = None
    """Repeated judging only: the share of samples that agree with the final label."""
    judge: str | None = None
    judge_hash: str | None = None
    """The judge that answered, when it is not the one asked (a fallback took the call)."""
    claims: list[ClaimVerdict] | None = None
    """The claims the judge checked, when the rubric asks for them (`score` is then their
    supported share)."""


def verdict_from(calls: list[JudgeCall], **fields: Any) -> JudgeVerdict:
    """A verdict whose tokens, cost, latency and attempts are its ledger rows' totals."""
    summed = totals(calls)
    return JudgeVerdict(usage=summed.usage, attempts=summed.attempts, calls=calls, **fields)


class JudgeClient(Protocol):
    """A judge: turns a rendered rubric prompt about one trace into a verdict.

    Implementations never raise for a bad reply or a failed call: they return a verdict with
    status `unscored` (reply unusable, raw reply kept) or `error` (call failed, reason given).
    """

    name: str
    config_hash: str

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt) -> JudgeVerdict: ...


class JudgeLink(Protocol):
    """A JudgeClient inside one LLM judge's wrapper chain (factory.py). It is also told which
    repeated sample this is (a seed, if set, is offset by it) and whether it may raise
    `attempt.Deferred` to hand the call to a fallback judge instead of waiting or failing."""

    name: str
    config_hash: str

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt, *,
                    sample: int = 0, may_defer: bool = False) -> JudgeVerdict: ...
