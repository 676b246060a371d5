"""The LLM judge: one JudgeClient for every model, over the openai client or litellm.

The judge owns everything around a model request, the same on both transports (transport.py):
the response cache (looked up first), fallback judges, the circuit breaker, the shared rate
limit, at most `limits.max_in_flight` requests per event loop, retries with backoff, one
retry with twice the room for a truncated reply, and a ledger row per attempt. It asks for
structured output (structured.py) and never raises: a failed call is an `error` verdict with
the reason, an unusable reply is `unscored` with the raw reply kept, never a guess.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluator.core.errors import ConfigError, VerdictParseError
from evaluator.core.retry import Backoff
from evaluator.judges.config import JudgeConfig
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.breaker import CircuitState
from evaluator.judges.cache import CachedVerdict, cache_key, is_deterministic
from evaluator.judges.ledger import totals
from evaluator.core.rows import CACHED, ERROR, OK, JudgeCall
from evaluator.judges.retry import (
    counts_against_judge,
    is_retryable,
    is_timeout,
    retry_after_s,
)
from evaluator.judges.preflight import needs_key
from evaluator.judges.runtime import JudgeRuntime, default_runtime
from evaluator.judges.structured import MODES, structured_output_kwargs
from evaluator.judges.transport import Reply, Transport, build_transport
from evaluator.judges.parsing import parse_verdict
from evaluator.core.records import Trace, canonical_json
from evaluator.rubrics import RenderedPrompt, Rubric

log = logging.getLogger(__name__)

STRUCTURED_OUTPUT_KEY = "structured_output"
"""Judge param that forces how the verdict is asked for; read here, never sent to the provider."""
DEFAULT_MAX_TOKENS = 1024
TRUNCATED_REASON = "judge reply truncated (finish_reason=length)"
CIRCUIT_OPEN_REASON = "judge unavailable (circuit open)"
"""Every call refused by an open circuit ends with exactly this reason, so summaries group them."""
MAX_ERROR_CHARS = 400
RESERVED_PARAMS = frozenset(
    {"model", "messages", "api_key", "api_base", "base_url", "timeout", "num_retries",
     "max_retries", "response_format", "tools", "tool_choice", "stream"}
)
"""Set by the judge itself; a judge config may not override them (keys never live in configs)."""


class _Refused:
    """The circuit breaker did not admit the call."""


_REFUSED = _Refused()
_Attempt = tuple[JudgeCall, Reply | None, Exception | None]
"""One HTTP request's ledger row, and its reply or the exception it raised."""


@dataclass(slots=True)
class _Deferred:
    """This judge cannot take the call now (circuit open, rate limit too slow): try the next."""

    why: str
    calls: list[JudgeCall]


def _verdict(calls: list[JudgeCall], **fields: Any) -> JudgeVerdict:
    summed = totals(calls)
    return JudgeVerdict(input_tokens=summed.input_tokens, output_tokens=summed.output_tokens,
                        cost_usd=summed.cost_usd, latency_ms=summed.latency_ms,
                        attempts=summed.attempts, calls=calls, **fields)


class LLMJudge:
    """JudgeClient for a JudgeConfig of kind "litellm" (any model; see `client` for the path).

    `fallbacks` are tried in order when this judge defers; the last one never defers.
    `backoff_base_s` is the first retry's mean wait scale; tests make it tiny.
    """

    def __init__(self, config: JudgeConfig, *, runtime: JudgeRuntime | None = None,
                 fallbacks: Sequence[LLMJudge] = (), transport: Transport | None = None,
                 backoff_base_s: float = 0.5, backoff_cap_s: float = 20.0,
                 retry_after_cap_s: float = 60.0, rng: random.Random | None = None):
        if config.kind != "litellm" or not config.model:
            raise ConfigError(f"judge '{config.name}': LLMJudge needs kind 'litellm' and a model")
        params = dict(config.params)
        self._forced_mode = params.pop(STRUCTURED_OUTPUT_KEY, None)
        if self._forced_mode is not None and self._forced_mode not in MODES:
            raise ConfigError(f"judge '{config.name}': params.{STRUCTURED_OUTPUT_KEY} must be one "
                              f"of {', '.join(MODES)}, not {self._forced_mode!r}")
        reserved = sorted(RESERVED_PARAMS & params.keys())
        if reserved:
            raise ConfigError(f"judge '{config.name}': params may not set {', '.join(reserved)}; "
                              "use model, api_base, api_key_env and limits instead")
        self.config = config
        self.name = config.name
        self.config_hash = config.config_hash
        self._max_tokens = int(params.pop("max_tokens", DEFAULT_MAX_TOKENS))
        self._params = params
        self.transport = transport or build_transport(config)
        self.runtime = runtime or default_runtime()
        self.breaker = self.runtime.breaker(config)
        self._limiter = self.runtime.limiter(config)
        self._wait_log = self.runtime.wait_log(config.name)
        self._cache = (self.runtime.cache if config.cache.enabled and is_deterministic(params)
                       else None)
        self.fallbacks = tuple(fallbacks)
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, retry_after_cap_s,
                                rng or random.Random())
        self._mode: str | None = None
        self._requests: dict[tuple[str, ...], tuple[dict[str, Any], str]] = {}
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._slots_lock = threading.Lock()

    @property
    def mode(self) -> str:
        """How the verdict is asked for: json_schema, tool or text (decided on first use)."""
        if self._mode is None:
            self._mode = self._forced_mode or self.transport.structured_output_mode()
        return self._mode

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt, *,
                    sample: int = 0) -> JudgeVerdict:
        """`sample` numbers repeated judgings of one prompt (a seed, if set, is offset by it)."""
        chain = (self, *self.fallbacks)
        carried: list[JudgeCall] = []
        for candidate in chain[:-1]:
            outcome = await candidate._judge_here(rubric, prompt, sample, may_defer=True)
            if not isinstance(outcome, _Deferred):
                return self._answered_by(candidate, outcome, carried)
            log.debug("judge %s deferred to its fallback: %s", candidate.name, outcome.why)
            carried += outcome.calls
        last = chain[-1]
        outcome = await last._judge_here(rubric, prompt, sample, may_defer=False)
        assert not isinstance(outcome, _Deferred), "the last judge of a chain never defers"
        return self._answered_by(last, outcome, carried)

    def _answered_by(self, candidate: LLMJudge, verdict: JudgeVerdict,
                     carried: list[JudgeCall]) -> JudgeVerdict:
        if carried:
            fields = {name: getattr(verdict, name) for name in
                      ("status", "label", "score", "reasoning", "reason", "raw_reply", "cached")}
            verdict = _verdict(carried + verdict.calls, **fields)
        if candidate is not self:
            verdict.judge, verdict.judge_hash = candidate.name, candidate.config_hash
        return verdict

    async def _judge_here(self, rubric: Rubric, prompt: RenderedPrompt, sample: int,
                          may_defer: bool) -> JudgeVerdict | _Deferred:
        env = self.config.api_key_env
        api_key = os.environ.get(env) if env else None
        if needs_key(self.config):  # with an api_base, no key is sent: local servers want none
            return JudgeVerdict(status="error", attempts=0, reason=(
                f"judge '{self.name}' needs an API key: set the environment variable {env}"))
        labels = tuple(rubric.labels)
        request, identity = self._request_for(labels)
        request = {**request, "messages": [dict(message) for message in prompt.messages]}
        if sample and isinstance(self._params.get("seed"), int):
            request["seed"] = self._params["seed"] + sample
        key = None
        if self._cache is not None:
            started = time.perf_counter()
            key = cache_key(identity, prompt.messages, sample)
            found = await self._cache.get(key)
            if found is not None:
                return self._cache_hit(found, sample, time.perf_counter() - started)
        if may_defer and self.breaker.state is CircuitState.OPEN:
            return _Deferred("circuit open", [])
        return await self._call(rubric, labels, request, api_key, sample, key, may_defer)

    async def _call(self, rubric: Rubric, labels: tuple[str, ...], request: dict[str, Any],
                    api_key: str | None, sample: int, key: str | None,
                    may_defer: bool) -> JudgeVerdict | _Deferred:
        calls: list[JudgeCall] = []
        prompt_tokens = sum(len(m.get("content") or "") for m in request["messages"]) // 4
        max_tokens, extended, failures = self._max_tokens, False, 0
        paused_until: float | None = None
        while True:
            bound = self.config.limits.fallback_after_wait_s if may_defer and not calls else None
            attempted = await self._attempt(request, max_tokens, prompt_tokens + max_tokens,
                                            bound, api_key, sample, len(calls) + 1)
            if attempted is _REFUSED:
                if may_defer:
                    return _Deferred("circuit open", calls)
                if not self.runtime.wait_for_open_circuit and self._circuit_is_open():
                    return _verdict(calls, status="error", reason=CIRCUIT_OPEN_REASON)
                now = time.monotonic()
                paused_until = paused_until or now + self.config.breaker.max_wait_s
                if now >= paused_until:
                    return _verdict(calls, status="error", reason=self._circuit_open_reason())
                await asyncio.sleep(min(self.breaker.retry_in_s(), paused_until - now))
                continue
            paused_until = None
            if attempted is None:
                return _Deferred("rate limit wait too long", calls)
            call, reply, failure = attempted
            calls.append(call)
            if failure is not None:
                failures += 1
                ending = self._failure_ending(failure, failures, len(calls), api_key)
                if (ending is None and not may_defer and not self.runtime.wait_for_open_circuit
                        and self._circuit_is_open()):  # no waiting out the retries
                    tries = f"{len(calls)} attempt{'s' if len(calls) > 1 else ''}"
                    ending = (f"{CIRCUIT_OPEN_REASON} after {tries}: "
                              f"{describe_failure(failure, api_key)}")
                if ending is not None:
                    if may_defer:  # a fallback may still answer
                        return _Deferred(ending, calls)
                    return _verdict(calls, status="error", reason=ending)
                await asyncio.sleep(self._backoff.delay_s(failures, retry_after_s(failure)))
                continue
            assert reply is not None
            if reply.finish_reason != "length":
                verdict = self._parsed_verdict(rubric, labels, reply.text, calls)
                if key is not None and self._cache is not None and verdict.status == "scored":
                    await self._cache.put(key, CachedVerdict(
                        verdict.label or "", verdict.score, verdict.reasoning, verdict.raw_reply),
                        self.config.cache.ttl_s)
                return verdict
            if extended:
                return _verdict(calls, status="unscored", reason=TRUNCATED_REASON,
                                raw_reply=reply.text)
            extended, max_tokens = True, max_tokens * 2

    async def _attempt(self, request: dict[str, Any], max_tokens: int, tokens: int,
                       bound: float | None, api_key: str | None, sample: int, attempt: int,
                       ) -> _Attempt | _Refused | None:
        """One HTTP request: an in-flight slot, then the breaker's admission (asked with the
        slot held, so calls queued for a slot while the circuit opened do not go out), then the
        rate limit, booked right before the send (a booking made earlier would let requests
        held up by the slots bunch up), then the send; the breaker hears how it went.
        _REFUSED when the circuit refused the call, None when the rate limit would make the
        request wait longer than `bound`."""
        async with self._slots_for_this_loop():
            admitted, ticket = self.breaker.try_acquire()
            if not admitted:
                return _REFUSED
            try:
                return await self._send(request, max_tokens, tokens, bound, api_key, ticket,
                                        sample, attempt)
            except asyncio.CancelledError:
                self.breaker.abandon(ticket)
                raise

    async def _send(self, request: dict[str, Any], max_tokens: int, tokens: int,
                    bound: float | None, api_key: str | None, ticket: int, sample: int,
                    attempt: int) -> _Attempt | None:
        if self._limiter is not None:
            wait = await self._limiter.reserve(tokens, bound)
            if wait is None:
                self.breaker.abandon(ticket)
                return None
            if wait > 0:
                self._wait_log.add(wait)
                await asyncio.sleep(wait)
        started = time.perf_counter()
        try:
            reply = await self.transport.complete({**request, "max_tokens": max_tokens}, api_key)
        except Exception as exc:  # classified by the caller; the judge never raises
            latency_ms = (time.perf_counter() - started) * 1000
            self.breaker.record(counts_against_judge(exc), ticket, type(exc).__name__)
            timed_out = is_timeout(exc)  # litellm gives its client-side timeouts a 408
            status = None if timed_out else getattr(exc, "status_code", None)
            return self._ledger_row(
                sample, attempt, ERROR, latency_ms, error_class=type(exc).__name__,
                http_status=status if isinstance(status, int) else None,
                cost_usd=None if timed_out else 0.0), None, exc
        latency_ms = (time.perf_counter() - started) * 1000
        self.breaker.record(False, ticket)
        row = self._ledger_row(sample, attempt, OK, latency_ms, http_status=200,
                               input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                               cost_usd=self._price(reply))
        return row, reply, None

    def _ledger_row(self, sample: int, attempt: int, status: str, latency_ms: float,
                    **fields: Any) -> JudgeCall:
        return JudgeCall.new(judge=self.name, model=self.config.model,
                             transport=self.transport.name, sample=sample, attempt=attempt,
                             status=status, latency_ms=round(latency_ms, 3), **fields)

    def _cache_hit(self, found: CachedVerdict, sample: int, lookup_s: float) -> JudgeVerdict:
        row = self._ledger_row(sample, 0, CACHED, lookup_s * 1000, cached=True, input_tokens=0,
                               output_tokens=0, cost_usd=0.0)
        return _verdict([row], status="scored", label=found.label, score=found.score,
                        reasoning=found.reasoning, raw_reply=found.raw_reply, cached=True)

    def _request_for(self, labels: tuple[str, ...]) -> tuple[dict[str, Any], str]:
        """The request arguments for a label menu, and the judge identity the cache keys on."""
        found = self._requests.get(labels)
        if found is None:
            identity = canonical_json({
                "model": self.config.model, "api_base": self.config.api_base,
                "params": self._params, "max_tokens": self._max_tokens, "mode": self.mode,
                "labels": labels})
            request = {**self._params, **structured_output_kwargs(self.mode, labels)}
            found = self._requests[labels] = (request, identity)
        return found

    def _parsed_verdict(self, rubric: Rubric, labels: tuple[str, ...], raw: str,
                        calls: list[JudgeCall]) -> JudgeVerdict:
        try:
            parsed = parse_verdict(raw, labels)
        except VerdictParseError as exc:
            return _verdict(calls, status="unscored", reason=str(exc), raw_reply=raw)
        return _verdict(calls, status="scored", label=parsed.label,
                        score=rubric.score_for(parsed.label), reasoning=parsed.reasoning,
                        raw_reply=raw)

    def _failure_ending(self, exc: Exception, failures: int, attempts: int,
                        api_key: str | None) -> str | None:
        """The reason that ends the call in an error, or None when another attempt is due."""
        described = describe_failure(exc, api_key)
        if not is_retryable(exc):
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500:
                hint = f"check the model name '{self.config.model}'"
                if self.config.api_key_env:
                    hint += f" and the API key in ${self.config.api_key_env}"
                return f"judge call rejected ({described}); {hint}"
            return f"judge call failed: {described}"
        if failures >= self.config.limits.max_attempts:
            return f"judge call failed after {attempts} attempts: {described}"
        return None

    def _circuit_is_open(self) -> bool:
        return self.breaker.state is CircuitState.OPEN

    def _circuit_open_reason(self) -> str:
        return (f"{CIRCUIT_OPEN_REASON}: waited {self.config.breaker.max_wait_s:g}s for judge "
                f"'{self.name}' to recover (last failure: {self.breaker.last_failure})")

    def _price(self, reply: Reply) -> float | None:
        """USD from the config's prices, else litellm's price map; None when unknown."""
        prices = self.config.prices
        if prices is None:
            return reply.cost_usd
        if reply.input_tokens is None or reply.output_tokens is None:
            return None
        return (reply.input_tokens * prices.input_per_mtok
                + reply.output_tokens * prices.output_per_mtok) / 1_000_000

    def _slots_for_this_loop(self) -> asyncio.Semaphore:
        """The in-flight limit, one semaphore per event loop (asyncio objects are loop-bound)."""
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            with self._slots_lock:
                slots = self._slots.setdefault(
                    loop, asyncio.Semaphore(self.config.limits.max_in_flight))
        return slots


def describe_failure(exc: Exception, api_key: str | None) -> str:
    """`ClassName: message`, without litellm's repeated prefixes, short, never the API key."""
    name = type(exc).__name__
    message = str(exc)
    for prefix in (f"litellm.{name}: ", f"{name}: "):
        message = message.removeprefix(prefix)
    from evaluator.pii.redact import redact_secret  # loads the PII package: failures only

    message = redact_secret(message, api_key)  # as sent, re-cased, URL-encoded or in base64
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    return f"{name}: {message}"
