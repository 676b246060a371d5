"""The spans of one trace become one Trace, or an InvalidTraceError saying what is missing.

A trace may be a single LLM span or a tree (a root chain/agent span with retriever, LLM and
tool spans under it). The parts are taken from where they live:
  - output: the answer of the LLM call that ended last (among calls that produced text, or
    whose answer was content-filtered without text: output "", the reason in
    metadata.otel.output_missing), else the answer an agent or chain span recorded (root first);
  - input: the messages of the first LLM call (else the root's messages or `input.value`);
  - context: every retrieved document, in retrieval order;
  - latency and timestamps: the root span;
  - feedback, prompt version, session and user ids: whichever span carries them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import MAX_TEXT_CHARS, Trace, parse_trace
from evaluator.core.stage_timing import timed
from evaluator.core.trace_limits import metadata_problem
from evaluator.ingest.otel.conventions import (
    OUTPUT_KEYS_LOOKED_FOR,
    LlmCall,
    error_of,
    first_str,
    loads_json,
    read_llm_call,
    span_role,
    stream_duration_ms,
    tool_name,
)
from evaluator.ingest.otel.hints import missing_content_hint
from evaluator.ingest.otel.retrieval import missing_text_note, read_documents
from evaluator.ingest.otel.spans import SpanRecord

FEEDBACK_KEYS = ("user.feedback", "feedback.score", "feedback", "feedback.label", "evaluator.feedback",
                 "gen_ai.feedback", "user_feedback")
PROMPT_VERSION_KEYS = ("prompt.version", "gen_ai.prompt.version", "llm.prompt_template.version")
SESSION_KEYS = ("session.id", "gen_ai.conversation.id", "traceloop.association.properties.session_id")
USER_KEYS = ("user.id", "enduser.id", "traceloop.association.properties.user_id")

_NEGATIVE = {"negative", "thumbs_down", "thumbs-down", "thumbsdown", "down", "bad", "dislike", "👎",
             "incorrect", "unhelpful"}
_POSITIVE = {"positive", "thumbs_up", "thumbs-up", "thumbsup", "up", "good", "like", "👍", "correct",
             "helpful"}
_NEUTRAL = {"neutral", "mixed"}
_NEGATIVE_SCORE_BELOW = 0.5
"""Numeric feedback: below this is negative (covers -1/0/+1 and 0..1 scales), else positive."""


def feedback_of(value: Any) -> str | None:
    """Map a feedback attribute value to `positive`, `negative` or `neutral` (None if unknown)."""
    if isinstance(value, bool):
        return "positive" if value else "negative"
    if isinstance(value, (int, float)):
        if value != value:  # NaN
            return None
        return "negative" if value < _NEGATIVE_SCORE_BELOW else "positive"
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    if word in _NEGATIVE:
        return "negative"
    if word in _POSITIVE:
        return "positive"
    if word in _NEUTRAL:
        return "neutral"
    try:
        return feedback_of(float(word))
    except ValueError:
        return None


def _datetime(ns: int | None) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC) if ns else None


def _find_root(spans: Sequence[SpanRecord]) -> SpanRecord:
    """The earliest span whose parent is not in this trace (normally the one parentless span)."""
    ids = {span.span_id for span in spans}
    roots = [s for s in spans if s.is_local_root or s.parent_id not in ids]
    return min(roots or spans, key=lambda s: s.start_ns)


SCRUBBED_PREFIX = "[Scrubbed due to "
"""logfire's placeholder for a value its scrubbing removed ("[Scrubbed due to 'session']"):
no value at all, so it is skipped rather than read as an id."""


def _first_attribute(spans: Iterable[SpanRecord], keys: Sequence[str]) -> str | None:
    for span in spans:
        for key in keys:
            value = span.attributes.get(key)
            if (isinstance(value, (str, int)) and not isinstance(value, bool) and str(value)
                    and not str(value).startswith(SCRUBBED_PREFIX)):
                return str(value)
    return None


def _feedback(spans: Iterable[SpanRecord]) -> str | None:
    """Negative wins over positive (it is the signal that must not be missed)."""
    found = {feedback_of(span.attributes[key]) for span in spans for key in FEEDBACK_KEYS
             if key in span.attributes}
    for label in ("negative", "positive", "neutral"):
        if label in found:
            return label
    return None


def _app_metadata(spans: Iterable[SpanRecord]) -> tuple[dict[str, Any], list[str]]:
    metadata: dict[str, Any] = {}
    tags: list[str] = []
    for span in spans:
        try:
            value = loads_json(span.attributes.get("metadata"))
        except RecursionError:
            raise InvalidTraceError(f"invalid trace: field 'metadata' of span {span.name!r}: "
                                    "nested too deeply to read", field="metadata") from None
        if isinstance(value, Mapping):
            for key, item in value.items():
                metadata.setdefault(str(key), item)
        span_tags = span.attributes.get("tag.tags")
        if isinstance(span_tags, (list, tuple)):
            tags.extend(str(tag) for tag in span_tags if str(tag) not in tags)
    return metadata, tags


def _missing_output(spans: Sequence[SpanRecord], calls: list[LlmCall]) -> InvalidTraceError:
    looked_for = ", ".join(OUTPUT_KEYS_LOOKED_FOR)
    if calls:
        names = ", ".join(repr(c.span.name) for c in calls[:5])
        message = (f"LLM span(s) {names} carry no output text (looked for {looked_for}); "
                   f"{missing_content_hint([c.span for c in calls])}")
    else:
        names = ", ".join(repr(s.name) for s in spans[:5]) + (", ..." if len(spans) > 5 else "")
        message = (f"no span carries an LLM output (looked for {looked_for}) and none is an LLM span; "
                   f"{len(spans)} span(s): {names}")
    return InvalidTraceError(f"invalid trace: {message}", field="output")


def _response_id(call: LlmCall | None) -> str | None:
    """`gen_ai.response.id` of the answering call: evaluation events name the response they score."""
    found = call.span.attributes.get("gen_ai.response.id") if call is not None else None
    return found if isinstance(found, str) and found else None


def _sum_known(values: Iterable[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


@timed("normalize")
def normalize_spans(spans: Iterable[SpanRecord], max_text_chars: int = MAX_TEXT_CHARS) -> Trace:
    """Build one Trace from the spans of one trace (text fields cut to `max_text_chars`).
    Raises InvalidTraceError, never anything else."""
    spans = sorted(spans, key=lambda s: s.start_ns)
    if not spans:
        raise InvalidTraceError("invalid trace: no spans", field="spans")
    trace_ids = {span.trace_id for span in spans}
    if len(trace_ids) > 1:
        raise InvalidTraceError(f"invalid trace: spans of {len(trace_ids)} traces mixed",
                                field="trace_id")
    root = _find_root(spans)
    by_role: dict[str, list[SpanRecord]] = {}
    for span in spans:
        by_role.setdefault(span_role(span), []).append(span)
    calls = [read_llm_call(span) for span in by_role.get("llm", [])]
    answered = [call for call in calls if call.output or call.output_missing]
    final = max(answered, key=lambda c: c.span.end_ns or c.span.start_ns) if answered else None
    ordered = [root] + [span for span in spans if span is not root]

    errors = [error for error in map(error_of, [root] + [c.span for c in calls]) if error]
    if final is None:  # no LLM call answered: an agent or chain span may still carry the answer
        final = next((call for call in map(read_llm_call, ordered) if call.output), None)
    if final is None and not errors:
        raise _missing_output(spans, calls)

    first_asked = next((call for call in calls if call.messages), None)
    if first_asked is None and (root_call := read_llm_call(root)).messages:
        first_asked = root_call
    root_input = root.attributes.get("input.value")
    question: Any = first_asked.messages if first_asked else first_str(root_input) or ""
    described = [call for call in (final, first_asked, *calls) if call is not None]
    ended = [span.end_ns for span in spans if span.end_ns]
    end_ns = root.end_ns or (max(ended) if ended else None)
    metadata, tags = _app_metadata(ordered)
    context = [doc for span in by_role.get("retriever", []) for doc in read_documents(span)]
    context_note = None if context else missing_text_note(by_role.get("retriever", []))
    metadata["otel"] = {
        "spans": len(spans),
        "root": root.name,
        "llm_calls": len(calls),
        "conventions": sorted({name for call in calls for name in call.conventions}),
        "tools": [tool_name(span) for span in by_role.get("tool", [])],
        **({"service": root.service} if root.service else {}),
        **({"context_missing": context_note} if context_note else {}),
        **({"output_missing": final.output_missing} if final is not None and final.output_missing else {}),
        **({"response_id": response_id} if (response_id := _response_id(final)) else {}),
    }
    problem = metadata_problem(metadata)
    if problem is not None:  # before writing it as JSON: that recurses as deep as it is nested
        where, why = problem
        raise InvalidTraceError(f"invalid trace: field '{where}': {why}", field=where)
    payload = {
        "trace_id": root.trace_id,
        "span_id": (final.span if final else calls[-1].span if calls else root).span_id,
        "input": question,
        "system": first_asked.system if first_asked else None,
        "context": context,
        "output": final.output if final else "",
        "model": next((call.model for call in described if call.model), None),
        "provider": next((call.provider for call in described if call.provider), None),
        "input_tokens": _sum_known(call.input_tokens for call in calls),
        "output_tokens": _sum_known(call.output_tokens for call in calls),
        "latency_ms": stream_duration_ms(root) or (
            (end_ns - root.start_ns) / 1e6 if end_ns and end_ns >= root.start_ns else None),
        "status": "error" if errors else "ok",
        "error": errors[0] if errors else None,
        "finish_reason": final.finish_reason if final else None,
        "feedback": _feedback(ordered),
        "session_id": _first_attribute(ordered, SESSION_KEYS),
        "user_id": _first_attribute(ordered, USER_KEYS),
        "prompt_version": _first_attribute(ordered, PROMPT_VERSION_KEYS),
        "tags": tags,
        "metadata": json.loads(json.dumps(metadata, default=str)),
        "start_time": _datetime(root.start_ns),
        "end_time": _datetime(end_ns),
    }
    return parse_trace(payload, max_text_chars)
