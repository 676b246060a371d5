"""A local OpenAI-compatible chat server for tests and benchmarks: latency, faults, counters.

Tests drive the real litellm client against it, so no test ever needs the network:

    with OpenAIServer(latency_ms=0, faults=["429", "ok"]) as server:
        server.base_url   # "http://127.0.0.1:PORT/v1"
        server.stats      # counters snapshot

Benchmarks run it as a separate process so its CPU does not mix with the client's:

    python -m tests.support.openai_server --port 8000 --latency-ms 300

Replies follow the request: a JSON object when `response_format` asks for a JSON schema, a tool
call when `tools` are given, else text ending in "Label: X". The label is the one named by an
`EXPECT_LABEL=<label>` marker in the last user message, else the first label of the schema's
enum, else `default_label`. With `"stream": true` the reply comes as server-sent chunks, as
OpenAI streams them (the usage in a last chunk when `stream_options.include_usage` asks).

An `INJECT_FAULT=<kind>` marker in the last user message gives that request the fault, whatever
the plan says: clients sharing one server (one process per instrumentation package in the
conformance suite) each script their own faults that way.

When the schema (or, in text mode, the system message) asks for claims, the verdict
lists one claim per sentence of the OUTPUT block: "supported", with the sentence as evidence,
when another block of the message holds it word for word, else "unsupported".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

FAULTS = ("429", "500", "503", "400", "401", "404", "hang", "slow", "bad_body", "invalid_json",
          "truncated", "content_filter", "off_menu", "garbage")
"""Injectable faults. 429 carries Retry-After; 401 echoes the API key back, as some providers
do, so tests can check it is never stored; 404 says the model does not exist; hang outlasts the
client's timeout; slow is a good reply `slow_s` later than the others (a straggler); bad_body is an
HTTP 200 whose body is not JSON; invalid_json, truncated (finish_reason "length"),
content_filter (cut short, finish_reason "content_filter"), off_menu and garbage are
well-formed responses whose content holds no usable verdict."""

OK = "ok"
INJECT_FAULT = re.compile(r"INJECT_FAULT=(" + "|".join(FAULTS + (OK,)) + r")\b")
EXPECT_LABEL = re.compile(r"EXPECT_LABEL=([^\s\"'<>,;]+)")
OUTPUT_BLOCK = re.compile(r"<<<BEGIN OUTPUT>>>\n(.*?)\n<<<END OUTPUT>>>", re.DOTALL)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
REASONING = "Checked each claim of the answer against the material given, one by one."
OFF_MENU_LABEL = "not_on_the_menu"
GARBAGE = "~~ #### 0x1F 0x2A 0x3B #### ~~"
BROKEN_BODY = '{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (monotonic timestamps, seconds)."""

    started: float
    finished: float
    status: int
    fault: str
    max_tokens: int | None


@dataclass(frozen=True)
class ServerStats:
    """A snapshot of the counters; safe to read from any thread."""

    total: int
    by_status: dict[int, int]
    by_fault: dict[str, int]
    in_flight: int
    max_in_flight: int
    requests: tuple[RequestRecord, ...]


class FaultPlan:
    """Which fault the next request gets: a scripted sequence first, then random draws."""

    def __init__(self, faults: Sequence[str] | Mapping[str, float] | None = None, seed: int = 0):
        self._script: list[str] = []
        self._odds: list[tuple[str, float]] = []
        self._rng = random.Random(seed)
        if isinstance(faults, Mapping):
            self._odds = [(kind, float(p)) for kind, p in faults.items() if p > 0]
            if sum(p for _, p in self._odds) > 1.0 + 1e-9:
                raise ValueError("fault probabilities add up to more than 1")
        elif faults is not None:
            self._script = list(faults)
        unknown = {kind for kind in self._script + [k for k, _ in self._odds]} - set(FAULTS) - {OK}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; choose from {FAULTS + (OK,)}")
        self._script.reverse()

    def next(self) -> str:
        if self._script:
            return self._script.pop()
        draw = self._rng.random()
        for kind, probability in self._odds:
            if draw < probability:
                return kind
            draw -= probability
        return OK


class OpenAIServer:
    """POST /v1/chat/completions on 127.0.0.1 from a background thread with its own event loop."""

    def __init__(self, *, latency_ms: float = 0.0, jitter_ms: float = 0.0,
                 faults: Sequence[str] | Mapping[str, float] | None = None, seed: int = 0,
                 default_label: str = "pass", retry_after_s: float = 1.0, hang_s: float = 30.0,
                 slow_s: float = 3.0,
                 truncate_below_max_tokens: int | None = None, host: str = "127.0.0.1", port: int = 0):
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.default_label = default_label
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.slow_s = slow_s
        self.truncate_below_max_tokens = truncate_below_max_tokens
        """Reply truncated (finish_reason "length") when the request allows fewer tokens."""
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._plan = FaultPlan(faults, seed)
        self._jitter_rng = random.Random(seed + 1)
        self._reset_counters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- control (any thread) -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> ServerStats:
        with self._lock:
            return ServerStats(
                total=self._total,
                by_status=dict(self._by_status),
                by_fault=dict(self._by_fault),
                in_flight=self._in_flight,
                max_in_flight=self._max_in_flight,
                requests=tuple(self._log),
            )

    def reset_stats(self) -> None:
        """Zero the counters; requests still in flight stay counted as in flight."""
        with self._lock:
            in_flight = self._in_flight
            self._reset_counters()
            self._in_flight = self._max_in_flight = in_flight

    def set_faults(self, faults: Sequence[str] | Mapping[str, float] | None, seed: int = 0) -> None:
        """Replace the fault plan: a list is a script (one entry per request), a dict odds."""
        plan = FaultPlan(faults, seed)
        with self._lock:
            self._plan = plan

    def set_latency(self, latency_ms: float, jitter_ms: float = 0.0) -> None:
        self.latency_ms, self.jitter_ms = latency_ms, jitter_ms

    def start(self) -> OpenAIServer:
        self._thread = threading.Thread(target=self._run_thread, name="openai-test-server", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._startup_error is not None:
            raise RuntimeError(f"test server failed to start: {self._startup_error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------

    def _run_thread(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # surfaced by start()
            self._startup_error = exc
            self._ready.set()

    async def serve(self, on_ready: Callable[[OpenAIServer], None] | None = None) -> None:
        """Serve until stop() (or cancellation); `on_ready(server)` runs once listening."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/health", self._health)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=2048)
        await site.start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        if on_ready is not None:
            on_ready(self)
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def _reset_counters(self) -> None:
        self._total = 0
        self._by_status: Counter[int] = Counter()
        self._by_fault: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0
        self._log: list[RequestRecord] = []

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _chat(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        with self._lock:
            self._total += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            fault = self._plan.next()
        status, max_tokens = 500, None
        try:
            try:
                body = await request.json()
                max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
                if not isinstance(body["messages"], list):
                    raise TypeError("messages must be a list")
            except (ValueError, KeyError, TypeError, AttributeError):
                fault = "bad_request"
                response = _error(400, "request body must be JSON with a 'messages' list")
            else:
                fault = _injected_fault(body["messages"]) or fault
                await self._wait_latency()
                response = await self._respond(request, body, fault, max_tokens)
            status = response.status
            return response
        finally:
            with self._lock:
                self._in_flight -= 1
                self._by_status[status] += 1
                self._by_fault[fault] += 1
                self._log.append(RequestRecord(started, time.monotonic(), status, fault, max_tokens))

    async def _wait_latency(self) -> None:
        delay_ms = self.latency_ms
        if self.jitter_ms:
            delay_ms += self._jitter_rng.uniform(-self.jitter_ms, self.jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)

    async def _respond(
        self, request: web.Request, body: dict[str, Any], fault: str, max_tokens: int | None
    ) -> web.StreamResponse:
        if fault == "429":
            response = _error(429, "Rate limit reached (injected fault)", "rate_limit_exceeded")
            response.headers["Retry-After"] = f"{self.retry_after_s:g}"
            return response
        if fault in ("500", "503"):
            return _error(int(fault), f"Server error {fault} (injected fault)", "server_error")
        if fault == "400":
            return _error(400, "Invalid request (injected fault)")
        if fault == "404":
            model = body.get("model", "unknown")
            return _error(404, f"The model `{model}` does not exist (injected fault)", "model_not_found")
        if fault == "401":
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {key} (injected fault)", "invalid_api_key")
        if fault == "hang":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), self.hang_s)
            except TimeoutError:
                pass
            return _error(504, "hung (injected fault)", "timeout")
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault == "bad_body":
            return web.Response(status=200, text=BROKEN_BODY, content_type="application/json")
        limit = self.truncate_below_max_tokens
        if fault == OK and limit is not None and max_tokens is not None and max_tokens < limit:
            fault = "truncated"
        completion = self._completion(body, fault, max_tokens)
        if body.get("stream"):
            return await _stream(request, completion, bool((body.get("stream_options") or {}).get("include_usage")))
        return web.json_response(completion)

    def _completion(self, body: dict[str, Any], fault: str, max_tokens: int | None) -> dict[str, Any]:
        messages = body["messages"]
        mode, tool_name = _reply_mode(body)
        label = OFF_MENU_LABEL if fault == "off_menu" else self._choose_label(body, messages)
        claims = _claims(messages) if _asks_for_claims(body, messages) else None
        if mode == "text":
            text = f"Reasoning: {REASONING}\nLabel: {label}"
            if claims is not None:
                text = json.dumps({"reasoning": REASONING, "claims": claims, "label": label})
        elif claims is None:
            text = json.dumps({"reasoning": REASONING, _label_enum(body)[0]: label})
        else:
            text = json.dumps({"reasoning": REASONING, "claims": claims, "label": label})
        if fault == "garbage":
            text = GARBAGE
        elif fault == "invalid_json":
            text = "{reasoning: " + REASONING + ", label = ???"
        elif fault in ("truncated", "content_filter"):
            text = text[: text.index(REASONING) + len(REASONING) // 2]
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if mode == "tool":
            call = {"id": "call_0", "type": "function", "function": {"name": tool_name, "arguments": text}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        truncated = fault == "truncated"
        finish_reason = "length" if truncated else "content_filter" if fault == "content_filter" else "stop"
        completion_tokens = int(max_tokens) if truncated and max_tokens else max(1, len(text) // 4)
        prompt_tokens = max(1, sum(len(_text_of(m)) for m in messages) // 4)
        return {
            "id": f"chatcmpl-{self._total}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "system_fingerprint": None,
        }

    def _choose_label(self, body: dict[str, Any], messages: list[Any]) -> str:
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            found = EXPECT_LABEL.findall(_text_of(users[-1]))
            if found:
                return found[-1]
        enum = _label_enum(body)[1]
        return enum[0] if enum else self.default_label


def _reply_mode(body: dict[str, Any]) -> tuple[str, str]:
    """("json" | "tool" | "text", tool name)."""
    tools = body.get("tools") or []
    if tools:
        return "tool", tools[0].get("function", {}).get("name", "submit")
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_schema", "json_object"):
        return "json", ""
    return "text", ""


def _schema(body: dict[str, Any]) -> Any:
    schema: Any = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    tools = body.get("tools") or []
    if schema is None and tools:
        schema = tools[0].get("function", {}).get("parameters")
    return schema


def _label_enum(body: dict[str, Any]) -> tuple[str, list[str]]:
    """The schema's label field and its choices: `label`, else the first field with an enum
    (other evaluation libraries name it `choice`); ("label", []) when there is none."""
    try:
        properties = _schema(body)["properties"]
        fields = [name for name, spec in properties.items() if "enum" in spec]
    except (KeyError, TypeError, AttributeError):
        return "label", []
    name = "label" if "label" in fields else next(iter(fields), "label")
    return name, list(properties[name]["enum"]) if name in fields else []


def _asks_for_claims(body: dict[str, Any], messages: list[Any]) -> bool:
    schema = _schema(body)
    if isinstance(schema, dict):
        return "claims" in (schema.get("properties") or {})
    system = [_text_of(m) for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    return any('"claims"' in text for text in system)


def _claims(messages: list[Any]) -> list[dict[str, Any]]:
    """One claim per sentence of the last user message's OUTPUT block, checked word for word
    against the rest of that message."""
    users = [_text_of(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    found = OUTPUT_BLOCK.search(users[-1]) if users else None
    if found is None:
        return []
    rest = users[-1][:found.start()] + users[-1][found.end():]
    claims = []
    for sentence in filter(None, SENTENCE_END.split(found.group(1).strip())):
        supported = sentence in rest
        claims.append({"claim": sentence, "verdict": "supported" if supported else "unsupported",
                       "evidence": sentence if supported else None})
    return claims


def _text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _injected_fault(messages: list[Any]) -> str | None:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    found = INJECT_FAULT.findall(_text_of(users[-1])) if users else []
    return found[-1] if found else None


STREAM_PIECES = 3
"""A streamed reply's text arrives in this many content chunks."""


async def _stream(request: web.Request, completion: dict[str, Any], include_usage: bool) -> web.StreamResponse:
    """The completion as OpenAI streams it: a role chunk, content chunks, a finish chunk, the
    usage chunk when asked for, then [DONE]."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    choice = completion["choices"][0]
    message = choice["message"]
    head = {key: completion[key] for key in ("id", "created", "model", "system_fingerprint")}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, usage: Any = None) -> bytes:
        choices = [] if usage else [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish_reason}]
        body = {**head, "object": "chat.completion.chunk", "choices": choices,
                **({"usage": usage} if usage else {})}
        return f"data: {json.dumps(body)}\n\n".encode()

    await response.write(chunk({"role": "assistant", "content": ""}))
    if message.get("tool_calls"):
        calls = [{"index": 0, **call} for call in message["tool_calls"]]
        await response.write(chunk({"tool_calls": calls}))
    else:
        text = message["content"]
        size = -(-len(text) // STREAM_PIECES)
        for start in range(0, len(text), size):
            await response.write(chunk({"content": text[start:start + size]}))
    await response.write(chunk({}, choice["finish_reason"]))
    if include_usage:
        await response.write(chunk({}, usage=completion["usage"]))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _error(status: int, message: str, code: str = "invalid_request_error") -> web.Response:
    payload = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return web.json_response(payload, status=status)


def _announce(server: OpenAIServer) -> None:
    print(f"listening on {server.base_url}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=P",
                        help=f"fault probability, repeatable; kinds: {', '.join(FAULTS)}")
    parser.add_argument("--retry-after-s", type=float, default=1.0, help="Retry-After sent with 429")
    parser.add_argument("--slow-s", type=float, default=3.0, help="extra latency of the slow fault")
    parser.add_argument("--default-label", default="pass")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    odds = {kind: float(p) for kind, _, p in (item.partition("=") for item in args.fault)}
    server = OpenAIServer(latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, faults=odds or None,
                          seed=args.seed, default_label=args.default_label,
                          retry_after_s=args.retry_after_s, slow_s=args.slow_s, host=args.host,
                          port=args.port)
    try:
        asyncio.run(server.serve(on_ready=_announce))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
