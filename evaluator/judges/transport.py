"""The transport interface: how one HTTP request reaches a model, and the reply it returns.

The judge (llm.py) owns everything around the request (retries, circuit breaker, rate limits,
cache, ledger); a transport only sends it. Two exist: the openai transport for
OpenAI-compatible endpoints (OpenAI, Azure's v1 API, vLLM, Ollama, gateways: aiohttp with the
openai client's URL, headers and errors, ~0.3 ms CPU per call here; the client's own call
cost ~1.9) and litellm for every other provider (~4.5 ms). Transports raise their client's
exceptions; retry.py classifies them by class name and HTTP status, which both clients share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from evaluator.core.errors import ConfigError
from evaluator.judges.config import JudgeConfig


@dataclass(slots=True)
class Reply:
    text: str
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    """List price from litellm's price map; None when the model is not in it."""


class MalformedReplyError(Exception):
    """An HTTP 200 whose body is not a chat completion; transient like a 5xx."""

    status_code = 502


class Transport(Protocol):
    name: str

    def structured_output_mode(self) -> str:
        """json_schema, tool or text: what this model supports best (may import the client)."""

    async def complete(self, request: dict[str, Any], api_key: str | None) -> Reply:
        """Send `request` (messages, max_tokens, parameters, structured-output arguments)."""


def uses_openai_client(config: JudgeConfig) -> bool:
    """`client: auto` picks the openai client for `openai/...` models, with or without api_base."""
    if config.client == "auto":
        return config.model is not None and config.model.startswith("openai/")
    return config.client == "openai"


def build_transport(config: JudgeConfig) -> Transport:
    if not config.model:
        raise ConfigError(f"judge '{config.name}': a model is required")
    if uses_openai_client(config):
        # lazy: only the configured transport's client library loads (litellm takes ~1 s)
        from evaluator.judges.transport_openai import OpenAITransport

        return OpenAITransport(config)
    # lazy: only the configured transport's client library loads (litellm takes ~1 s)
    from evaluator.judges.transport_litellm import LiteLLMTransport

    return LiteLLMTransport(config)
