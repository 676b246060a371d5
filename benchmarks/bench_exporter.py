"""The span exporter: what it costs the app's thread, and how many spans one core turns into
sampled, masked work items.

App-thread cost: each span's `end()` is timed with BatchSpanProcessor + EvaluatorSpanExporter
and, as the baseline in the same run (alternating rounds), BatchSpanProcessor + an exporter
that does nothing. The app is paced (a short sleep between spans, as an app waiting on I/O
would), so the processor's thread really does the exporter's work while the app runs.
"""

from __future__ import annotations

import json
import statistics
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from evaluator.core.records import Trace, parse_trace
from evaluator.core.settings import Settings
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.ingest.otel.normalize import normalize_spans
from evaluator.ingest.otel.spans import from_readable_span
from evaluator.sampling.policy import SamplingPolicy, decide

APP_PAUSE_S = 0.0002


class NoopExporter(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


def _masker():
    """The project's PII masker when it is there; identity (and said so) otherwise."""
    try:
        from evaluator.pii.masking import ingest_trace_masker

        return ingest_trace_masker(Settings()), "PII masker"
    except ImportError:
        return (lambda trace: trace), "identity mask (evaluator.pii missing)"


def _messages(role: str, text: str, **extra) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}], **extra}])


def _chat_attributes(index: int) -> dict:
    question = f"Order {index}: where is my parcel? I ordered it last week and paid by card."
    answer = f"Parcel {index} left the warehouse yesterday and should arrive within two days."
    return {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Answer shipping."}]),
        "gen_ai.input.messages": _messages("user", question),
        "gen_ai.output.messages": _messages("assistant", answer, finish_reason="stop"),
        "gen_ai.usage.input_tokens": 41, "gen_ai.usage.output_tokens": 19,
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.conversation.id": f"conv-{index % 97}",
    }


def _emit_agent(tracer, index: int) -> None:
    with tracer.start_as_current_span("agent") as root:
        root.set_attributes({"openinference.span.kind": "AGENT", "input.value": f"Question {index}?",
                             "session.id": f"s-{index % 50}"})
        with tracer.start_as_current_span("retrieve") as retriever:
            retriever.set_attributes({"openinference.span.kind": "RETRIEVER", **{
                f"retrieval.documents.{d}.document.content": f"Document {d} about parcel {index}." * 5
                for d in range(3)}})
        with tracer.start_as_current_span("tool") as tool:
            tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "track"})
        with tracer.start_as_current_span("chat") as chat:
            chat.set_attributes(_chat_attributes(index))


def _span_end_times(exporter: SpanExporter, spans: int) -> list[float]:
    """Seconds spent in `span.end()` on the app's thread, one per span."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    times: list[float] = []
    clock = time.perf_counter
    for index in range(spans):
        span = tracer.start_span("chat")
        span.set_attributes(_chat_attributes(index))
        started = clock()
        span.end()
        times.append(clock() - started)
        time.sleep(APP_PAUSE_S)
    provider.shutdown()
    return times


def _app_thread_rows(quick: bool, mask, mask_name: str) -> list[dict]:
    rounds, per_round = (2, 1_000) if quick else (6, 2_500)
    ours: list[float] = []
    baseline: list[float] = []
    received = 0
    for _ in range(rounds):
        exporter = EvaluatorSpanExporter(sink=lambda items: None, policy=SamplingPolicy(rate=0.10),
                                         mask=mask)
        ours += _span_end_times(exporter, per_round)
        received += exporter.stats["spans_received"]
        baseline += _span_end_times(NoopExporter(), per_round)
    rows = []
    def p99(values: list[float]) -> float:
        return statistics.quantiles(values, n=100)[98]

    for label, pick in (("median", statistics.median), ("p99", p99)):
        mine, base = pick(ours) * 1e6, pick(baseline) * 1e6
        rows.append(_row(f"span end on the app thread, {label} (BSP + our exporter, rate 0.1, "
                         f"{mask_name})", mine, "µs", "BSP + no-op exporter", base,
                         goal="added < 10 µs" if label == "median" else None))
        rows.append(_row(f"added cost per span on the app thread, {label}", mine - base, "µs",
                         goal="< 10 µs" if label == "median" else None))
    rows.append(_row("spans that reached the exporter (BSP queue never overflowed)",
                     received / (rounds * per_round) * 100, "%", goal="100 %"))
    return rows


def _throughput_rows(quick: bool, mask, mask_name: str) -> list[dict]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    traces = 300 if quick else 2_000
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for index in range(traces):
        _emit_agent(tracer, index)
    readable = list(memory.get_finished_spans())
    provider.shutdown()
    grouped: dict[int, list] = {}
    for span in readable:
        grouped.setdefault(span.context.trace_id, []).append(from_readable_span(span))

    def best_seconds(work) -> float:
        """Least CPU time of three runs: the run least disturbed by GC and neighbours."""
        times = []
        for _ in range(3):
            started = time.process_time()
            work()
            times.append(time.process_time() - started)
        return min(times)

    def normalize_all(policy: SamplingPolicy) -> list[Trace]:
        traces = []
        for spans in grouped.values():
            trace = normalize_spans(spans)
            traces.append(mask(trace) if decide(trace, policy).sampled else trace)
        return traces

    def export_all() -> None:
        exporter = EvaluatorSpanExporter(sink=lambda items: None, policy=SamplingPolicy(rate=0.10),
                                         mask=mask)
        for start in range(0, len(readable), 512):
            exporter.export(readable[start:start + 512])
        exporter.shutdown()

    lines = [trace.model_dump_json() for trace in normalize_all(SamplingPolicy(rate=0.0))]
    parse_rate = len(lines) / best_seconds(lambda: [parse_trace(line) for line in lines])
    rows = []
    for rate in (0.10, 1.0):
        policy = SamplingPolicy(rate=rate)
        elapsed = best_seconds(lambda policy=policy: normalize_all(policy))
        rows.append(_row(f"spans/s normalize+sample+mask, one core (4-span agent traces, rate {rate:g}, "
                         f"{mask_name})", len(readable) / elapsed, "spans/s",
                         "parse_trace of the same traces as JSONL (traces/s)", parse_rate,
                         ratio=(len(grouped) / elapsed) / parse_rate))
    elapsed = best_seconds(export_all)
    rows.append(_row("spans/s through exporter.export() (convert+assemble+normalize+sample+mask, "
                     "rate 0.1), one core", len(readable) / elapsed, "spans/s"))
    rows.append(_sampling_row(normalize_all(SamplingPolicy(rate=0.0)), best_seconds))
    return rows


def _sampling_row(traces: list[Trace], best_seconds) -> dict:
    """What per-rubric rates and the daily budget's pacing add to one sampling decision."""
    from evaluator.sampling.spend import BudgetPacer, InMemorySpend

    plain = SamplingPolicy(rate=0.10)
    rich = SamplingPolicy(rate=0.10, rubric_rates={"hallucination": 0.30, "refusal": 0.02},
                          daily_budget_usd=10.0)
    pacer = BudgetPacer(10.0, InMemorySpend())
    repeats = max(1, 20_000 // len(traces))

    def decide_all(policy_now) -> None:
        for _ in range(repeats):
            for trace in traces:
                decide(trace, policy_now())

    decisions = repeats * len(traces)
    base = best_seconds(lambda: decide_all(lambda: plain)) / decisions
    paced = best_seconds(lambda: decide_all(lambda: pacer.policy(rich))) / decisions
    return _row("us per sampling decision, 2 rubric rates + daily budget pacer", paced * 1e6, "us",
                "plain policy (one rate), us", base * 1e6, ratio=paced / base)


def _burst_rows(quick: bool, mask) -> list[dict]:
    """A burst of spans as fast as the app can end them, through the SDK's default
    BatchSpanProcessor and through evaluator_span_processor's settings: the share of spans
    that reach the exporter (the rest the SDK drops: "Queue full")."""
    from evaluator.ingest.otel import evaluator_span_processor

    spans = 3_000 if quick else 6_000

    def emit_chats(tracer) -> None:
        for index in range(spans):
            with tracer.start_as_current_span("chat") as span:
                span.set_attributes(_chat_attributes(index))

    def emit_agents(tracer) -> None:
        for index in range(spans // 4):
            _emit_agent(tracer, index)

    rows = []
    for shape, emit in (("1-span chat traces", emit_chats), ("4-span agent traces", emit_agents)):
        reached = {}
        for name, make in (("SDK default BSP", BatchSpanProcessor),
                           ("evaluator_span_processor", evaluator_span_processor)):
            exporter = EvaluatorSpanExporter(sink=lambda items: None,
                                             policy=SamplingPolicy(rate=0.10), mask=mask)
            provider = TracerProvider()
            provider.add_span_processor(make(exporter))
            started = time.perf_counter()
            emit(provider.get_tracer("bench"))
            emitted_s = time.perf_counter() - started
            provider.shutdown()
            reached[name] = exporter.stats["spans_received"] / spans * 100
            rows.append(_row(f"spans that reached the exporter, burst of {spans:,} ({shape}, "
                             f"app at {spans / emitted_s:,.0f} spans/s), {name}", reached[name],
                             "%", goal="100 %" if make is not BatchSpanProcessor else None))
    return rows


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None, ratio=None):
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    return {"benchmark": "exporter", "metric": metric, "value": value, "unit": unit, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def run(quick: bool = False) -> list[dict]:
    mask, mask_name = _masker()
    return (_app_thread_rows(quick, mask, mask_name) + _throughput_rows(quick, mask, mask_name)
            + _burst_rows(quick, mask))


if __name__ == "__main__":
    for r in run():
        print(r)
