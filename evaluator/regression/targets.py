"""The app under test for `evaluator replay --target`: regenerates an item's output.

Two kinds: `module:function`, a Python callable given the item's input (a string or a list of
{"role", "content"} messages) that returns the output text, or {"output": ..., "context": [...]}
when it retrieves its own context; and `openai:MODEL@BASE_URL`, any OpenAI-compatible chat
endpoint, sent the item's system prompt and input (key from $EVALUATOR_TARGET_API_KEY, if any).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from evaluator.core.errors import ConfigError
from evaluator.regression.datasets import DatasetItem

OPENAI_PREFIX = "openai:"
TIMEOUT_S = 120.0
MAX_RETRIES = 3


@dataclass(frozen=True)
class Generated:
    output: str
    context: list[str] | None
    """The context the app retrieved this time; None keeps the item's."""
    latency_ms: float


class Target(Protocol):
    spec: str

    async def generate(self, item: DatasetItem) -> Generated:
        """The app's answer to the item's input; raises when the app fails."""

    async def close(self) -> None: ...


def load_target(spec: str, api_key: str | None = None) -> Target:
    """`openai:MODEL@BASE_URL` (with `api_key`, Settings.target_api_key, if any) or
    `module:function`; ConfigError saying how to fix a bad spec."""
    if spec.startswith(OPENAI_PREFIX) and "@" in spec:
        return OpenAIChatTarget(spec, api_key)
    return CallableTarget(spec)


def _generated(value: Any, started: float) -> Generated:
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    if isinstance(value, str):
        return Generated(value, None, latency_ms)
    if isinstance(value, dict) and isinstance(value.get("output"), str):
        context = value.get("context")
        if context is not None and not (isinstance(context, list)
                                        and all(isinstance(doc, str) for doc in context)):
            raise TypeError("the target's 'context' must be a list of strings")
        return Generated(value["output"], context, latency_ms)
    raise TypeError(f"the target returned {type(value).__name__}; return the output text, or "
                    "{'output': str, 'context': [str, ...]}")


class CallableTarget:
    """A Python function of the app under test; sync functions run in worker threads."""

    def __init__(self, spec: str):
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise ConfigError(f"--target {spec!r}: use module:function (a Python callable taking "
                              "the input) or openai:MODEL@BASE_URL")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # the app under test usually lives in the current dir
        try:
            found: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
        except ImportError as exc:
            raise ConfigError(f"--target {spec!r}: cannot import {module_name}: {exc}") from None
        except AttributeError:
            raise ConfigError(f"--target {spec!r}: {module_name} has no {attribute}") from None
        if not callable(found):
            raise ConfigError(f"--target {spec!r}: {attribute} is not callable")
        self.spec = spec
        self._function: Callable[[Any], Any] = found
        self._is_async = inspect.iscoroutinefunction(found)

    async def generate(self, item: DatasetItem) -> Generated:
        started = time.perf_counter()
        if self._is_async:
            value = await self._function(item.input_json())
        else:
            value = await asyncio.to_thread(self._function, item.input_json())
        return _generated(value, started)

    async def close(self) -> None:
        """Nothing to release."""


class OpenAIChatTarget:
    """An OpenAI-compatible chat completions endpoint (the openai SDK, its retries on), over
    the SDK's aiohttp backend: its default httpx pool walked every open connection on each
    request (~0.7 ms CPU per call with 64 in flight, issue 23)."""

    def __init__(self, spec: str, api_key: str | None = None):
        model, _, base_url = spec.removeprefix(OPENAI_PREFIX).partition("@")
        if not model or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--target {spec!r}: use openai:MODEL@BASE_URL, e.g. "
                              "openai:my-app@http://127.0.0.1:8000/v1")
        self.spec = spec
        self.model = model
        self.base_url = base_url
        self._api_key = api_key
        self._client: Any = None

    def _messages(self, item: DatasetItem) -> list[dict[str, str]]:
        system = item.metadata.get("system")
        messages = [{"role": "system", "content": system}] if isinstance(system, str) else []
        if isinstance(item.input, str):
            return [*messages, {"role": "user", "content": item.input}]
        return [*messages, *item.input_json()]

    async def generate(self, item: DatasetItem) -> Generated:
        if self._client is None:
            # lazy: openai takes 0.3 s to import: only when a replay has a --target
            from openai import AsyncOpenAI, DefaultAioHttpClient

            self._client = AsyncOpenAI(base_url=self.base_url, timeout=TIMEOUT_S,
                                       max_retries=MAX_RETRIES,
                                       api_key=self._api_key or "not-needed",
                                       http_client=DefaultAioHttpClient(timeout=TIMEOUT_S))
        started = time.perf_counter()
        response = await self._client.chat.completions.create(
            model=self.model, messages=self._messages(item))
        return _generated(response.choices[0].message.content or "", started)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
