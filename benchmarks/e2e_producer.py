"""The app side of the service benchmark, in a process of its own: RAG traces emitted through
the real opentelemetry-sdk (TracerProvider + BatchSpanProcessor, default settings) into
EvaluatorSpanExporter, which samples, masks and enqueues to Redis.

    python -m benchmarks.e2e_producer REDIS_URL --traces-per-s R --seconds S [--judge NAME]

Each trace is an agent span with a retriever span (the sample traces' documents) and a GenAI
chat span (system instructions, question, answer). Prints the exporter's counters as one JSON
line at the end. The PII masker is wrapped in `timed("mask")`, so with EVALUATOR_STAGE_TIMINGS
set the mask stage is counted like normalize, sample and enqueue.
"""

from __future__ import annotations

import argparse
import json
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from benchmarks.e2e_support import percentile
from evaluator.core.settings import PROJECT_ROOT, Settings
from evaluator.core.stage_timing import timed
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.pii.masking import ingest_trace_masker
from evaluator.sampling.policy import SamplingPolicy


def _parts(role: str, text: str, **extra) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}], **extra}])


def load_traces(limit: int = 2_000) -> list[dict]:
    with open(PROJECT_ROOT / "datasets" / "sample_traces.jsonl", encoding="utf-8") as lines:
        return [json.loads(line) for _, line in zip(range(limit), lines, strict=False)]


def emit(tracer, trace: dict, index: int, tag: str) -> None:
    """One trace; `tag` and `index` make its answer unique, so no judge verdict is cached."""
    question = trace["input"] if isinstance(trace["input"], str) else trace["input"][-1]["content"]
    answer = f"{trace['output']} (ref {tag}-{index})"
    with tracer.start_as_current_span("agent") as root:
        root.set_attributes({"openinference.span.kind": "AGENT", "input.value": question,
                             "session.id": f"s-{index % 50}"})
        with tracer.start_as_current_span("retrieve") as retriever:
            retriever.set_attributes({"openinference.span.kind": "RETRIEVER", **{
                f"retrieval.documents.{d}.document.content": doc
                for d, doc in enumerate(trace["context"])}})
        with tracer.start_as_current_span("chat") as chat:
            chat.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": trace.get("system") or "Answer briefly."}]),
                "gen_ai.input.messages": _parts("user", question),
                "gen_ai.output.messages": _parts("assistant", answer, finish_reason="stop"),
                "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 50,
            })


def produce(redis_url: str, judge: str, traces_per_s: float, seconds: float, sample_rate: float,
            batch_size: int, tag: str) -> dict:
    waited: list[float] = []
    masker = ingest_trace_masker(Settings())

    def mask(trace):
        """Masks are applied right before the enqueue: the wait since the span ended so far is
        the BatchSpanProcessor's (the exporter's own work is a few ms)."""
        if trace.end_time is not None:
            waited.append(time.time() - trace.end_time.timestamp())
        return masker(trace)

    exporter = EvaluatorSpanExporter(redis_url, judge=judge, batch_size=batch_size,
                                     policy=SamplingPolicy(rate=sample_rate), mask=timed("mask")(mask))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    samples = load_traces()
    started = time.monotonic()
    cpu_started = time.process_time()
    total = int(traces_per_s * seconds)
    for index in range(total):
        delay = started + index / traces_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        emit(tracer, samples[index % len(samples)], index, tag)
    provider.shutdown()  # flushes the processor and the exporter
    elapsed = time.monotonic() - started
    return {"traces": total, "elapsed_s": elapsed, "cpu_s": time.process_time() - cpu_started,
            "span_end_to_enqueue_s": {q: percentile(waited, q) for q in (50, 95, 99)},
            **exporter.stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("redis_url")
    parser.add_argument("--traces-per-s", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--judge", default="bench")
    parser.add_argument("--sample-rate", type=float, default=0.10)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--tag", default="run")
    args = parser.parse_args()
    result = produce(args.redis_url, args.judge, args.traces_per_s, args.seconds, args.sample_rate,
                     args.batch_size, args.tag)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
