"""EvaluatorSpanExporter on a real TracerProvider: conventions, assembly, bounds, failures, Redis."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import dramatiq
import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode

from evaluator.core.records import Trace
from evaluator.core.settings import Settings
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.pii.masking import payload_masker
from evaluator.sampling.policy import SamplingPolicy, trace_fraction

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = SamplingPolicy(rate=1.0)


def keep(trace: Trace) -> Trace:
    return trace


class Collect:
    """A sink that remembers what it was sent."""

    def __init__(self) -> None:
        self.items = []

    def __call__(self, items) -> None:
        self.items.extend(items)

    @property
    def outputs(self) -> list[str]:
        return [item.trace.output for item in self.items]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SequentialIds(IdGenerator):
    """Trace ids 1, 2, 3... so two processes can emit the very same traces."""

    def __init__(self) -> None:
        self._next = 0

    def generate_trace_id(self) -> int:
        self._next += 1
        return self._next

    def generate_span_id(self) -> int:
        return self._next * 1000 + 1


def tracer_for(exporter, batch: bool = False, ids: IdGenerator | None = None):
    provider = TracerProvider(id_generator=ids) if ids else TracerProvider()
    processor = (BatchSpanProcessor(exporter, schedule_delay_millis=20) if batch
                 else SimpleSpanProcessor(exporter))
    provider.add_span_processor(processor)
    return provider, provider.get_tracer("app")


def messages(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def chat(tracer, question: str = "Where is my order?", answer: str = "It ships today.", **attributes):
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": messages("user", question),
            "gen_ai.output.messages": messages("assistant", answer),
            **attributes,
        })


def all_conventions(tracer) -> None:
    chat(tracer, answer="semconv")
    with tracer.start_as_current_span("openai.chat") as span:
        span.set_attributes({"gen_ai.system": "openai", "gen_ai.prompt.0.role": "user",
                             "gen_ai.prompt.0.content": "hi",
                             "gen_ai.completion.0.content": "openllmetry"})
    with tracer.start_as_current_span("chat events") as span:
        span.set_attribute("gen_ai.system", "anthropic")
        span.add_event("gen_ai.user.message", {"content": "hi"})
        span.add_event("gen_ai.choice", {"body": json.dumps({"message": {"content": "events"}})})
    with tracer.start_as_current_span("llm") as span:
        span.set_attributes({"openinference.span.kind": "LLM", "input.value": "hi",
                             "llm.output_messages.0.message.content": "openinference"})


def agent(tracer) -> None:
    with tracer.start_as_current_span("agent") as root:
        root.set_attributes({"openinference.span.kind": "AGENT", "input.value": "Is it waterproof?"})
        with tracer.start_as_current_span("search") as retriever:
            retriever.set_attributes({"openinference.span.kind": "RETRIEVER",
                                      "retrieval.documents.0.document.content": "Rated IP68."})
        with tracer.start_as_current_span("weather") as tool:
            tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather"})
        chat(tracer, question="Is it waterproof?", answer="Yes, IP68.")


def unfinished_trace(tracer, payload: str = "x") -> None:
    """A child LLM span that ends under a root span that never does."""
    root = tracer.start_span("request")
    with tracer.start_as_current_span("chat", context=trace_api.set_span_in_context(root)) as span:
        span.set_attributes({"gen_ai.operation.name": "chat",
                             "gen_ai.output.messages": messages("assistant", payload)})


def test_every_convention_reaches_the_sink_masked():
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING,
                                     mask=lambda t: t.model_copy(update={"output": t.output.upper(),
                                                                         "pii_masked": True}))
    provider, tracer = tracer_for(exporter)
    all_conventions(tracer)
    provider.shutdown()
    assert sink.outputs == ["SEMCONV", "OPENLLMETRY", "EVENTS", "OPENINFERENCE"]
    assert all(item.trace.pii_masked and item.decision.reason == "random" for item in sink.items)
    stats = exporter.stats
    assert stats["spans_received"] == 4 and stats["traces_completed"] == 4
    assert stats["traces_sampled"] == stats["traces_enqueued"] == 4


def test_sampling_is_decided_before_masking():
    masked: list[str] = []

    def mask(trace: Trace) -> Trace:
        masked.append(trace.trace_id)
        return trace

    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=SamplingPolicy(rate=0.0), mask=mask)
    provider, tracer = tracer_for(exporter)
    for _ in range(20):
        chat(tracer)
    chat(tracer, **{"user.feedback": "thumbs_down"})
    provider.shutdown()
    assert len(masked) == 1 and [i.decision.reason for i in sink.items] == ["negative_feedback"]
    assert masked == [sink.items[0].trace.trace_id]


def test_multi_span_trace_through_the_batch_processor():
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep)
    provider, tracer = tracer_for(exporter, batch=True)
    agent(tracer)
    provider.force_flush()
    assert len(sink.items) == 1, exporter.stats
    trace = sink.items[0].trace
    assert trace.question == "Is it waterproof?" and trace.context == ["Rated IP68."]
    assert trace.output == "Yes, IP68."
    assert trace.metadata["otel"]["spans"] == 4 and trace.metadata["otel"]["tools"] == ["weather"]
    provider.shutdown()


def test_invalid_llm_traces_are_counted_and_foreign_traces_ignored(caplog):
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep)
    provider, tracer = tracer_for(exporter)
    with caplog.at_level(logging.WARNING, logger="evaluator.ingest.otel.exporter"):
        with tracer.start_as_current_span("chat") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
        with tracer.start_as_current_span("GET /health"):
            pass
    provider.shutdown()
    stats = exporter.stats
    assert (stats["invalid"], stats["traces_ignored"], stats["traces_enqueued"]) == (1, 1, 0)
    assert "carry no output text" in caplog.text and "counted only" in caplog.text


def test_root_that_never_ends_completes_after_the_timeout():
    clock, sink = Clock(), Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep,
                                     assembly_timeout_s=30, clock=clock)
    provider, tracer = tracer_for(exporter)
    root = tracer.start_span("request")
    with tracer.start_as_current_span("chat", context=trace_api.set_span_in_context(root)) as span:
        span.set_attributes({"gen_ai.operation.name": "chat",
                             "gen_ai.output.messages": messages("assistant", "orphan answer")})
    clock.now += 29
    chat(tracer, answer="complete")
    assert sink.outputs == ["complete"] and exporter.stats["buffered_traces"] == 1
    clock.now += 2
    chat(tracer, answer="later")
    assert sorted(sink.outputs) == ["complete", "later", "orphan answer"]
    root.end()
    assert exporter.stats["spans_late"] == 1 and exporter.stats["buffered_traces"] == 0
    provider.shutdown()


def test_buffer_bounds_hold_under_a_flood_of_incomplete_traces():
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep,
                                     max_buffered_spans=200, max_buffered_bytes=400_000)
    provider, tracer = tracer_for(exporter)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    worst_spans = worst_bytes = 0
    for index in range(2_000):
        unfinished_trace(tracer, payload="y" * 4_000)
        if index % 50 == 0:
            stats = exporter.stats
            worst_spans = max(worst_spans, stats["buffered_spans"])
            worst_bytes = max(worst_bytes, stats["buffered_bytes"])
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stats = exporter.stats
    assert worst_spans <= 200 and worst_bytes <= 400_000
    assert stats["dropped_buffer_full"] == 2_000 - stats["buffered_traces"] > 1_800
    assert grown < 4_000_000, f"exporter kept {grown:,} bytes for a 400,000-byte bound"
    provider.shutdown()
    assert len(sink.items) == stats["buffered_traces"]


def test_byte_bound_alone_drops_the_oldest():
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep, max_buffered_bytes=50_000)
    provider, tracer = tracer_for(exporter)
    for index in range(30):
        unfinished_trace(tracer, payload=f"{index:02d}" + "z" * 10_000)
    assert exporter.stats["buffered_bytes"] <= 50_000
    provider.shutdown()
    assert [o[:2] for o in sink.outputs] == [f"{i:02d}" for i in range(30 - len(sink.items), 30)]


def test_dead_redis_costs_the_app_nothing_but_dropped_traces(caplog):
    exporter = EvaluatorSpanExporter("redis://127.0.0.1:1/0", policy=EVERYTHING, mask=keep)
    provider, tracer = tracer_for(exporter)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="evaluator.ingest.otel.exporter"):
        for _ in range(50):
            chat(tracer)
        with tracer.start_as_current_span("chat") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
        provider.shutdown()
    elapsed = time.perf_counter() - started
    stats = exporter.stats
    assert stats["dropped_enqueue_failed"] == 51 and stats["traces_enqueued"] == 0
    assert elapsed < 5, f"a dead Redis stalled the app for {elapsed:.1f} s"
    assert caplog.text.count("dropped 1 sampled traces") == 1


def test_failures_never_reach_the_app():
    def broken_sink(items):
        raise RuntimeError("sink down")

    def broken_mask(trace):
        raise ValueError("masker bug")

    sink_exporter = EvaluatorSpanExporter(sink=broken_sink, policy=EVERYTHING, mask=keep)
    mask_exporter = EvaluatorSpanExporter(sink=Collect(), policy=EVERYTHING, mask=broken_mask)
    for exporter in (sink_exporter, mask_exporter):
        provider, tracer = tracer_for(exporter)
        chat(tracer)
        provider.shutdown()
    assert sink_exporter.stats["dropped_enqueue_failed"] == 1
    assert mask_exporter.stats["dropped_mask_failed"] == 1
    assert sink_exporter.export([object()]) is SpanExportResult.FAILURE


def test_default_masker_is_the_project_pii_masker_and_fails_closed():
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING)
    provider, tracer = tracer_for(exporter)
    chat(tracer, answer="Mail alice.smith@example.com for a refund.")
    provider.shutdown()
    try:
        from evaluator.pii import PiiConfig, PiiMasker  # noqa: F401
    except ImportError:
        assert exporter.stats["dropped_mask_failed"] == 1 and sink.items == []
        return
    assert len(sink.items) == 1
    assert "alice.smith@example.com" not in sink.items[0].trace.output


@pytest.mark.parametrize("mode", ["hash", "off"])
def test_default_masker_follows_the_pii_mode_of_settings(mode):
    """Without `mask`, EVALUATOR_PII_MODE applies (as in `evaluator receive` and `ingest`)."""
    sink = Collect()
    settings = Settings(pii_mode=mode, pii_hash_salt="exporter-test")
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, settings=settings)
    provider, tracer = tracer_for(exporter)
    chat(tracer, answer="Mail alice.smith@example.com for a refund.")
    provider.shutdown()
    [item] = sink.items
    answer = "Mail alice.smith@example.com for a refund."
    mask_text = payload_masker(settings)
    if mode == "off":
        assert mask_text is None and item.trace.output == answer
    else:
        assert mask_text is not None and item.trace.output == mask_text(answer)
        assert "alice.smith" not in item.trace.output and "<EMAIL_1>" not in item.trace.output


def test_default_masker_leaves_text_raw_for_a_raw_judge_but_still_refuses_pii_ids():
    sink, dead = Collect(), Collect()
    exporter = EvaluatorSpanExporter(sink=sink, dead_letters=dead, policy=EVERYTHING,
                                     settings=Settings(pii_judge_sees="raw"))
    provider, tracer = tracer_for(exporter)
    chat(tracer, answer="Mail alice.smith@example.com for a refund.")
    chat(tracer, answer="hi", **{"session.id": "bob@example.com"})
    provider.shutdown()
    assert [item.trace.output for item in sink.items] == ["Mail alice.smith@example.com for a refund."]
    [refused] = dead.items
    assert "session" in (refused.field or "") + refused.error and exporter.stats["invalid"] == 1


def test_threads_share_one_exporter_without_losing_traces():
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep)
    provider, tracer = tracer_for(exporter, batch=True)

    def work() -> None:
        for _ in range(50):
            agent(tracer)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.shutdown()
    stats = exporter.stats
    assert stats["spans_received"] == 8 * 50 * 4
    assert stats["traces_completed"] == stats["traces_enqueued"] == len(sink.items) == 400


_SAMPLING_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_otel_exporter import Collect, SequentialIds, chat, keep, tracer_for
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.sampling.policy import SamplingPolicy
sink = Collect()
exporter = EvaluatorSpanExporter(sink=sink, policy=SamplingPolicy(rate=0.1), mask=keep)
provider, tracer = tracer_for(exporter, batch=True, ids=SequentialIds())
for _ in range(2000):
    chat(tracer)
provider.shutdown()
print(json.dumps(sorted(item.trace.trace_id for item in sink.items)))
"""


def test_two_processes_sample_the_same_traces():
    script = _SAMPLING_SCRIPT.format(tests=str(ROOT / "tests"))
    processes = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    first, second = (json.loads(stdout) for stdout, _ in outputs)
    expected = sorted(f"{i:032x}" for i in range(1, 2001) if trace_fraction(f"{i:032x}") < 0.1)
    assert first == second == expected
    assert 140 <= len(first) <= 260


@pytest.mark.redis
def test_real_redis_receives_batches_and_dead_letters(redis_url):
    import redis

    from evaluator.queue.messages import ResultBatch

    app_broker = dramatiq.broker.global_broker
    exporter = EvaluatorSpanExporter(redis_url, judge="offline", policy=EVERYTHING, mask=keep,
                                     batch_size=3)
    provider, tracer = tracer_for(exporter, batch=True)
    for index in range(7):
        chat(tracer, answer=f"answer {index}")
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
        span.set_status(Status(StatusCode.UNSET))
    provider.shutdown()

    assert exporter.stats["traces_enqueued"] == 7 and exporter.stats["dead_letters_published"] == 1
    client = redis.Redis.from_url(redis_url)
    assert client.llen("dramatiq:evaluator") == 3
    messages = [dramatiq.Message.decode(raw) for raw in client.hvals("dramatiq:evaluator.msgs")]
    payloads = [message.args[0] for message in messages]
    assert {m.actor_name for m in messages} == {"evaluate_batch"}
    assert sorted(len(p["items"]) for p in payloads) == [1, 3, 3]
    assert {p["judge"] for p in payloads} == {"offline"}
    outputs = sorted(item["trace"]["output"] for p in payloads for item in p["items"])
    assert outputs == [f"answer {i}" for i in range(7)]
    entries = client.xrange("evaluator:results")
    assert len(entries) == 1
    batch = ResultBatch.from_json(entries[0][1][b"b"])
    assert "carry no output text" in batch.dead_letters[0].error
    assert "gen_ai.operation.name" in batch.dead_letters[0].payload
    assert "gpt-4o" not in batch.dead_letters[0].payload, "attribute values stay in the app"
    assert dramatiq.broker.global_broker is app_broker, "the app's dramatiq broker was replaced"


def test_span_with_a_remote_parent_is_the_local_root():
    """In a distributed trace the app's first span has a parent in another process."""
    sink = Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep)
    provider, tracer = tracer_for(exporter)
    caller = trace_api.SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True,
                                   trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED))
    context = trace_api.set_span_in_context(trace_api.NonRecordingSpan(caller))
    with tracer.start_as_current_span("handle request", context=context):
        chat(tracer, answer="served")
    assert sink.outputs == ["served"] and exporter.stats["buffered_traces"] == 0
    assert sink.items[0].trace.trace_id == f"{0xABC:032x}"
    provider.shutdown()


class Recorded(SpanExporter):
    """Keeps the ended spans, to hand some of them to the exporter as if the rest were lost."""

    def __init__(self) -> None:
        self.spans = []

    def export(self, spans):
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def test_traces_whose_spans_never_arrived_are_counted_incomplete():
    """Spans dropped before the exporter (a full BatchSpanProcessor queue) leave traces without
    their root or with a missing parent: handed on at the timeout, and counted."""
    recorded = Recorded()
    provider, tracer = tracer_for(recorded)
    agent(tracer)  # trace A: its root will be lost
    agent(tracer)
    with tracer.start_as_current_span("agent"):  # trace B: its "step" span will be lost
        with tracer.start_as_current_span("step"):
            chat(tracer, answer="B")
    chat(tracer, answer="whole")
    provider.shutdown()
    a, b = recorded.spans[3].context.trace_id, recorded.spans[-2].context.trace_id
    lost = {recorded.spans[3].context.span_id,  # A's root
            next(s for s in recorded.spans if s.name == "step").context.span_id}
    clock, sink = Clock(), Collect()
    exporter = EvaluatorSpanExporter(sink=sink, policy=EVERYTHING, mask=keep, clock=clock,
                                     assembly_timeout_s=30)
    exporter.export([s for s in recorded.spans if s.context.span_id not in lost])
    assert exporter.stats["traces_incomplete"] == 1, "B's root arrived: handed on at once"
    clock.now += 31
    exporter.export([])
    assert exporter.stats["traces_incomplete"] == 2
    assert exporter.stats["traces_completed"] == 4
    assert {a, b} <= {int(item.trace.trace_id, 16) for item in sink.items}


def test_the_recommended_processor_delivers_a_burst_whole():
    """The SDK's defaults drop spans once 2,048 wait ("Queue full"); with the settings of
    evaluator_span_processor a 6,000-span burst reaches the exporter whole."""
    from evaluator.ingest.otel import evaluator_span_processor

    exporter = EvaluatorSpanExporter(sink=Collect(), policy=SamplingPolicy(rate=0.1), mask=keep)
    provider = TracerProvider()
    provider.add_span_processor(evaluator_span_processor(exporter))
    tracer = provider.get_tracer("app")
    for index in range(6_000):
        chat(tracer, answer=f"answer {index}")
    provider.shutdown()
    stats = exporter.stats
    assert (stats["spans_received"], stats["traces_completed"]) == (6_000, 6_000)
    assert stats["traces_incomplete"] == 0


@pytest.fixture
def hung_redis_url():
    """A TCP server that accepts connections and never answers (a Redis under SIGSTOP)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


@pytest.mark.parametrize("processor", ["sdk default", "recommended"])
def test_shutdown_takes_at_most_the_timeout_when_redis_hangs(hung_redis_url, processor):
    """App exit with a Redis that never answers: one command timeout (2 s by default), not one
    per command or per Redis client (was 15-30 s)."""
    from evaluator.ingest.otel import evaluator_span_processor

    exporter = EvaluatorSpanExporter(hung_redis_url, policy=EVERYTHING, mask=keep)
    provider = TracerProvider()
    provider.add_span_processor(evaluator_span_processor(exporter) if processor == "recommended"
                                else BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for index in range(200):
        chat(tracer, answer=f"answer {index}")
    started = time.perf_counter()
    provider.shutdown()
    elapsed = time.perf_counter() - started
    print(f"{processor}: shutdown {elapsed:.2f} s with a hung Redis")
    assert exporter.stats["dropped_enqueue_failed"] == 200
    assert elapsed < exporter.timeout_s + 1.0
