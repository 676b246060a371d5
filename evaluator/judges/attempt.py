"""The attempt chain's interface: one HTTP request of a judge call, and the `Sender`s it passes.

An LLM judge call (llm.py) hands one `Attempt` to a chain of senders, each a small wrapper with
one job, the way dramatiq chains middleware (built by factory.py, outermost first):
`Retrying` (retry.py's policy, the breaker's waits) -> `InFlightLimit` -> `BreakerGate` ->
`RateLimitedSender` -> `LedgerSender` (one priced ledger row per request) -> `TransportSender`.
A sender returns the transport's `Reply` or raises: the transport's own exceptions (a failed
request), or one of the signals below, which never leave the judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from evaluator.core.errors import JudgeError
from evaluator.core.rows import JudgeCall
from evaluator.judges.transport import Reply, Transport


@dataclass(slots=True)
class Attempt:
    """One judge call's request as it goes down the chain (again for each retry)."""

    request: dict[str, Any]
    """Messages, parameters and structured-output arguments; max_tokens is added at the end."""
    max_tokens: int
    api_key: str | None
    sample: int = 0
    may_defer: bool = False
    """A fallback judge is behind this one: give the call up rather than wait or fail."""
    calls: list[JudgeCall] = field(default_factory=list)
    """The call's ledger so far (the ledger wrapper appends one row per request)."""
    failures: int = 0
    """Failed requests so far (the retry wrapper counts them)."""

    @property
    def tokens(self) -> int:
        """What the request counts against a tokens/min limit: prompt characters / 4 plus
        max_tokens, as providers count it before it runs."""
        prompt = sum(len(message.get("content") or "") for message in self.request["messages"])
        return prompt // 4 + self.max_tokens


class Sender(Protocol):
    async def send(self, attempt: Attempt) -> Reply:
        """Send the attempt's request once (or, for the retry wrapper, until it succeeds)."""


class TransportSender:
    """The end of the chain: the request, as it is, to the transport."""

    def __init__(self, transport: Transport):
        self.transport = transport

    async def send(self, attempt: Attempt) -> Reply:
        return await self.transport.complete({**attempt.request, "max_tokens": attempt.max_tokens},
                                             attempt.api_key)


class CircuitRefused(JudgeError):
    """The circuit breaker did not admit the request (never leaves the judge)."""


class WaitTooLong(JudgeError):
    """The rate limit would hold the request longer than a deferring call may wait."""


class CallFailed(JudgeError):
    """The call ended without a reply; the message is the error verdict's reason."""


class Deferred(JudgeError):
    """This judge cannot take the call now (circuit open, rate limit too slow, failures):
    the fallback wrapper tries the next judge, carrying the ledger rows spent here."""

    def __init__(self, why: str, calls: list[JudgeCall]):
        super().__init__(why)
        self.why = why
        self.calls = calls
