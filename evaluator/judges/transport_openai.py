"""The openai-client transport: OpenAI and OpenAI-compatible servers (vLLM, Ollama, gateways).

Less than half of litellm's CPU per call. The request goes out through the client's documented
`client.post(path, cast_to=object, body=...)` (its "undocumented requests" path): the client
still authenticates, times out and raises its typed errors, but skips walking the request
through its TypedDict transforms and building pydantic models from the reply, which were a
third of its CPU per call here. The body is the judge's request as is, so a server's own
parameters pass through. The openai package is imported before the first request; its own
retries are off (the judge retries). One client per event loop and API key, because an async
HTTP client belongs to the loop that opened its connections.

HTTP goes through aiohttp (the client's documented `DefaultAioHttpClient`), not its default
httpx pool: with 64 calls in flight, httpx's pool walked every open connection on each request
(`_assign_requests_to_connections`, a readability probe per connection), ~0.7 ms of the 1.7 ms
the client cost per call here; aiohttp's pool takes a free connection from a deque. aiohttp
warns about a session left open when its loop ends, so a loop's clients are closed when the
loop shuts its async generators down (`asyncio.run` does) or by `close_http_clients()`.
"""

from __future__ import annotations

import asyncio
import re
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from evaluator.judges.config import JudgeConfig
from evaluator.judges.model_catalog import openai_model_info
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
        reasoning = REASONING_MODELS.match(self.model)
        self._token_param = "max_completion_tokens" if reasoning else "max_tokens"
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str | None, Any]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def structured_output_mode(self) -> str:
        """From litellm's price map; json_schema for models it does not know (local servers).
        Asked before the first request, so the openai import happens here, not mid-request."""
        # lazy: openai takes 0.3 s to import: only when a judge calls it
        import openai  # noqa: F401

        return self._info.structured_output_mode() if self._info else "json_schema"

    async def complete(self, request: dict[str, Any], api_key: str | None) -> Reply:
        body = {"model": self.model, **request}
        if self._token_param != "max_tokens":
            body[self._token_param] = body.pop("max_tokens")
        try:
            data = await (await self._client(api_key)).post("/chat/completions", cast_to=object, body=body)
        except ValueError as exc:  # a 200 whose body is not JSON
            raise MalformedReplyError(f"the reply body is not JSON: {exc}") from exc
        except Exception as exc:
            refused = _refused_connection(exc)
            if refused is None:
                raise
            raise refused from refused.__cause__
        try:
            return self._reply(data)
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise MalformedReplyError(
                f"the reply is not a chat completion: {str(data)[:200]!r}") from exc

    def _reply(self, data: dict[str, Any]) -> Reply:
        usage = data.get("usage") or {}
        input_tokens = usage.get("prompt_tokens")
        output_tokens = usage.get("completion_tokens")
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        cost = self._info.cost_usd(input_tokens, output_tokens, cached) if self._info else None
        choices = data["choices"]
        if not choices:
            return Reply("", None, input_tokens, output_tokens, cost)
        message = choices[0].get("message") or {}
        calls = message.get("tool_calls")
        text = (calls[0]["function"].get("arguments") if calls else message.get("content")) or ""
        return Reply(text, choices[0].get("finish_reason"), input_tokens, output_tokens, cost)

    async def _client(self, api_key: str | None) -> Any:
        loop = asyncio.get_running_loop()
        per_key = self._clients.get(loop)
        client = per_key.get(api_key) if per_key else None
        if client is None or client.is_closed():
            # lazy: openai takes 0.3 s to import: only when a judge calls it
            import openai

            key = api_key or (NO_KEY if self._base_url else None)
            client = openai.AsyncOpenAI(
                api_key=key, base_url=self._base_url, timeout=self._timeout, max_retries=0,
                http_client=openai.DefaultAioHttpClient(timeout=self._timeout))
            with self._lock:
                self._clients.setdefault(loop, {})[api_key] = client
            await _closed_with_loop(loop, client)
        return client


_loop_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[list[Any], AsyncGenerator[None, None]]] = weakref.WeakKeyDictionary()
_loop_clients_lock = threading.Lock()


async def _closing(clients: list[Any]) -> AsyncGenerator[None, None]:
    """Suspended until its loop shuts async generators down (or close_http_clients()), then
    closes the loop's clients."""
    try:
        yield
    finally:
        for client in clients:
            await client.close()
        clients.clear()


async def _closed_with_loop(loop: asyncio.AbstractEventLoop, client: Any) -> None:
    with _loop_clients_lock:
        found = _loop_clients.get(loop)
        first = found is None
        if found is None:
            clients: list[Any] = []
            found = _loop_clients[loop] = (clients, _closing(clients))
        found[0].append(client)
    if first:  # its first step registers the generator with the running loop
        await anext(found[1])


async def close_http_clients() -> None:
    """Close the openai clients opened on the running loop (for loops that end without
    `shutdown_asyncgens`, such as dramatiq's); their transports open new ones if called again."""
    loop = asyncio.get_running_loop()
    with _loop_clients_lock:
        found = _loop_clients.pop(loop, None)
    if found is not None:
        await found[1].aclose()


def _refused_connection(exc: Exception) -> Exception | None:
    """The aiohttp backend reports a connection that could not be made (refused, no route, DNS)
    as a connect *timeout*; under it lies the socket error (an OSError that is not a
    TimeoutError). Raised as the connection error it is: nothing was sent, nothing is billed,
    and the user is told the judge is unreachable, not slow."""
    import openai  # lazy: loaded by the first request already (_client)

    if not isinstance(exc, openai.APITimeoutError):
        return None
    cause = exc.__cause__ or exc.__context__
    for _ in range(8):
        if cause is None:
            return None
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            error = openai.APIConnectionError(request=exc.request)
            error.__cause__ = cause
            return error
        cause = cause.__cause__ or cause.__context__
    return None
