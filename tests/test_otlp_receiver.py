"""`evaluator receive` (issue 20 item 1, issue 22 item 1's /v1/logs): the real OTLP/HTTP
exporters of the OpenTelemetry SDK pointed at the receiver, in protobuf and JSON, gzip or not;
back-pressure, size limit, bearer token and partial success answered as OTLP/HTTP says."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import time

import dramatiq
import pytest
import requests
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from evaluator.core.settings import Settings
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.ingest.otel.exporter import Pressure
from evaluator.ingest.otel.logs import LogBuffer
from evaluator.ingest.otel.receiver import OtlpReceiver, RunningReceiver
from evaluator.queue.messages import QUEUE_NAME, decode_items
from evaluator.sampling.policy import SamplingPolicy
from evaluator.store import Store
from tests.support.otel_capture import Capture
from tests.test_otel_exporter import chat
from tests.test_otel_logs import emit_official_events

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


class Served:
    """A receiver on a free port, in sink mode: what it enqueues lands in `items`."""

    def __init__(self, token: str | None = None, max_body_bytes: int = 2**20, settle_s: float = 0.0,
                 overloaded=None, redis_url: str | None = None, shutdown_grace_s: float = 5.0) -> None:
        self.items: list = []
        self.dead: list = []
        if redis_url:
            self.exporter = EvaluatorSpanExporter(redis_url, mask=lambda t: t,
                                                  policy=SamplingPolicy(rate=1.0), settle_s=settle_s)
        else:
            self.exporter = EvaluatorSpanExporter(sink=self.items.extend, dead_letters=self.dead.extend,
                                                  mask=lambda t: t, policy=SamplingPolicy(rate=1.0),
                                                  settle_s=settle_s)
        self.logs = LogBuffer(1000, 60.0, time.monotonic)
        self.exporter.join_logs(self.logs)
        self.receiver = OtlpReceiver(self.exporter, self.logs, max_body_bytes=max_body_bytes,
                                     token=token, overloaded=overloaded)
        self.running = RunningReceiver(self.receiver, "127.0.0.1", 0, shutdown_grace_s=shutdown_grace_s)
        self.url = f"http://127.0.0.1:{self.running.port}"

    def stop(self) -> None:
        self.running.stop()

    def traces(self):
        return [item.trace for item in self.items]


@pytest.fixture
def served():
    made: list[Served] = []

    def make(**kwargs) -> Served:
        made.append(Served(**kwargs))
        return made[-1]

    yield make
    for one in made:
        one.stop()


def send_with_sdk(capture: Capture, url: str, **kwargs) -> OTLPSpanExporter:
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", **kwargs)
    capture.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def test_the_sdk_otlp_exporter_feeds_the_receiver_gzip_and_token(served, capture):
    one = served(token="s3cret")
    send_with_sdk(capture, one.url, compression=Compression.Gzip,
                  headers={"Authorization": "Bearer s3cret"})
    chat(capture.tracer("app"), question="Where is my order?", answer="It ships today.")
    one.stop()  # flushes what is buffered
    [trace] = one.traces()
    span = capture.spans.get_finished_spans()[0]
    assert (trace.input[0].content, trace.output) == ("Where is my order?", "It ships today.")
    assert trace.model == "gpt-4o"
    assert (trace.trace_id, trace.span_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    assert one.receiver.counts["requests"] == 1


def test_json_encoding_with_hex_ids_and_a_json_answer(served, capture):
    one = served()
    chat(capture.tracer("app"), answer="JSON path")
    [line] = capture.otlp_json_lines(logs=False)
    reply = requests.post(f"{one.url}/v1/traces", data=gzip.compress(line.encode()),
                          headers={**JSON, "Content-Encoding": "gzip"}, timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert json.loads(reply.content) == {}  # no partial success
    one.stop()
    assert [t.output for t in one.traces()] == ["JSON path"]


def test_log_records_sent_separately_join_their_spans(served, capture):
    """A Collector sends logs and spans in separate requests, the logs possibly after the spans:
    the trace waits settle_s for them (the official instrumentation's content is only there)."""
    one = served(settle_s=30.0)
    send_with_sdk(capture, one.url)
    emit_official_events(capture, answer="Paris.")
    assert one.traces() == []  # spans arrived, held for their log records
    log_exporter = OTLPLogExporter(endpoint=f"{one.url}/v1/logs")
    assert log_exporter.export(capture.finished_logs()).name == "SUCCESS"
    one.stop()
    [trace] = one.traces()
    assert (trace.system, trace.input[-1].content, trace.output) == ("You are terse.", "Capital of France?",
                                                                    "Paris.")


def test_wrong_or_missing_token_is_401(served):
    one = served(token="s3cret")
    for headers in ({}, {"Authorization": "Bearer nope"}):
        reply = requests.post(f"{one.url}/v1/traces", data=b"", headers={**PROTOBUF, **headers}, timeout=10)
        assert reply.status_code == 401
        assert "bearer token" in Status.FromString(reply.content).message


def test_size_limit_counts_the_decompressed_body(served):
    one = served(max_body_bytes=64 * 1024)
    bomb = gzip.compress(b"\0" * (8 * 2**20))  # 8 KB on the wire, 8 MB inflated
    assert len(bomb) < 64 * 1024
    reply = requests.post(f"{one.url}/v1/traces", data=bomb,
                          headers={**PROTOBUF, "Content-Encoding": "gzip"}, timeout=10)
    assert reply.status_code == 413
    reply = requests.post(f"{one.url}/v1/traces", data=b"x" * (65 * 1024), headers=PROTOBUF, timeout=10)
    assert reply.status_code == 413


def test_bad_bodies_and_content_types(served):
    one = served()
    reply = requests.post(f"{one.url}/v1/traces", data=b"\xff\xff\xff", headers=PROTOBUF, timeout=10)
    assert reply.status_code == 400
    assert "not an OTLP request" in Status.FromString(reply.content).message
    reply = requests.post(f"{one.url}/v1/traces", data=b'{"resourceLogs": []}', headers=JSON, timeout=10)
    assert reply.status_code == 400
    reply = requests.post(f"{one.url}/v1/traces", data=b"hi", headers={"Content-Type": "text/plain"},
                          timeout=10)
    assert reply.status_code == 415


def test_a_body_that_is_not_gzip_is_400_not_a_server_error(served, capture):
    """A body announced as gzip that does not inflate is the client's fault: 400 with a Status,
    and the receiver keeps serving."""
    one = served()
    reply = requests.post(f"{one.url}/v1/traces", data=b"not gzip",
                          headers={**PROTOBUF, "Content-Encoding": "gzip"}, timeout=10)
    assert reply.status_code == 400
    assert "gzip" in Status.FromString(reply.content).message
    chat(capture.tracer("app"), answer="still served")
    [line] = capture.otlp_json_lines(logs=False)
    assert requests.post(f"{one.url}/v1/traces", data=line, headers=JSON, timeout=10).status_code == 200


def test_partial_success_counts_spans_without_ids_and_late_spans(served, capture):
    one = served()
    chat(capture.tracer("app"), answer="first")
    request = encode_spans(capture.spans.get_finished_spans())
    request.resource_spans[0].scope_spans[0].spans.add(name="broken", trace_id=b"\1" * 3, span_id=b"")
    reply = requests.post(f"{one.url}/v1/traces", data=request.SerializeToString(), headers=PROTOBUF,
                          timeout=10)
    answer = ExportTraceServiceResponse.FromString(reply.content)
    assert (reply.status_code, answer.partial_success.rejected_spans) == (200, 1)
    assert "'broken'" in answer.partial_success.error_message
    del request.resource_spans[0].scope_spans[0].spans[-1]
    again = requests.post(f"{one.url}/v1/traces", data=request.SerializeToString(), headers=PROTOBUF,
                          timeout=10)  # the same span, after its trace was handed on
    answer = ExportTraceServiceResponse.FromString(again.content)
    assert answer.partial_success.rejected_spans == 1
    assert "after their trace was handed on" in answer.partial_success.error_message
    assert [t.output for t in one.traces()] == ["first"]


def test_log_records_with_bad_ids_are_rejected_in_partial_success(served):
    one = served()
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.log_records.add(event_name="gen_ai.user.message", trace_id=b"\1" * 3, span_id=b"\2" * 8)
    scope.log_records.add(event_name="gen_ai.user.message", trace_id=b"\1" * 16, span_id=b"\2" * 8)
    scope.log_records.add(event_name="app.audit", trace_id=b"\1" * 3)  # not GenAI: not ours to judge
    reply = requests.post(f"{one.url}/v1/logs", data=request.SerializeToString(), headers=PROTOBUF,
                          timeout=10)
    answer = ExportLogsServiceResponse.FromString(reply.content)
    assert (reply.status_code, answer.partial_success.rejected_log_records) == (200, 1)
    assert "'gen_ai.user.message'" in answer.partial_success.error_message
    assert "traceId/spanId" in answer.partial_success.error_message


def test_an_empty_json_request_is_accepted_on_both_paths(served):
    one = served()
    for path in ("/v1/traces", "/v1/logs"):
        reply = requests.post(f"{one.url}{path}", data=b"{}", headers=JSON, timeout=10)
        assert (reply.status_code, json.loads(reply.content)) == (200, {})


@pytest.mark.parametrize("encoding", ["zstd", "compress"])
def test_an_unsupported_content_encoding_is_415_naming_the_supported_ones(served, encoding):
    one = served()
    reply = requests.post(f"{one.url}/v1/traces", data=b"\x28\xb5\x2f\xfd",
                          headers={**PROTOBUF, "Content-Encoding": encoding}, timeout=10)
    assert reply.status_code == 415
    message = Status.FromString(reply.content).message
    assert encoding in message and "gzip" in message and "identity" in message


def test_stopping_closes_a_connection_stuck_in_a_request_within_the_grace(caplog):
    one = Served(shutdown_grace_s=0.2)
    with socket.create_connection(("127.0.0.1", one.running.port)) as stuck:
        stuck.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      b"Content-Length: 100\r\n\r\nonly part of it")
        time.sleep(0.1)  # the request reached its handler
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            one.stop()
        assert time.monotonic() - started < 5  # aiohttp's default grace is 60 s
        assert stuck.recv(100) == b""  # closed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_back_pressure_is_429_or_503_with_retry_after(served):
    full = served(overloaded=lambda: Pressure("the judges are not keeping up", 3, overloaded=True))
    reply = requests.post(f"{full.url}/v1/traces", data=b"", headers=PROTOBUF, timeout=10)
    assert (reply.status_code, reply.headers["Retry-After"]) == (429, "3")
    assert Status.FromString(reply.content).message == "the judges are not keeping up"
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = served(redis_url=f"redis://127.0.0.1:{port}/0")
    reply = requests.post(f"{down.url}/v1/traces", data=b"", headers=PROTOBUF, timeout=10)
    assert reply.status_code == 503
    assert int(reply.headers["Retry-After"]) >= 1
    assert "Redis is unreachable" in Status.FromString(reply.content).message


def test_the_sdk_exporter_retries_after_503(served, capture):
    """The SDK's exporter retries a 503 (with backoff), so a short outage loses nothing."""
    answers = iter([Pressure("busy", 1, overloaded=False), None])
    one = served(overloaded=lambda: next(answers, None))
    exporter = OTLPSpanExporter(endpoint=f"{one.url}/v1/traces", timeout=10)
    chat(capture.tracer("app"), answer="after a retry")
    assert exporter.export(capture.spans.get_finished_spans()).name == "SUCCESS"
    one.stop()
    assert [t.output for t in one.traces()] == ["after a retry"]
    assert one.receiver.counts["refused"] == 1


@pytest.mark.redis
def test_service_mode_enqueues_to_redis(served, capture, private_redis_url):
    import redis

    one = served(redis_url=private_redis_url)
    send_with_sdk(capture, one.url)
    chat(capture.tracer("app"), answer="to the queue")
    one.stop()
    client = redis.Redis.from_url(private_redis_url)
    [message_id] = client.lrange(f"dramatiq:{QUEUE_NAME}", 0, -1)
    message = dramatiq.Message.decode(client.hget(f"dramatiq:{QUEUE_NAME}.msgs", message_id))
    [item], _ = decode_items(message.args[0]["items"], "test")
    assert item.trace.output == "to the queue"


def test_receive_command_embedded_judges_and_stores(tmp_path, capture):
    """`evaluator receive --embedded`: spans in over OTLP/HTTP, evaluations in DuckDB."""
    from evaluator.worker.receive_job import ReceiverService

    db = tmp_path / "received.duckdb"
    settings = Settings.from_env(db_path=db, receiver_log_wait_s=0)
    service = ReceiverService(settings, host="127.0.0.1", port=0, judge="offline", sample_rate=1.0,
                              embedded=True)
    try:
        send_with_sdk(capture, f"http://127.0.0.1:{service.port}")
        chat(capture.tracer("app"), question="Where is my order?", answer="It ships today.")
    finally:
        service.stop()
    trace_id = f"{capture.spans.get_finished_spans()[0].context.trace_id:032x}"
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations(trace_id=trace_id)
    by_rubric = {e.rubric: e.status for e in evaluations}
    assert len(by_rubric) == len(evaluations)  # one per rubric
    assert {"hallucination", "faithfulness", "relevance", "refusal"} <= set(by_rubric)
    assert by_rubric["faithfulness"] == "skipped"  # no retrieved context in this trace
    assert by_rubric["refusal"] == "scored"


def test_a_port_in_use_is_one_line_naming_the_port(monkeypatch, capsys, tmp_path):
    """`evaluator receive` on a taken port: a one-line error saying to pass another --port (not a
    remark about files), exit 2, and the receiver's loop is shut down cleanly."""
    from evaluator.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr("sys.argv", ["evaluator", "receive", "--embedded", "--port", str(port),
                                         "--db", str(tmp_path / "r.duckdb")])
        with pytest.raises(SystemExit) as exited:
            main()
    err = capsys.readouterr().err
    assert exited.value.code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "--port" in line and "file" not in line
