"""The openai-client transport: OpenAI and OpenAI-compatible servers (vLLM, Ollama, gateways).

The request is posted with aiohttp directly, to the URL and with the headers the openai client
would send (its `base_url`, which reads OPENAI_BASE_URL; its `default_headers`: user agent,
organization and project; the key as a bearer token). A failed request raises the client's own
typed errors (`APIStatusError` subclasses built by the client from the reply, `APITimeoutError`,
`APIConnectionError`), which retry.py classifies. The body is the judge's request as is, so a
server's own parameters pass through. Why not the client's own `post`: with 64 calls in flight
against a local server at 200 ms, its request building (options models, httpx2 request and
headers, the httpx2-over-aiohttp adapter) cost ~1.9 ms CPU per call on the event loop, against
~0.3 ms for aiohttp alone: the loop saturated at ~0.6 of in-flight/latency and every call
queued behind it (issue 23). One session per event loop and API key, because an HTTP session
belongs to the loop that opened its connections; its pool is unbounded, as the judge's
`max_in_flight` bounds the requests. aiohttp warns about a session left open when its loop
ends, so a loop's clients are closed when the loop shuts its async generators down
(`asyncio.run` does) or by `close_http_clients()`.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.parse
import urllib.request
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
            asyncio.AbstractEventLoop, dict[str | None, HTTPClient]] = weakref.WeakKeyDictionary()
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
        data = await (await self._client(api_key)).post(body)
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

    async def _client(self, api_key: str | None) -> HTTPClient:
        loop = asyncio.get_running_loop()
        per_key = self._clients.get(loop)
        client = per_key.get(api_key) if per_key else None
        if client is None or client.is_closed():
            client = HTTPClient(self._sdk(api_key), self._timeout)
            with self._lock:
                self._clients.setdefault(loop, {})[api_key] = client
            await _closed_with_loop(loop, client)
        return client

    def _sdk(self, api_key: str | None) -> Any:
        return openai_client(api_key or (NO_KEY if self._base_url else None), self._base_url)


_openai_clients: dict[tuple[str | None, str | None], Any] = {}
_openai_clients_lock = threading.Lock()


def openai_client(api_key: str | None, base_url: str | None) -> Any:
    """The process's openai client for a key and server, on every loop and for every judge:
    what a request carries (URL, headers) and how a failed one is raised; it never sends (so its
    timeout is not ours). Building one took ~24 ms on the loop (its httpx client and SSL
    context): it held the first calls of every replay; the preflight's request now builds the
    one the run uses (issue 23)."""
    with _openai_clients_lock:
        client = _openai_clients.get((api_key, base_url))
        if client is None:
            import openai  # lazy: openai takes 0.3 s to import, only when a judge calls

            client = _openai_clients[(api_key, base_url)] = openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, max_retries=0)
        return client


class HTTPClient:
    """One event loop's aiohttp session for one key, sending what the openai client `sdk`
    would (its URL and headers), raising its errors."""

    def __init__(self, sdk: Any, timeout_s: float):
        # openai takes 0.3 s to import, so it and its HTTP libraries load only when a judge
        # calls: httpx2 builds the requests and responses its errors carry
        import aiohttp  # lazy: only when a judge calls
        import httpx2  # lazy: only when a judge calls
        import openai  # lazy: only when a judge calls

        self._openai, self._httpx = openai, httpx2
        self.sdk = sdk
        self.url = f"{self.sdk.base_url}chat/completions"
        self.headers = {name: value for name, value in self.sdk.default_headers.items()
                        if isinstance(value, str)}
        self.headers["Authorization"] = f"Bearer {self.sdk.api_key}"
        self._failed = (aiohttp.ClientError, OSError)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), proxy=env_proxy(self.url),
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout_s,
                                          sock_connect=timeout_s, sock_read=timeout_s))

    async def post(self, body: dict[str, Any]) -> Any:
        """The reply's JSON; the openai client's errors for a failed request."""
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode()
        try:
            async with self.session.post(self.url, data=data, headers=self.headers) as response:
                content = await response.read()
                status, headers = response.status, response.raw_headers
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise self._openai.APITimeoutError(request=self._request()) from exc
        except self._failed as exc:  # refused, reset, no route, DNS: nothing was answered
            raise self._openai.APIConnectionError(request=self._request()) from exc
        if status >= 300:
            failed = self._httpx.Response(status, headers=list(headers), content=content,
                                          request=self._request())
            # the client's own mapping of a status to its error class (RateLimitError, ...)
            raise self.sdk._make_status_error_from_response(failed)
        try:
            return json.loads(content)
        except ValueError as exc:  # a 200 whose body is not JSON
            raise MalformedReplyError(f"the reply body is not JSON: {exc}") from exc

    def _request(self) -> Any:
        return self._httpx.Request("POST", self.url)

    def is_closed(self) -> bool:
        return bool(self.session.closed)

    async def close(self) -> None:
        await self.session.close()


def env_proxy(url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY name for `url`, unless NO_PROXY exempts its host:
    read once per session (aiohttp's trust_env reads the environment and ~/.netrc again on
    every request, ~10% of the event loop's time at 64 calls in flight)."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


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
