"""What to tell the user when an LLM span carries no message content.

The instrumentation scope name of the span says which package made it, and so which setting
turns content on and where that package puts it: on the span, or in log records (OTel events)
that must reach Evaluator too. The hint says what was actually seen: log records or events
that carry no content (capture is off), none at all where the package writes content to log
records (they were not received), or a span without content from a package that only ever
writes it on the span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluator.ingest.otel.spans import SpanRecord

SEND_LOGS = ("send its log records to Evaluator too (an EvaluatorLogExporter on the app's "
             "LoggerProvider, or the Collector's logs file read with --format otlp-json)")


@dataclass(frozen=True)
class Instrumentation:
    package: str
    setting: str
    """What turns message content on (and where it then goes)."""
    writes_logs: bool
    """Whether the package can put message content in log records rather than on the span."""


_OFFICIAL_EVENTS = Instrumentation(
    "opentelemetry-instrumentation-openai-v2 (event path: 2.3b0, or 2.4b0+ without the opt-in)",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true writes content to log records only; "
    "on 2.4b0+, OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental with "
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only puts it on the span",
    writes_logs=True,
)
_UTIL_GENAI = Instrumentation(
    "opentelemetry-util-genai (opentelemetry-instrumentation-openai-v2 2.4b0+ and others)",
    "OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental with "
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only or span_and_event (on the span; "
    "event_only writes it to gen_ai.client.inference.operation.details log records only); "
    "'true' is not a valid value there",
    writes_logs=True,
)
_OPENLLMETRY = Instrumentation(
    "OpenLLMetry (opentelemetry-instrumentation-*, traceloop-sdk)",
    "TRACELOOP_TRACE_CONTENT=true (the default); the instrumentor's use_attributes=True (0.62+; "
    "use_legacy_attributes=True before; the default) puts content on the span, False in log records only",
    writes_logs=True,
)
_OPENINFERENCE = Instrumentation(
    "OpenInference (openinference-instrumentation-*)",
    "unset OPENINFERENCE_HIDE_INPUTS, OPENINFERENCE_HIDE_OUTPUTS, OPENINFERENCE_HIDE_INPUT_MESSAGES "
    "and OPENINFERENCE_HIDE_OUTPUT_MESSAGES (or TraceConfig(hide_inputs=False, hide_outputs=False))",
    writes_logs=False,
)
_LOGFIRE = Instrumentation(
    "logfire",
    "logfire records content unless scrubbing removed it (logfire.configure(scrubbing=...)); a "
    "streamed answer is in the separate 'streaming response from ...' span",
    writes_logs=False,
)
_GENERIC = Instrumentation(
    "an unknown instrumentation",
    "for OTel GenAI instrumentations OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true "
    "(2.3b0-style) or span_only with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental "
    "(util-genai); for OpenLLMetry TRACELOOP_TRACE_CONTENT=true; for OpenInference unset "
    "OPENINFERENCE_HIDE_OUTPUTS",
    writes_logs=True,
)

_BY_SCOPE: tuple[tuple[str, Instrumentation], ...] = (
    ("opentelemetry.instrumentation.openai_v2", _OFFICIAL_EVENTS),
    ("opentelemetry.util.genai", _UTIL_GENAI),
    ("opentelemetry.instrumentation.", _OPENLLMETRY),
    ("openinference.instrumentation", _OPENINFERENCE),
    ("logfire", _LOGFIRE),
)
"""Scope-name prefixes, most specific first. The official contrib packages other than the
OpenAI one are named like OpenLLMetry's, so `opentelemetry.instrumentation.*` is OpenLLMetry's
advice (TRACELOOP_TRACE_CONTENT) plus the generic fallback's when the package is not known."""


def instrumentation_of(scope: str | None) -> Instrumentation:
    for prefix, instrumentation in _BY_SCOPE:
        if scope and (scope == prefix or scope.startswith(prefix)):
            return instrumentation
    return _GENERIC


ANSWER_EVENTS = ("gen_ai.choice", "gen_ai.assistant.message", "gen_ai.client.inference.operation.details")
"""Log records (events) that can hold the answer; the others hold the input."""


def _genai_events(span: SpanRecord) -> list[str]:
    return [event.name for event in span.events if event.name.startswith("gen_ai.")]


def _carries_content(attributes: Mapping[str, Any]) -> bool:
    body = attributes.get("body")
    return (isinstance(body, Mapping) and bool(body.get("content"))) or "gen_ai.input.messages" in attributes


def _input_without_answer(spans: Sequence[SpanRecord]) -> bool:
    """Input records with content arrived, and no record that could hold the answer did."""
    events = [event for span in spans for event in span.events if event.name.startswith("gen_ai.")]
    return (any(_carries_content(event.attributes) for event in events)
            and not any(event.name in ANSWER_EVENTS for event in events))


def missing_content_hint(spans: Sequence[SpanRecord]) -> str:
    """Why these LLM spans carry no output text, and the setting that would fix it."""
    first = spans[0]
    instrumentation = instrumentation_of(first.scope)
    made_by = f"made by {instrumentation.package}" + (f", scope {first.scope!r}" if first.scope else "")
    events = sorted({name for span in spans for name in _genai_events(span)})
    if events and _input_without_answer(spans):
        seen = (f"their GenAI events/log records ({', '.join(events[:4])}) carry content, but no answer "
                "record (gen_ai.choice) was joined to them: none arrived, or one arrived without their "
                "trace and span id (OpenLLMetry emits a streamed answer's record after the span's context "
                "is gone) and not exactly one span of its service and scope was open when it was emitted")
    elif events:
        seen = (f"their GenAI events/log records ({', '.join(events[:4])}) were received but carry "
                "no message content, so content capture is off")
    elif instrumentation.writes_logs:
        seen = ("no GenAI log records or events were received for them; this instrumentation "
                f"may have written the content to log records: {SEND_LOGS}; or content capture "
                "is off")
    else:
        seen = "they carry no message content, so content capture is off"
    return f"{seen} ({made_by}); to record content: {instrumentation.setting}"
