"""Reading one span under the attribute conventions LLM instrumentations use.

Three families are understood, tried in this order for each field:
  1. OTel GenAI semantic conventions v1.37+ (`gen_ai.input.messages`, `gen_ai.output.messages`,
     `gen_ai.system_instructions`: JSON with typed `parts`);
  2. the older GenAI styles: indexed attributes (`gen_ai.prompt.N.*`, `gen_ai.completion.N.*`,
     as OpenLLMetry writes them) and span events (`gen_ai.user.message`, `gen_ai.choice`, ...);
  3. OpenInference (`llm.input_messages.N.message.*`, `input.value`, `output.value`, ...);
  4. logfire's semconv version 1 (`instrument_openai(version=1)`): the OpenAI request and
     response as JSON in `request_data` / `response_data`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evaluator.ingest.otel.spans import SpanRecord

OUTPUT_KEYS_LOOKED_FOR = (
    "gen_ai.output.messages", "gen_ai.completion.0.content", "gen_ai.choice event",
    "llm.output_messages.0.message.content", "output.value", "response_data (logfire)",
)

_OPENINFERENCE_ROLES = {
    "LLM": "llm", "RETRIEVER": "retriever", "TOOL": "tool", "AGENT": "agent", "CHAIN": "chain",
    "EMBEDDING": "embedding", "RERANKER": "retriever",
}
_GENAI_OPERATIONS = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "execute_tool": "tool",
    "invoke_agent": "agent", "create_agent": "agent", "embeddings": "embedding", "retrieval": "retriever",
}
_TRACELOOP_KINDS = {"tool": "tool", "agent": "agent", "workflow": "chain", "task": "chain"}
_LLM_MARKERS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.prompt.", "gen_ai.completion.",
                "llm.input_messages.", "llm.output_messages.", "llm.model_name", "llm.request.type")
OPERATION_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
RESULT_EVENTS = ("db.query.result", "db.search.result")
"""Span events with one vector-store hit each (OpenLLMetry's Chroma, Qdrant, ... instrumentations)."""
_EVENT_ROLES = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}


@dataclass
class LlmCall:
    """What one LLM span says about its call, whichever convention it used."""

    span: SpanRecord
    messages: list[dict[str, str]] = field(default_factory=list)
    """Input messages other than system ones: {"role", "content"}."""
    system: str | None = None
    output: str = ""
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    output_missing: str | None = None
    """Why a call that did answer has no output text (a content-filtered answer)."""
    conventions: set[str] = field(default_factory=set)


def span_role(span: SpanRecord) -> str:
    """`llm`, `retriever`, `tool`, `agent`, `chain`, `embedding` or `other`."""
    attrs = span.attributes
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str):
        return _OPENINFERENCE_ROLES.get(kind.upper(), "other")
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation in _GENAI_OPERATIONS:
        return _GENAI_OPERATIONS[operation]
    traceloop = attrs.get("traceloop.span.kind")
    if isinstance(traceloop, str) and traceloop in _TRACELOOP_KINDS:
        if traceloop == "task" and _names_retrieval(span):
            return "retriever"
        return _TRACELOOP_KINDS[traceloop]
    if any(key.startswith(_LLM_MARKERS) for key in attrs):
        return "llm"
    if any(event.name in _EVENT_ROLES or event.name in ("gen_ai.choice", OPERATION_DETAILS_EVENT)
           for event in span.events):
        return "llm"
    if any(key.startswith(("retrieval.documents.", "gen_ai.retrieval.documents")) for key in attrs):
        return "retriever"
    if any(event.name in RESULT_EVENTS for event in span.events):
        return "retriever"
    return "other"


def _names_retrieval(span: SpanRecord) -> bool:
    """An OpenLLMetry task that retrieves: a `@task` or LangChain retriever named for it."""
    name = first_str(span.attributes.get("traceloop.entity.name")) or span.name
    return "retriev" in name.lower()


def is_genai_span(span: SpanRecord) -> bool:
    """Whether a span belongs to LLM work at all (as opposed to, say, an HTTP or DB span). A
    request span whose answer is recorded in another span (see `streamed_elsewhere`) is not."""
    return not streamed_elsewhere(span) and (span_role(span) != "other" or any(
        key.startswith(("gen_ai.", "llm.", "input.value", "output.value")) for key in span.attributes
    ))


def _is_logfire(span: SpanRecord) -> bool:
    return span.scope is not None and (span.scope == "logfire" or span.scope.startswith("logfire."))


_LOGFIRE_RESPONSE_KEYS = ("gen_ai.output.messages", "response_data", "gen_ai.response.id",
                          "gen_ai.response.finish_reasons")
"""What logfire sets on a span once it has the response (semconv version 2, or 1)."""


def streamed_elsewhere(span: SpanRecord) -> bool:
    """logfire's request span of a streamed call: it ends when the stream is returned, without
    the answer, which a separate "streaming response from ..." log span records later (in a
    trace of its own when the call was made outside any span). With semconv version 1 its
    `request_data` says `stream`; version 2 (the default) keeps only the model there, so a chat
    request span that did not fail and never got any response attribute is one too."""
    if (not _is_logfire(span) or span.status == "error"
            or any(key in span.attributes for key in _LOGFIRE_RESPONSE_KEYS)):
        return False
    request = loads_json(span.attributes.get("request_data"))
    return isinstance(request, Mapping) and (request.get("stream") is True
                                             or "gen_ai.input.messages" in span.attributes)


def stream_duration_ms(span: SpanRecord) -> float | None:
    """logfire's streamed answer is a zero-length log span that gives the stream's `duration`
    in seconds: that, not 0, is the call's latency."""
    duration = span.attributes.get("duration")
    if (not _is_logfire(span) or span.end_ns != span.start_ns or isinstance(duration, bool)
            or not isinstance(duration, (int, float)) or not 0 <= duration < 1e7):
        return None
    return duration * 1000.0


def loads_json(value: Any) -> Any:
    """Parse a JSON-encoded attribute; anything else (or bad JSON) comes back unchanged."""
    if isinstance(value, str) and value[:1] in ("[", "{", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def text_of(content: Any) -> str:
    """The readable text of a message content: a string, typed parts, or an OpenAI-style list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        for key in ("content", "text", "response", "result"):
            if key in content and content.get("type") not in ("tool_call", "reasoning"):
                return text_of(content[key])
        return ""
    if isinstance(content, (list, tuple)):
        return "\n".join(text for text in (text_of(part) for part in content) if text)
    return str(content)


def _is_content_parts(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and bool(value)
            and all(isinstance(part, Mapping) and "type" in part for part in value))


def content_text(content: Any) -> str:
    """Message content where the convention says it is text (indexed `gen_ai.prompt.N.content`,
    event bodies): a string stays whole, even when it looks like JSON (an answer may be a JSON
    object). Only a JSON array of typed content parts, which OpenLLMetry writes for a
    multi-part message, is read as structure."""
    if isinstance(content, str):
        if content.startswith("["):
            parsed = loads_json(content)
            if _is_content_parts(parsed):
                return text_of(parsed)
        return content
    return text_of(content)


def finish_reason_of(value: Any) -> str | None:
    """The first finish reason: a list, a JSON list in a string (logfire), or a plain string."""
    if isinstance(value, str) and value.startswith("["):
        value = loads_json(value)
    if isinstance(value, (list, tuple)):
        return first_str(*value)
    return first_str(value)


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def first_str(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Group `prefix.N.rest` attributes into one dict per N, in index order."""
    groups: dict[int, dict[str, Any]] = {}
    start = len(prefix) + 1
    for key, value in attrs.items():
        if not key.startswith(prefix) or key[start - 1:start] != ".":
            continue
        index, _, rest = key[start:].partition(".")
        if index.isdigit() and rest:
            groups.setdefault(int(index), {})[rest] = value
    return [groups[index] for index in sorted(groups)]


def _split_system(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str | None]:
    system = [m["content"] for m in messages if m["role"] in ("system", "developer") and m["content"]]
    rest = [m for m in messages if m["role"] not in ("system", "developer")]
    return rest, "\n\n".join(system) or None


def _semconv_messages(value: Any) -> list[dict[str, str]]:
    parsed = loads_json(value)
    if isinstance(parsed, Mapping):
        parsed = [parsed]
    if not isinstance(parsed, (list, tuple)):
        return []
    messages = []
    for item in parsed:
        if isinstance(item, Mapping):
            content = item["parts"] if "parts" in item else item.get("content")
            messages.append({"role": str(item.get("role") or "user"), "content": text_of(content)})
    return messages


def _read_semconv(call: LlmCall, attrs: Mapping[str, Any]) -> None:
    if "gen_ai.input.messages" in attrs:
        call.messages, call.system = _split_system(_semconv_messages(attrs["gen_ai.input.messages"]))
        call.conventions.add("gen_ai")
    if "gen_ai.system_instructions" in attrs:
        instructions = loads_json(attrs["gen_ai.system_instructions"])
        call.system = text_of(instructions) or call.system
    if "gen_ai.output.messages" in attrs:
        outputs = loads_json(attrs["gen_ai.output.messages"])
        first = outputs[0] if isinstance(outputs, (list, tuple)) and outputs else outputs
        if isinstance(first, Mapping):
            call.output = text_of(first.get("parts", first.get("content")))
            call.finish_reason = first_str(first.get("finish_reason"))
        call.conventions.add("gen_ai")


FILTERED_PLACEHOLDER = "FILTERED"
"""OpenLLMetry (0.52 and earlier) records a content-filtered answer as this text, not the answer."""


def _read_indexed_genai(call: LlmCall, attrs: Mapping[str, Any]) -> None:
    if not call.messages:
        prompts = indexed(attrs, "gen_ai.prompt")
        if prompts:
            messages = [{"role": str(p.get("role") or "user"),
                         "content": content_text(p.get("content"))} for p in prompts]
            call.messages, system = _split_system(messages)
            call.system = call.system or system
            call.conventions.add("gen_ai_legacy")
    if not call.output:
        completions = indexed(attrs, "gen_ai.completion")
        if completions:
            call.output = content_text(completions[0].get("content"))
            call.finish_reason = call.finish_reason or first_str(completions[0].get("finish_reason"))
            if call.finish_reason == "content_filter" and call.output == FILTERED_PLACEHOLDER:
                call.output = ""
            call.conventions.add("gen_ai_legacy")


def _event_body(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("body", "gen_ai.event.content", "event.body"):
        body = loads_json(attrs.get(key))
        if isinstance(body, Mapping):
            return body
    return attrs


def _read_events(call: LlmCall, span: SpanRecord) -> None:
    messages: list[dict[str, str]] = []
    for event in span.events:
        if event.name in _EVENT_ROLES:
            body = _event_body(event.attributes)
            role = str(body.get("role") or _EVENT_ROLES[event.name])
            messages.append({"role": role, "content": content_text(body.get("content"))})
        elif event.name == "gen_ai.choice" and not call.output:
            body = _event_body(event.attributes)
            message = loads_json(body.get("message"))
            content = message.get("content") if isinstance(message, Mapping) else body.get("content")
            call.output = content_text(content)
            call.finish_reason = call.finish_reason or first_str(body.get("finish_reason"))
            call.conventions.add("gen_ai_events")
        elif event.name == OPERATION_DETAILS_EVENT:
            _read_operation_details(call, event.attributes)
        elif event.name == "gen_ai.content.prompt" and not messages and not call.messages:
            messages = _semconv_messages(event.attributes.get("gen_ai.prompt"))
        elif event.name == "gen_ai.content.completion" and not call.output:
            completion = _semconv_messages(event.attributes.get("gen_ai.completion"))
            call.output = completion[0]["content"] if completion else ""
    if messages and not call.messages:
        call.messages, system = _split_system(messages)
        call.system = call.system or system
        call.conventions.add("gen_ai_events")


def _read_operation_details(call: LlmCall, attrs: Mapping[str, Any]) -> None:
    """util-genai's `event_only` content: the semconv message attributes, on a log record
    (as structured values, not JSON strings). Content on the span itself wins."""
    details = LlmCall(call.span)
    _read_semconv(details, attrs)
    call.messages = call.messages or details.messages
    call.system = call.system or details.system
    if not call.output and details.output:
        call.output = details.output
        call.finish_reason = call.finish_reason or details.finish_reason
    if details.conventions:
        call.conventions.add("gen_ai_events")


def _openinference_messages(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, str]]:
    messages = []
    for entry in indexed(attrs, prefix):
        content = entry.get("message.content")
        if content is None:
            content = [part for key, part in sorted(entry.items())
                       if key.startswith("message.contents.") and key.endswith(".message_content.text")]
        messages.append({"role": str(entry.get("message.role") or "user"), "content": text_of(content)})
    return messages


def _read_openinference(call: LlmCall, attrs: Mapping[str, Any]) -> None:
    if not call.messages:
        messages = _openinference_messages(attrs, "llm.input_messages")
        if messages:
            call.messages, system = _split_system(messages)
            call.system = call.system or system
            call.conventions.add("openinference")
    if not call.output:
        outputs = _openinference_messages(attrs, "llm.output_messages")
        call.output = outputs[0]["content"] if outputs else ""
        if not call.output and isinstance(attrs.get("output.value"), str):
            call.output = attrs["output.value"]
        if call.output:
            call.conventions.add("openinference")


def _read_logfire_v1(call: LlmCall, span: SpanRecord) -> None:
    """logfire's semconv version 1: `request_data` is the chat request's JSON (`messages` in
    OpenAI's format), `response_data` the response's message (a streamed answer's too)."""
    if not _is_logfire(span):
        return
    request = loads_json(span.attributes.get("request_data"))
    if not call.messages and isinstance(request, Mapping) and isinstance(request.get("messages"), (list, tuple)):
        messages = [{"role": str(m.get("role") or "user"), "content": content_text(m.get("content"))}
                    for m in request["messages"] if isinstance(m, Mapping)]
        call.messages, system = _split_system(messages)
        call.system = call.system or system
        call.conventions.add("logfire")
    response = loads_json(span.attributes.get("response_data"))
    message = response.get("message") if isinstance(response, Mapping) else None
    if not call.output and isinstance(message, Mapping) and message.get("content") is not None:
        call.output = content_text(message["content"])
        call.conventions.add("logfire")


def read_llm_call(span: SpanRecord) -> LlmCall:
    attrs = span.attributes
    call = LlmCall(span)
    _read_semconv(call, attrs)
    _read_indexed_genai(call, attrs)
    _read_events(call, span)
    _read_openinference(call, attrs)
    _read_logfire_v1(call, span)
    call.model = first_str(attrs.get("gen_ai.response.model"), attrs.get("gen_ai.request.model"),
                           attrs.get("llm.model_name"), _invocation_model(attrs))
    call.provider = first_str(attrs.get("gen_ai.provider.name"), attrs.get("gen_ai.system"),
                              attrs.get("llm.provider"), attrs.get("llm.system"))
    call.input_tokens = as_int(_first_present(
        attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"))
    call.output_tokens = as_int(_first_present(
        attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
        "llm.token_count.completion"))
    call.finish_reason = (finish_reason_of(attrs.get("gen_ai.response.finish_reasons"))
                          or first_str(attrs.get("llm.finish_reason")) or call.finish_reason)
    if not call.output and call.finish_reason == "content_filter" and (
            call.system or any(message["content"] for message in call.messages)):
        # content was captured (the question is there): the filter, not the settings, left no answer
        call.output_missing = ("the answer was content-filtered and its text was not recorded"
                               + (" (OpenLLMetry records the placeholder \"FILTERED\" instead)"
                                  if "gen_ai_legacy" in call.conventions else ""))
    return call


def _invocation_model(attrs: Mapping[str, Any]) -> str | None:
    """OpenInference records the requested model only in `llm.invocation_parameters` (JSON), so
    a call that failed before any response names its model only there."""
    parameters = loads_json(attrs.get("llm.invocation_parameters"))
    return first_str(parameters.get("model")) if isinstance(parameters, Mapping) else None


def _first_present(attrs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in attrs:
            return attrs[key]
    return None


def tool_name(span: SpanRecord) -> str:
    attrs = span.attributes
    return first_str(attrs.get("gen_ai.tool.name"), attrs.get("tool.name")) or span.name


_CLASS_REPR = re.compile(r"<class '([\w.]+)'>")


def error_type_of(value: Any) -> str | None:
    """`error.type` as a name: opentelemetry-instrumentation-openai-v2 2.4b0 wrote the class repr
    (`<class 'openai.NotFoundError'>`), which becomes the qualified name inside it."""
    if value is None or isinstance(value, bool) or str(value) == "":
        return None
    text = str(value).strip()
    match = _CLASS_REPR.fullmatch(text)
    return match.group(1) if match else text


def error_of(span: SpanRecord) -> str | None:
    """What went wrong in a failed span, each piece of text once: instrumentations often put
    "Type: message" in the status description and the same message in the exception event."""
    error_type = error_type_of(span.attributes.get("error.type"))
    if span.status != "error" and not error_type:
        return None
    exception = next((e.attributes for e in span.events if e.name == "exception"), {})
    parts = [part for part in (error_type, span.status_message,
                               first_str(exception.get("exception.message"))) if part]
    kept: list[str] = []
    for part in parts:
        if part not in kept and not any(part in other for other in parts if len(other) > len(part)):
            kept.append(part)
    return ": ".join(kept) or f"span {span.name!r} has status ERROR"
