"""The openai-client transport: OpenAI and OpenAI-compatible servers (vLLM, Ollama, gateways).

Less than half of litellm's CPU per call. The openai package is imported on the first call;
its own retries are off (the judge retries). One client per event loop and API key, because an
async HTTP client belongs to the loop that opened its connections. Parameters the client does
not name (a server's extensions) travel in `extra_body`.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import weakref
from typing import Any

from evaluator.judge_config import JudgeConfig
from evaluator.judges.model_catalog import openai_model_info
from evaluator.judges.structured import reply_of
from evaluator.judges.transport import MalformedReplyError, Reply

NO_KEY = "no-key"
"""Sent when a judge with an api_base names no key variable: local servers want none."""
REASONING_MODELS = re.compile(r"^(o\d|gpt-5)")
"""OpenAI reasoning models take max_completion_tokens instead of max_tokens."""


class OpenAITransport:
    name = "openai"

    def __init__(self, config: JudgeConfig):
        self.model = (config.model or "").removeprefix("openai/")
        self._base_url = config.api_base
        self._timeout = config.limits.timeout_s
        self._info = openai_model_info(config.model or "")
        self._token_param = "max_completion_tokens" if REASONING_MODELS.match(self.model) else "max_tokens"
        self._named: frozenset[str] | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, Any]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def structured_output_mode(self) -> str:
        """From litellm's price map; json_schema for models it does not know (local servers).
        Asked before the first request, so the openai import happens here, not mid-request."""
        self._parameter_names()
        return self._info.structured_output_mode() if self._info else "json_schema"

    async def complete(self, request: dict[str, Any], api_key: str | None) -> Reply:
        client = self._client(api_key)
        arguments = self._arguments(request)
        try:
            response = await client.chat.completions.create(model=self.model, **arguments)
        except ValueError as exc:  # a 200 whose body is not JSON
            raise MalformedReplyError(f"the reply body is not a chat completion: {exc}") from exc
        if isinstance(response, str):  # a non-JSON content type comes back as text
            raise MalformedReplyError(f"the reply body is not a chat completion: {response[:200]!r}")
        usage = getattr(response, "usage", None)
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None) or 0
        cost = self._info.cost_usd(input_tokens, output_tokens, cached) if self._info else None
        text, finish_reason = reply_of(response)
        return Reply(text, finish_reason, input_tokens, output_tokens, cost)

    def _parameter_names(self) -> frozenset[str]:
        if self._named is None:
            from openai.resources.chat.completions import AsyncCompletions

            self._named = frozenset(inspect.signature(AsyncCompletions.create).parameters)
        return self._named

    def _arguments(self, request: dict[str, Any]) -> dict[str, Any]:
        named = self._parameter_names()
        arguments: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in request.items():
            if name == "max_tokens":
                name = self._token_param
            (arguments if name in named else extra)[name] = value
        if extra:
            arguments["extra_body"] = extra
        return arguments

    def _client(self, api_key: str | None) -> Any:
        loop = asyncio.get_running_loop()
        per_key = self._clients.get(loop)
        client = per_key.get(api_key) if per_key else None
        if client is None:
            import openai

            key = api_key or (NO_KEY if self._base_url else None)
            client = openai.AsyncOpenAI(api_key=key, base_url=self._base_url,
                                        timeout=self._timeout, max_retries=0)
            with self._lock:
                self._clients.setdefault(loop, {})[api_key] = client
        return client
