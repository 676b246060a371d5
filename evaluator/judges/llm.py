"""The LLM judge call itself: one JudgeClient for every model, over the openai client or litellm.

It builds the request (the judge's parameters, the structured-output arguments for the rubric's
label menu (structured.py), a seed offset per repeated sample), sends it down the attempt chain
(attempt.py: retries, in-flight limit, breaker, rate limit, ledger, transport), asks once more
with twice the room when the reply was cut short, and parses the verdict. It never raises: a
failed call is an `error` verdict with the reason, an unusable reply is `unscored` with the raw
reply kept, never a guess. What wraps it (key check, cache, fallbacks, panels, budget) is
assembled by factory.py.
"""

from __future__ import annotations

import os
from typing import Any

from evaluator.core.errors import ConfigError, VerdictParseError
from evaluator.core.records import Trace, canonical_json, supported_share
from evaluator.core.rows import JudgeCall
from evaluator.judges.attempt import Attempt, CallFailed, Sender
from evaluator.judges.base import JudgeVerdict, verdict_from
from evaluator.judges.config import JudgeConfig
from evaluator.judges.parsing import parse_verdict
from evaluator.judges.structured import MODES, structured_output_kwargs
from evaluator.judges.transport import Transport
from evaluator.rubrics import RenderedPrompt, Rubric

STRUCTURED_OUTPUT_KEY = "structured_output"
"""Judge param that forces how the verdict is asked for; read here, never sent to the provider."""
DEFAULT_MAX_TOKENS = 1024
TRUNCATED_REASON = "judge reply truncated (finish_reason=length)"
RESERVED_PARAMS = frozenset(
    {"model", "messages", "api_key", "api_base", "base_url", "timeout", "num_retries",
     "max_retries", "response_format", "tools", "tool_choice", "stream"}
)
"""Set by the judge itself; a judge config may not override them (keys never live in configs)."""


def judge_params(config: JudgeConfig) -> tuple[str | None, int, dict[str, Any]]:
    """The forced structured-output mode, max_tokens and the parameters sent to the provider;
    ConfigError for a config LLMJudge cannot run."""
    if config.kind != "litellm" or not config.model:
        raise ConfigError(f"judge '{config.name}': LLMJudge needs kind 'litellm' and a model")
    params = dict(config.params)
    forced_mode = params.pop(STRUCTURED_OUTPUT_KEY, None)
    if forced_mode is not None and forced_mode not in MODES:
        raise ConfigError(f"judge '{config.name}': params.{STRUCTURED_OUTPUT_KEY} must be one "
                          f"of {', '.join(MODES)}, not {forced_mode!r}")
    reserved = sorted(RESERVED_PARAMS & params.keys())
    if reserved:
        raise ConfigError(f"judge '{config.name}': params may not set {', '.join(reserved)}; "
                          "use model, api_base, api_key_env and limits instead")
    return forced_mode, int(params.pop("max_tokens", DEFAULT_MAX_TOKENS)), params


class LLMJudge:
    """The JudgeLink at the heart of a judge config of kind "litellm" (see `client` for the
    path); `sender` is the attempt chain ending in `transport`."""

    def __init__(self, config: JudgeConfig, transport: Transport, sender: Sender):
        self._forced_mode, self._max_tokens, self.params = judge_params(config)
        self.config = config
        self.name = config.name
        self.config_hash = config.config_hash
        self.transport = transport
        self.sender = sender
        self._mode: str | None = None
        self._requests: dict[tuple[tuple[str, ...], bool], tuple[dict[str, Any], str]] = {}

    @property
    def mode(self) -> str:
        """How the verdict is asked for: json_schema, tool or text (decided on first use)."""
        if self._mode is None:
            self._mode = self._forced_mode or self.transport.structured_output_mode()
        return self._mode

    def identity(self, labels: tuple[str, ...], claims: bool = False) -> str:
        """Everything that shapes a request for this label menu (and claim list) but its
        messages and sample (model, api_base, parameters, max_tokens, mode, labels): what the
        cache keys on."""
        return self._request_for(labels, claims)[1]

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt, *,
                    sample: int = 0, may_defer: bool = False) -> JudgeVerdict:
        labels = tuple(rubric.labels)
        request = {**self._request_for(labels, rubric.claims)[0],
                   "messages": [dict(message) for message in prompt.messages]}
        if sample and isinstance(self.params.get("seed"), int):
            request["seed"] = self.params["seed"] + sample
        env = self.config.api_key_env
        attempt = Attempt(request, self._max_tokens, os.environ.get(env) if env else None,
                          sample, may_defer)
        try:
            reply = await self.sender.send(attempt)
            if reply.finish_reason == "length":  # once more with twice the room
                attempt.max_tokens *= 2
                reply = await self.sender.send(attempt)
                if reply.finish_reason == "length":
                    return verdict_from(attempt.calls, status="unscored",
                                        reason=TRUNCATED_REASON, raw_reply=reply.text)
        except CallFailed as failed:
            return verdict_from(attempt.calls, status="error", reason=str(failed))
        return self._parsed_verdict(rubric, labels, reply.text, attempt.calls)

    def _request_for(self, labels: tuple[str, ...], claims: bool) -> tuple[dict[str, Any], str]:
        """The request arguments for a label menu, and the judge identity the cache keys on."""
        found = self._requests.get((labels, claims))
        if found is None:
            shape: dict[str, Any] = {
                "model": self.config.model, "api_base": self.config.api_base,
                "params": self.params, "max_tokens": self._max_tokens, "mode": self.mode,
                "labels": labels}
            if claims:  # added only then: identities of rubrics without claims stay as they were
                shape["claims"] = True
            request = {**self.params, **structured_output_kwargs(self.mode, labels, claims)}
            found = self._requests[(labels, claims)] = (request, canonical_json(shape))
        return found

    @staticmethod
    def _parsed_verdict(rubric: Rubric, labels: tuple[str, ...], raw: str,
                        calls: list[JudgeCall]) -> JudgeVerdict:
        try:
            parsed = parse_verdict(raw, labels, with_claims=rubric.claims)
        except VerdictParseError as exc:
            return verdict_from(calls, status="unscored", reason=str(exc), raw_reply=raw)
        share = supported_share(parsed.claims or ())
        return verdict_from(calls, status="scored", label=parsed.label,
                            score=rubric.score_for(parsed.label) if share is None else share,
                            reasoning=parsed.reasoning, raw_reply=raw,
                            claims=list(parsed.claims) if parsed.claims is not None else None)
