"""The ledger wrapper: one priced JudgeCall row per HTTP request (and, through the cache
wrapper, per cache hit), appended to the call's ledger (ledger.py says what a row means).

Latency is the transport's alone: rate-limit waits and in-flight queueing are not in it.
Pricing: the judge config's `prices` when set, else the transport's list price (litellm's
price map); None when unknown, never free. A failed request costs 0, except a timeout, whose
cost is unknown (the provider may have billed a reply we never saw).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from evaluator.core.rows import ERROR, OK, JudgeCall
from evaluator.core.usage import Usage
from evaluator.judges.attempt import Attempt, Sender
from evaluator.judges.config import JudgePrices
from evaluator.judges.retry import is_timeout
from evaluator.judges.transport import Reply

log = logging.getLogger(__name__)

CallListener = Callable[[JudgeCall], None]
_listener: ContextVar[CallListener | None] = ContextVar("judge_call_listener", default=None)


@contextmanager
def calls_heard_by(listener: CallListener) -> Iterator[None]:
    """`listener` hears each ledger row the moment its request ends, while the request still
    holds its in-flight slot (the wrapper sits inside InFlightLimit), so a caller that publishes
    what it hears at once never has more rows unpublished than requests in flight, whatever the
    rest of the evaluation still awaits (a cache write, a fallback). Task-local: tasks started
    inside inherit it."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def _announce(row: JudgeCall) -> None:
    listener = _listener.get()
    if listener is None:
        return
    try:
        listener(row)
    except Exception as exc:  # the row still reaches the ledger with its evaluation
        log.warning("a judge call listener failed on call %s: %r", row.call_id, exc)


class CallRows:
    """Makes the ledger rows of one judge (its name, model and transport on each)."""

    def __init__(self, judge: str, model: str | None, transport: str):
        self.judge = judge
        self.model = model
        self.transport = transport

    def row(self, sample: int, attempt: int, status: str, latency_ms: float, usage: Usage,
            **fields: Any) -> JudgeCall:
        """A row whose `usage` took `latency_ms` (rounded here)."""
        return JudgeCall.new(judge=self.judge, model=self.model, transport=self.transport,
                             sample=sample, attempt=attempt, status=status,
                             usage=replace(usage, latency_ms=round(latency_ms, 3)), **fields)


def price_usd(prices: JudgePrices | None, reply: Reply) -> float | None:
    """USD from the config's prices, else the transport's list price; None when unknown."""
    if prices is None:
        return reply.cost_usd
    if reply.input_tokens is None or reply.output_tokens is None:
        return None
    return (reply.input_tokens * prices.input_per_mtok
            + reply.output_tokens * prices.output_per_mtok) / 1_000_000


class LedgerSender:
    """A Sender that times the request and appends its row to `attempt.calls`."""

    def __init__(self, inner: Sender, rows: CallRows, prices: JudgePrices | None):
        self.inner = inner
        self.rows = rows
        self.prices = prices

    async def send(self, attempt: Attempt) -> Reply:
        number = len(attempt.calls) + 1
        started = time.perf_counter()
        try:
            reply = await self.inner.send(attempt)
        except Exception as exc:  # recorded, then classified by the retry wrapper
            latency_ms = (time.perf_counter() - started) * 1000
            timed_out = is_timeout(exc)  # litellm gives its client-side timeouts a 408
            status = None if timed_out else getattr(exc, "status_code", None)
            self._append(attempt, self.rows.row(
                attempt.sample, number, ERROR, latency_ms, Usage(cost_usd=None if timed_out else 0.0),
                error_class=type(exc).__name__, http_status=status if isinstance(status, int) else None))
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        self._append(attempt, self.rows.row(
            attempt.sample, number, OK, latency_ms,
            Usage(reply.input_tokens, reply.output_tokens, price_usd(self.prices, reply)),
            http_status=200))
        return reply

    @staticmethod
    def _append(attempt: Attempt, row: JudgeCall) -> None:
        attempt.calls.append(row)
        _announce(row)
