"""Scores back out as OpenTelemetry (issue 20 item 2): a `gen_ai.evaluation.result` event per
stored evaluation, parented to the evaluated span, through the SDK's OTLP/HTTP log exporter,
asserted on what a test OTLP endpoint decodes from the protobuf."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from evaluator.core.records import Evaluation, Trace
from evaluator.core.rows import StoredTrace
from evaluator.core.settings import Settings
from evaluator.ingest.otel.spans import any_value
from evaluator.queue.channel import InMemoryChannel
from evaluator.queue.messages import ResultBatch
from evaluator.store import Store
from evaluator.worker.evaluation_events import EvaluationEvents, event_attributes
from evaluator.worker.sink import Sink
from tests.support.otel_capture import Capture
from tests.support.otlp_collector import OtlpLogsCollector
from tests.test_otel_exporter import chat


def attributes(record) -> dict:
    return {kv.key: any_value(kv.value) for kv in record.attributes}


def test_receive_embedded_sends_one_event_per_evaluation_parented_to_the_llm_span(
        tmp_path: Path, capture: Capture) -> None:
    """App spans -> `evaluator receive --embedded` -> DuckDB, and each stored evaluation ->
    a gen_ai.evaluation.result event at an OTLP endpoint, on the evaluated span."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from evaluator.worker.receive_job import ReceiverService

    db = tmp_path / "e.duckdb"
    with OtlpLogsCollector() as collector:
        settings = Settings.from_env(db_path=db, receiver_log_wait_s=0, events_endpoint=collector.endpoint)
        service = ReceiverService(settings, host="127.0.0.1", port=0, judge="offline", sample_rate=1.0,
                                  embedded=True)
        try:
            capture.tracer_provider.add_span_processor(SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"http://127.0.0.1:{service.port}/v1/traces")))
            with capture.tracer("app").start_as_current_span("request"):
                chat(capture.tracer("app"), question="Where is my order?", answer="It ships today.",
                     **{"gen_ai.response.id": "chatcmpl-42"})
        finally:
            service.stop()  # the sink's events are flushed when the pipeline closes
        records = collector.records
    llm_span = next(s for s in capture.spans.get_finished_spans() if s.name == "chat")
    with Store(db, read_only=True) as store:
        stored = {e.evaluation_id: e for e in store.evaluations()}
    assert len(records) == len(stored)  # one event per stored evaluation, every rubric's
    assert {"hallucination", "faithfulness", "relevance", "refusal"} <= {e.rubric for e in stored.values()}
    for record in records:
        assert record.event_name == "gen_ai.evaluation.result"
        assert record.trace_id == llm_span.context.trace_id.to_bytes(16, "big")
        assert record.span_id == llm_span.context.span_id.to_bytes(8, "big")
        found = attributes(record)
        evaluation = stored[found["evaluator.evaluation_id"]]
        assert found["gen_ai.evaluation.name"] == evaluation.rubric
        assert found["gen_ai.response.id"] == "chatcmpl-42"
        assert found["evaluator.status"] == evaluation.status
        if evaluation.status == "scored":
            assert found["gen_ai.evaluation.score.value"] == evaluation.score
            assert found["gen_ai.evaluation.score.label"] == evaluation.label
        if evaluation.reasoning:
            assert found["gen_ai.evaluation.explanation"] == evaluation.reasoning


def evaluation(status: str = "scored", **fields) -> Evaluation:
    base = dict(evaluation_id="e1", trace_id="0af7651916cd43dd8448eb211c80319c", rubric="relevance",
                rubric_version=1, rubric_hash="h", judge="offline", judge_hash="j", status=status)
    return Evaluation(**{**base, **fields})


def test_an_errored_evaluation_carries_error_type() -> None:
    errored = event_attributes(evaluation("error", reason="judge call failed: litellm.RateLimitError: slow down"))
    assert errored["error.type"] == "litellm.RateLimitError"
    assert "gen_ai.evaluation.score.value" not in errored
    assert event_attributes(evaluation("error", reason="budget spent"))["error.type"] == "_OTHER"
    scored = event_attributes(evaluation(label="relevant", score=1.0, reasoning="on topic"))
    assert "error.type" not in scored
    assert (scored["gen_ai.evaluation.score.label"], scored["gen_ai.evaluation.score.value"],
            scored["gen_ai.evaluation.explanation"]) == ("relevant", 1.0, "on topic")


def test_a_failing_endpoint_is_counted_and_the_sink_still_stores(tmp_path: Path) -> None:
    trace = Trace(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", output="x")
    channel = InMemoryChannel()
    channel.publish(ResultBatch(evaluations=[evaluation(label="relevant", score=1.0)],
                                traces=[StoredTrace(trace, "random", 10.0)]))
    with OtlpLogsCollector(status=400) as refusing:
        events = EvaluationEvents.to_endpoint(refusing.endpoint, timeout_s=2)
        sink = Sink(channel, tmp_path / "e.duckdb", events=events)
        assert sink.drain_once(block_ms=0) == 2
        events.shutdown()
        assert refusing.requests == 1
    assert events.stats == {"emitted": 1, "exported": 0, "failed": 1, "queued_or_dropped": 0,
                            "unparented": 0}
    with Store(tmp_path / "e.duckdb", read_only=True) as store:
        assert [e.evaluation_id for e in store.evaluations()] == ["e1"]


def test_traces_without_otel_ids_are_sent_unparented(tmp_path: Path) -> None:
    with OtlpLogsCollector() as collector:
        events = EvaluationEvents.to_endpoint(collector.endpoint)
        events.emit([evaluation(trace_id="t-0001")], [Trace(trace_id="t-0001", output="x")])
        events.shutdown()
    [record] = collector.records
    assert (record.trace_id, record.span_id) == (b"", b"")
    assert events.stats["unparented"] == 1


def test_a_redelivered_batch_emits_only_the_evaluations_it_stored(tmp_path: Path) -> None:
    """At-least-once delivery: the channel can hand the sink a batch it already stored (an ack
    lost, a worker retrying); each stored evaluation is announced once."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    trace = Trace(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", output="x")
    first = ResultBatch(evaluations=[evaluation(evaluation_id="e1")], traces=[StoredTrace(trace, "random", 10.0)])
    later = ResultBatch(evaluations=[evaluation(evaluation_id="e1"), evaluation(evaluation_id="e2"),
                                     evaluation(evaluation_id="e2")],
                        traces=[StoredTrace(trace, "random", 10.0)])
    channel = InMemoryChannel()
    exported = InMemoryLogRecordExporter()
    events = EvaluationEvents(exported)
    sink = Sink(channel, tmp_path / "e.duckdb", events=events)
    for batch in (first, first, later):
        channel.publish(batch)
        sink.drain_once(block_ms=0)
    events.shutdown()
    sent = [log.log_record.attributes["evaluator.evaluation_id"] for log in exported.get_finished_logs()]
    assert sorted(sent) == ["e1", "e2"]
    assert events.stats["emitted"] == 2
    assert all(log.log_record.span_id == 0xb7ad6b7169203331 for log in exported.get_finished_logs())


def test_event_counters_are_prometheus_metrics_the_sink_serves() -> None:
    """emitted, exported, failed and unparented reach the registry `evaluator sink --metrics-port`
    serves (deltas: the registry is the process's)."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult

    from evaluator.worker.metrics import metrics

    class Refusing(InMemoryLogRecordExporter):
        def export(self, batch):
            return LogRecordExportResult.FAILURE

    names = ("emitted", "exported", "failed", "unparented")

    def counters() -> dict[str, float]:
        registry = metrics().registry
        return {name: registry.get_sample_value(f"evaluator_evaluation_events_{name}_total") or 0.0
                for name in names}

    before = counters()
    parented = Trace(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", output="x")
    accepting, refusing = EvaluationEvents(InMemoryLogRecordExporter()), EvaluationEvents(Refusing())
    accepting.emit([evaluation(evaluation_id="e1"), evaluation(evaluation_id="e2", trace_id="t-0001")],
                   [parented, Trace(trace_id="t-0001", output="x")])
    refusing.emit([evaluation(evaluation_id="e3")], [parented])
    accepting.shutdown()
    refusing.shutdown()
    after = counters()
    assert {name: after[name] - before[name] for name in names} == {
        "emitted": 3, "exported": 2, "failed": 1, "unparented": 1}
    assert {name: accepting.stats[name] + refusing.stats[name] for name in names} == {
        "emitted": 3, "exported": 2, "failed": 1, "unparented": 1}
