"""The retry wrapper: the outermost Sender of a judge call, which turns failed requests into
more tries or into the reason the call ends with.

A failed request is tried again after a backoff (retry.py says which failures are transient
and how long a server asked us to wait; evaluator.core.retry waits), up to
`limits.max_attempts` failures. A request the
breaker refused waits for the circuit, for at most `breaker.max_wait_s`, in service mode only:
`run` and `replay` fail the call at once (CIRCUIT_OPEN_REASON), and so does a call whose
retries meet an open circuit. A call with a fallback behind it (`attempt.may_defer`) never
waits and never fails here: it is Deferred to the next judge with the ledger rows spent.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

from evaluator.core.errors import JudgeError
from evaluator.core.retry import Backoff, RetryPolicy, retry_call_async
from evaluator.judges.attempt import Attempt, CallFailed, CircuitRefused, Deferred, Sender, WaitTooLong
from evaluator.judges.breaker import CircuitBreaker, CircuitState
from evaluator.judges.config import JudgeConfig
from evaluator.judges.retry import is_retryable, retry_after_s
from evaluator.judges.transport import Reply

CIRCUIT_OPEN_REASON = "judge unavailable (circuit open)"
"""Every call refused by an open circuit ends with exactly this reason, so summaries group them."""
MAX_ERROR_CHARS = 400


class _TryAgain(JudgeError):
    """A failed request that another try may mend (never leaves the retry wrapper)."""

    def __init__(self, failure: Exception):
        super().__init__(str(failure))
        self.failure = failure


def _wants_retry(exc: BaseException) -> bool:
    return isinstance(exc, _TryAgain)


def _asked_wait(exc: BaseException) -> float | None:
    return retry_after_s(exc.failure) if isinstance(exc, _TryAgain) else None


class Retrying:
    """A Sender running `inner` under core.retry (tenacity): `_once` decides whether a failure
    ends the call, `backoff` how long to wait before the next try. `waits_for_open_circuit()`
    is read on every refusal: a service worker turns it on at start."""

    def __init__(self, inner: Sender, config: JudgeConfig, breaker: CircuitBreaker,
                 backoff: Backoff, waits_for_open_circuit: Callable[[], bool]):
        self.inner = inner
        self.config = config
        self.breaker = breaker
        self.backoff = backoff
        self._waits_for_open_circuit = waits_for_open_circuit
        self._policy = RetryPolicy(backoff, is_retryable=_wants_retry, retry_after=_asked_wait)

    async def send(self, attempt: Attempt) -> Reply:
        """The reply; or CallFailed (the reason), or Deferred when `attempt.may_defer`."""
        if attempt.may_defer and self._circuit_is_open():
            raise Deferred("circuit open", attempt.calls)
        return await retry_call_async(functools.partial(self._once, attempt), self._policy)

    async def _once(self, attempt: Attempt) -> Reply:
        """One request (after waiting for the circuit when refused): the reply, _TryAgain when
        a retry is due, or the call's end."""
        paused_until: float | None = None
        while True:
            try:
                return await self.inner.send(attempt)
            except CircuitRefused:
                paused_until = await self._wait_for_circuit(attempt, paused_until)
            except WaitTooLong:
                raise Deferred("rate limit wait too long", attempt.calls) from None
            except Exception as exc:  # the transport's failure; the judge never raises
                attempt.failures += 1
                self._end_if_due(exc, attempt)
                raise _TryAgain(exc) from exc

    async def _wait_for_circuit(self, attempt: Attempt, paused_until: float | None) -> float:
        if attempt.may_defer:
            raise Deferred("circuit open", attempt.calls)
        if not self._waits_for_open_circuit() and self._circuit_is_open():
            raise CallFailed(CIRCUIT_OPEN_REASON)
        now = time.monotonic()
        paused_until = paused_until or now + self.config.breaker.max_wait_s
        if now >= paused_until:
            raise CallFailed(
                f"{CIRCUIT_OPEN_REASON}: waited {self.config.breaker.max_wait_s:g}s for judge "
                f"'{self.config.name}' to recover (last failure: {self.breaker.last_failure})")
        await asyncio.sleep(min(self.breaker.retry_in_s(), paused_until - now))
        return paused_until

    def _end_if_due(self, exc: Exception, attempt: Attempt) -> None:
        """Raise when the failure ends the call; return when another try is due."""
        ending = self._failure_ending(exc, attempt)
        tries = len(attempt.calls)
        if (ending is None and not attempt.may_defer and not self._waits_for_open_circuit()
                and self._circuit_is_open()):  # no waiting out the retries
            ending = (f"{CIRCUIT_OPEN_REASON} after {tries} attempt{'s' if tries > 1 else ''}: "
                      f"{describe_failure(exc, attempt.api_key)}")
        if ending is None:
            return
        if attempt.may_defer:  # a fallback may still answer
            raise Deferred(ending, attempt.calls)
        raise CallFailed(ending)

    def _failure_ending(self, exc: Exception, attempt: Attempt) -> str | None:
        described = describe_failure(exc, attempt.api_key)
        if not is_retryable(exc):
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500:
                hint = f"check the model name '{self.config.model}'"
                if self.config.api_key_env:
                    hint += f" and the API key in ${self.config.api_key_env}"
                return f"judge call rejected ({described}); {hint}"
            return f"judge call failed: {described}"
        if attempt.failures >= self.config.limits.max_attempts:
            return f"judge call failed after {len(attempt.calls)} attempts: {described}"
        return None

    def _circuit_is_open(self) -> bool:
        return self.breaker.state is CircuitState.OPEN


def describe_failure(exc: Exception, api_key: str | None) -> str:
    """`ClassName: message`, without litellm's repeated prefixes, short, never the API key."""
    name = type(exc).__name__
    message = str(exc)
    for prefix in (f"litellm.{name}: ", f"{name}: "):
        message = message.removeprefix(prefix)
    from evaluator.pii.redact import redact_secret  # lazy: the PII package loads on failures only

    message = redact_secret(message, api_key)  # as sent, re-cased, URL-encoded or in base64
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    return f"{name}: {message}"
