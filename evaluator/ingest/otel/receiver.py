"""The OTLP/HTTP receiver behind `evaluator receive`: a Collector (or any OTLP exporter) feeds
Evaluator with no code in the app.

`POST /v1/traces` and `POST /v1/logs`, protobuf (`application/x-protobuf`) or JSON
(`application/json`), gzip-compressed or not, as the OTLP/HTTP specification says. Spans go
through an EvaluatorSpanExporter's `receive`: the same assembly, sampling, masking and enqueuing
as in the app. GenAI log records go to the LogBuffer joined to that exporter (as with
EvaluatorLogExporter), and each trace waits `settle_s` after its root for them, since a
Collector sends logs and spans in separate requests.

Answers:
- 200 with an Export*ServiceResponse; `partial_success.rejected_spans` counts the spans without
  a valid traceId/spanId and those that arrived after their trace was handed on;
- 400 with a google.rpc.Status for a body that does not decode (or inflate, when gzip);
- 401 without the bearer token, when one is set; 413 past the size limit (counted on the wire
  and again after inflating, so a gzip bomb stops there too); 415 for another content type or
  a Content-Encoding other than gzip or identity. The receiver inflates gzip itself (aiohttp's
  own decompression is off): aiohttp would answer an encoding it cannot decode, zstd say, with
  a plain-text 400 before the request reaches us;
- 429 or 503 with Retry-After under back-pressure (EvaluatorSpanExporter.pressure), and 429
  when more than `max_waiting_requests` wait for the processing thread. OTLP clients retry
  those after Retry-After.
All work on spans runs on one thread beside the event loop, so a slow Redis never stalls it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web
from google.protobuf.json_format import MessageToJson, ParseError
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from evaluator.core.errors import ConfigError
from evaluator.ingest.otel.exporter import EvaluatorSpanExporter, Pressure
from evaluator.ingest.otel.logs import LogBuffer
from evaluator.ingest.otel.otlp_json import Request, log_events, request_from_json, span_records

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SHUTDOWN_GRACE_S = 5.0
"""How long stopping waits for requests in flight before it closes their connections."""
ENCODINGS = ("gzip", "identity")
"""The Content-Encodings OTLP/HTTP asks of a receiver."""
TICK_S = 0.5
"""How often traces whose wait is over (settled, or past the assembly timeout) are handed on
while no request comes."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    retry_after_s: int | None = None

    def response(self) -> web.Response:
        headers = {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}
        return web.Response(status=self.status, body=self.body, content_type=self.content_type,
                            headers=headers)


def _encode(message: Message, content_type: str) -> bytes:
    if content_type == JSON:
        return MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def _status(code: int, message: str, content_type: str, retry_after_s: int | None = None) -> Answer:
    return Answer(code, _encode(Status(code=code, message=message), content_type), content_type,
                  retry_after_s)


class OtlpReceiver:
    """The aiohttp application of the receiver. `overloaded` (embedded mode: the in-process
    queue is full) is asked before each request, after the exporter's own `pressure`."""

    def __init__(self, exporter: EvaluatorSpanExporter, logs: LogBuffer, *,
                 max_body_bytes: int, token: str | None = None,
                 overloaded: Callable[[], Pressure | None] | None = None,
                 max_waiting_requests: int = 8) -> None:
        self.exporter = exporter
        self.logs = logs
        self.max_body_bytes = max_body_bytes
        self._token = f"Bearer {token}".encode() if token else None
        self._overloaded = overloaded
        self.max_waiting_requests = max_waiting_requests
        self._waiting = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluator-receiver")
        self.counts = {"requests": 0, "refused": 0, "rejected_spans": 0, "log_records": 0,
                       "rejected_log_records": 0}

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes,
                              handler_args={"auto_decompress": False})
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/logs", self._logs)
        app.cleanup_ctx.append(self._ticking)
        return app

    async def _ticking(self, app: web.Application):
        task = asyncio.create_task(self._tick())
        yield
        task.cancel()
        await asyncio.get_running_loop().run_in_executor(self._worker, self._close)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await loop.run_in_executor(self._worker, self.exporter.receive, [])
            except Exception as exc:  # the next tick tries again
                log.warning("receiver: handing on waiting traces failed: %r", exc)

    def _close(self) -> None:
        """Hand on every buffered trace, complete or not, then close the exporter."""
        self.exporter.force_flush()
        self.exporter.shutdown()

    async def _traces(self, request: web.Request) -> web.Response:
        return await self._handle(request, self._export_traces)

    async def _logs(self, request: web.Request) -> web.Response:
        return await self._handle(request, self._export_logs)

    async def _handle(self, request: web.Request, export: Callable[[bytes, str], Answer]) -> web.Response:
        content_type = request.content_type
        answer_type = content_type if content_type in (PROTOBUF, JSON) else PROTOBUF
        if self._token is not None and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), self._token):
            return _status(401, "missing or wrong bearer token", answer_type).response()
        if content_type not in (PROTOBUF, JSON):
            return _status(415, f"unsupported content type {content_type!r}: use {PROTOBUF} or {JSON}",
                           answer_type).response()
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        if encoding not in ENCODINGS:
            return _status(415, f"unsupported Content-Encoding {encoding!r}: send "
                           f"{' or '.join(ENCODINGS)}", answer_type).response()
        if self._waiting >= self.max_waiting_requests:
            self.counts["refused"] += 1
            return _status(429, "too many requests waiting", answer_type, retry_after_s=1).response()
        self._waiting += 1
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _status(413, f"request body over {self.max_body_bytes:,} bytes "
                               "(EVALUATOR_RECEIVER_MAX_BODY_BYTES)", answer_type).response()
            except web.RequestPayloadError as exc:  # a cut body
                return _status(400, f"the body could not be read ({exc}): send it whole",
                               answer_type).response()
            answer = await asyncio.get_running_loop().run_in_executor(
                self._worker, self._guarded, export, body, content_type, encoding == "gzip")
        finally:
            self._waiting -= 1
        return answer.response()

    def _guarded(self, export: Callable[[bytes, str], Answer], body: bytes, content_type: str,
                 gzipped: bool) -> Answer:
        self.counts["requests"] += 1
        if gzipped:
            try:
                body = _gunzip(body, self.max_body_bytes)
            except _TooLarge:
                return _status(413, f"request body over {self.max_body_bytes:,} bytes once inflated "
                               "(EVALUATOR_RECEIVER_MAX_BODY_BYTES)", content_type)
            except zlib.error as exc:
                return _status(400, f"the body could not be read ({exc}): gzip-compress it only "
                               "when Content-Encoding says gzip", content_type)
        pressure = self.exporter.pressure() or (self._overloaded() if self._overloaded else None)
        if pressure is not None:
            self.counts["refused"] += 1
            return _status(429 if pressure.overloaded else 503, pressure.reason, content_type,
                           retry_after_s=pressure.retry_after_s)
        try:
            return export(body, content_type)
        except (DecodeError, ParseError, ValueError, TypeError, RecursionError) as exc:
            return _status(400, f"the body is not an OTLP request in {content_type}: {exc}", content_type)
        except Exception as exc:
            log.exception("receiver: a request failed")
            return _status(500, f"internal error: {exc!r}", content_type)

    def _export_traces(self, body: bytes, content_type: str) -> Answer:
        request = _decode(body, content_type, ExportTraceServiceRequest)
        records, invalid = span_records(request)
        result, late = self.exporter.receive(records)
        response = ExportTraceServiceResponse()
        rejected = len(invalid) + late
        if rejected:
            self.counts["rejected_spans"] += rejected
            reasons = []
            if invalid:
                reasons.append(f"{len(invalid)} without a valid traceId/spanId (first: {invalid[0]!r})")
            if late:
                reasons.append(f"{late} arrived after their trace was handed on for evaluation")
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = "; ".join(reasons)
        if result is not SpanExportResult.SUCCESS:
            return _status(503, "the sampled traces could not be enqueued (see the receiver's log)",
                           content_type, retry_after_s=max(1, self._retry_s()))
        return Answer(200, _encode(response, content_type), content_type)

    def _export_logs(self, body: bytes, content_type: str) -> Answer:
        request = _decode(body, content_type, ExportLogsServiceRequest)
        events, invalid = log_events(request)
        self.logs.add(events)
        self.counts["log_records"] += len(events)
        response = ExportLogsServiceResponse()
        if invalid:
            self.counts["rejected_log_records"] += len(invalid)
            response.partial_success.rejected_log_records = len(invalid)
            response.partial_success.error_message = (
                f"{len(invalid)} GenAI log records without a valid traceId/spanId (first: {invalid[0]!r})")
        return Answer(200, _encode(response, content_type), content_type)

    def _retry_s(self) -> int:
        pressure = self.exporter.pressure()
        return pressure.retry_after_s if pressure else 1


class _TooLarge(Exception):
    """An inflated body past the size limit."""


def _gunzip(body: bytes, limit: int) -> bytes:
    """The gzip body inflated (its members one after another, as gzip allows), raising
    _TooLarge as soon as it passes `limit` bytes rather than inflating a bomb whole."""
    inflated = bytearray()
    while body:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        inflated += inflater.decompress(body, limit + 1 - len(inflated))
        if len(inflated) > limit or inflater.unconsumed_tail:
            raise _TooLarge
        if not inflater.eof:
            raise zlib.error("the gzip stream ends early")
        body = inflater.unused_data
    return bytes(inflated)


def _decode(body: bytes, content_type: str, kind: type[Request]) -> Request:
    if content_type == PROTOBUF:
        request = kind()
        request.ParseFromString(body)
        return request
    parsed = request_from_json(body, kind)
    if not isinstance(parsed, kind):
        raise ValueError(f"expected an {kind.__name__}")
    return parsed


class RunningReceiver:
    """The receiver served from a thread of its own (the CLI and tests): `port` is the bound
    port (useful with port 0), `stop()` closes the server, gives requests in flight
    `shutdown_grace_s` to finish (then closes their connections: a client stuck sending a body
    would otherwise hold the stop for aiohttp's 60 s), then flushes and closes the exporter."""

    def __init__(self, receiver: OtlpReceiver, host: str, port: int,
                 shutdown_grace_s: float = SHUTDOWN_GRACE_S) -> None:
        self.receiver = receiver
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(receiver.application(), access_log=None,
                                     shutdown_timeout=shutdown_grace_s)
        started = threading.Event()
        failure: list[BaseException] = []
        self.port = port

        async def start() -> None:
            await self._runner.setup()
            try:
                await web.TCPSite(self._runner, host, port).start()
            except OSError as exc:
                await self._runner.cleanup()
                raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass "
                                  "another --port or --host, or stop what uses it") from exc
            self.port = self._runner.addresses[0][1]

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                self._loop.close()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="evaluator-receiver-loop", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    def stop(self) -> None:
        """Idempotent."""
        if self._loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
