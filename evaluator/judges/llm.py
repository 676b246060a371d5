"""The litellm judge: one JudgeClient for every provider litellm reaches.

litellm is imported on the first call only (it takes seconds and ~200 MB), with its offline price
map. The judge asks for structured output (a JSON schema, else a forced tool call, else text),
retries transient failures itself with backoff (litellm's and the OpenAI SDK's own retries are
off so attempts are counted once), and never raises: a failed call is an `error` verdict with the
reason, an unusable reply is `unscored` with the raw reply kept, never a guess.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from evaluator.errors import ConfigError, VerdictParseError
from evaluator.judge_config import JudgeConfig
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.retry import Backoff, is_retryable, retry_after_s
from evaluator.parsing import parse_verdict
from evaluator.records import Trace
from evaluator.rubrics import RenderedPrompt, Rubric

STRUCTURED_OUTPUT_KEY = "structured_output"
"""Judge param that forces how the verdict is asked for; read here, never sent to the provider."""
MODES = ("json_schema", "tool", "text")
DEFAULT_MAX_TOKENS = 1024
TOOL_NAME = "submit_verdict"
TRUNCATED_REASON = "judge reply truncated (finish_reason=length)"
MAX_ERROR_CHARS = 400
RESERVED_PARAMS = frozenset(
    {"model", "messages", "api_key", "api_base", "base_url", "timeout", "num_retries",
     "max_retries", "response_format", "tools", "tool_choice", "stream"}
)
"""Set by the judge itself; a judge config may not override them (keys never live in configs)."""


def import_litellm() -> ModuleType:
    """Import litellm with the offline price map and without its stdout help banners."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def verdict_schema(labels: tuple[str, ...]) -> dict[str, Any]:
    """The verdict object: reasoning first (the model thinks before it labels), then a label."""
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "label": {"type": "string", "enum": list(labels)},
        },
        "required": ["reasoning", "label"],
        "additionalProperties": False,
    }


def structured_output_kwargs(mode: str, labels: tuple[str, ...]) -> dict[str, Any]:
    """The request arguments that ask for a verdict in `mode`."""
    if mode == "json_schema":
        schema = {"name": "verdict", "strict": True, "schema": verdict_schema(labels)}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "tool":
        function = {
            "name": TOOL_NAME,
            "description": "Submit the verdict: your reasoning first, then exactly one label.",
            "parameters": verdict_schema(labels),
        }
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
        }
    return {}


@dataclass
class _CallTally:
    """What the attempts of one judge call added up to."""

    attempts: int = 0
    failures: int = 0
    latency_s: float = 0.0
    responses: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    cost_unknown: bool = False

    def add_response(self, input_tokens: int | None, output_tokens: int | None,
                     cost_usd: float | None) -> None:
        self.responses += 1
        if input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + input_tokens
        if output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + output_tokens
        if cost_usd is None:
            self.cost_unknown = True
        self.cost_usd = None if self.cost_unknown else (self.cost_usd or 0.0) + cost_usd

    def verdict(self, **fields: Any) -> JudgeVerdict:
        return JudgeVerdict(
            input_tokens=self.input_tokens, output_tokens=self.output_tokens,
            cost_usd=self.cost_usd, latency_ms=round(self.latency_s * 1000, 3),
            attempts=self.attempts, **fields,
        )


class LiteLLMJudge:
    """JudgeClient calling `litellm.acompletion` for a JudgeConfig of kind "litellm".

    At most `limits.max_in_flight` HTTP requests run at once per instance and event loop.
    `backoff_base_s` is the first retry's mean wait scale; tests make it tiny.
    """

    def __init__(self, config: JudgeConfig, *, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 20.0, retry_after_cap_s: float = 60.0,
                 rng: random.Random | None = None):
        if config.kind != "litellm" or not config.model:
            raise ConfigError(f"judge '{config.name}': LiteLLMJudge needs kind 'litellm' and a model")
        params = dict(config.params)
        self._forced_mode = params.pop(STRUCTURED_OUTPUT_KEY, None)
        if self._forced_mode is not None and self._forced_mode not in MODES:
            raise ConfigError(f"judge '{config.name}': params.{STRUCTURED_OUTPUT_KEY} must be one of "
                              f"{', '.join(MODES)}, not {self._forced_mode!r}")
        reserved = sorted(RESERVED_PARAMS & params.keys())
        if reserved:
            raise ConfigError(f"judge '{config.name}': params may not set {', '.join(reserved)}; "
                              "use model, api_base, api_key_env and limits instead")
        self.config = config
        self.name = config.name
        self.config_hash = config.config_hash
        self._max_tokens = int(params.pop("max_tokens", DEFAULT_MAX_TOKENS))
        self._base_kwargs: dict[str, Any] = {
            **params, "model": config.model, "timeout": config.limits.timeout_s,
            "num_retries": 0, "max_retries": 0,
        }
        if config.api_base:
            self._base_kwargs["api_base"] = config.api_base
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, retry_after_cap_s,
                                rng or random.Random())
        self._litellm: ModuleType | None = None
        self._mode: str | None = None
        self._litellm_prices_unknown = False
        self._requests: dict[tuple[str, ...], dict[str, Any]] = {}
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._slots_lock = threading.Lock()

    @property
    def mode(self) -> str:
        """How the verdict is asked for: json_schema, tool or text (decided on first use)."""
        if self._mode is None:
            self._mode = self._forced_mode or self._detect_mode(self._client())
        return self._mode

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt) -> JudgeVerdict:
        env = self.config.api_key_env
        api_key = os.environ.get(env) if env else None
        if env and not api_key:
            return JudgeVerdict(status="error", attempts=0, reason=(
                f"judge '{self.name}' needs an API key: set the environment variable {env}"))
        labels = tuple(rubric.labels)
        request = self._requests.get(labels)
        if request is None:
            request = self._requests[labels] = {
                **self._base_kwargs, **structured_output_kwargs(self.mode, labels)}
        request = {**request, "messages": [dict(message) for message in prompt.messages]}
        if api_key:
            request["api_key"] = api_key
        return await self._call(rubric, labels, request)

    async def _call(self, rubric: Rubric, labels: tuple[str, ...],
                    request: dict[str, Any]) -> JudgeVerdict:
        litellm = self._client()
        slots = self._slots_for_this_loop()
        tally = _CallTally()
        max_tokens = self._max_tokens
        extended = False
        while True:
            tally.attempts += 1
            failure: Exception | None = None
            async with slots:
                started = time.perf_counter()
                try:
                    response = await litellm.acompletion(**request, max_tokens=max_tokens)
                except Exception as exc:  # classified below; the judge never raises
                    failure = exc
                tally.latency_s += time.perf_counter() - started
            if failure is not None:
                tally.failures += 1
                verdict = self._failure_verdict(failure, tally, request.get("api_key"))
                if verdict is not None:
                    return verdict
                await asyncio.sleep(self._backoff.delay_s(tally.failures, retry_after_s(failure)))
                continue
            usage = getattr(response, "usage", None)
            input_tokens = getattr(usage, "prompt_tokens", None)
            output_tokens = getattr(usage, "completion_tokens", None)
            tally.add_response(input_tokens, output_tokens,
                               self._cost(response, input_tokens, output_tokens))
            raw, finish_reason = _reply_of(response)
            if finish_reason != "length":
                return self._parsed_verdict(rubric, labels, raw, tally)
            if extended:
                return tally.verdict(status="unscored", reason=TRUNCATED_REASON, raw_reply=raw)
            extended, max_tokens = True, max_tokens * 2

    def _parsed_verdict(self, rubric: Rubric, labels: tuple[str, ...], raw: str,
                        tally: _CallTally) -> JudgeVerdict:
        try:
            parsed = parse_verdict(raw, labels)
        except VerdictParseError as exc:
            return tally.verdict(status="unscored", reason=str(exc), raw_reply=raw)
        return tally.verdict(status="scored", label=parsed.label,
                             score=rubric.score_for(parsed.label), reasoning=parsed.reasoning,
                             raw_reply=raw)

    def _failure_verdict(self, exc: Exception, tally: _CallTally,
                         api_key: str | None) -> JudgeVerdict | None:
        """The error verdict that ends the call, or None when another attempt is due."""
        described = _describe(exc, api_key)
        if not is_retryable(exc):
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500:
                hint = f"check the model name '{self.config.model}'"
                if self.config.api_key_env:
                    hint += f" and the API key in ${self.config.api_key_env}"
                return tally.verdict(status="error", reason=f"judge call rejected ({described}); {hint}")
            return tally.verdict(status="error", reason=f"judge call failed: {described}")
        if tally.failures >= self.config.limits.max_attempts:
            return tally.verdict(status="error", reason=(
                f"judge call failed after {tally.attempts} attempts: {described}"))
        return None

    def _cost(self, response: Any, input_tokens: int | None,
              output_tokens: int | None) -> float | None:
        """USD from the config's prices, else litellm's price map; None when unknown."""
        prices = self.config.prices
        if prices is not None:
            if input_tokens is None or output_tokens is None:
                return None
            return (input_tokens * prices.input_per_mtok
                    + output_tokens * prices.output_per_mtok) / 1_000_000
        if self._litellm_prices_unknown:
            return None
        already_priced = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if already_priced is not None:  # litellm prices every response it returns (documented)
            return float(already_priced)
        try:
            return float(self._client().completion_cost(completion_response=response))
        except Exception:  # model not in litellm's map: unknown for good, stop asking
            self._litellm_prices_unknown = True
            return None

    def _client(self) -> ModuleType:
        if self._litellm is None:
            self._litellm = import_litellm()
        return self._litellm

    def _detect_mode(self, litellm: ModuleType) -> str:
        """json_schema where supported or the model is unknown to litellm (usually an
        OpenAI-compatible server), else a forced tool call where supported, else text."""
        model = self.config.model
        try:
            if litellm.supports_response_schema(model=model):
                return "json_schema"
            litellm.get_model_info(model=model)
        except Exception:
            return "json_schema"
        return "tool" if litellm.supports_function_calling(model=model) else "text"

    def _slots_for_this_loop(self) -> asyncio.Semaphore:
        """The in-flight limit, one semaphore per event loop (asyncio objects are loop-bound)."""
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            with self._slots_lock:
                slots = self._slots.setdefault(
                    loop, asyncio.Semaphore(self.config.limits.max_in_flight))
        return slots


def _reply_of(response: Any) -> tuple[str, str | None]:
    """(verdict text, finish reason): the first tool call's arguments, else the content."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        return "", None
    message = getattr(choices[0], "message", None)
    calls = getattr(message, "tool_calls", None)
    if calls:
        return calls[0].function.arguments or "", choices[0].finish_reason
    return getattr(message, "content", None) or "", choices[0].finish_reason


def _describe(exc: Exception, api_key: str | None) -> str:
    """`ClassName: message`, without litellm's repeated prefixes, short, never the API key."""
    name = type(exc).__name__
    message = str(exc)
    for prefix in (f"litellm.{name}: ", f"{name}: "):
        message = message.removeprefix(prefix)
    if api_key:
        message = message.replace(api_key, "[redacted]")
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    return f"{name}: {message}"
