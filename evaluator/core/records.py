"""Typed records that cross module boundaries: Trace, Evaluation, DeadLetter.

A Trace is validated once, on the way in (`parse_trace`); everything after that trusts it.
Oversized text fields are truncated here, and the truncation is recorded on the Trace so the
judge prompt and the stored Evaluation can say so. Everything else has hard limits
(evaluator.core.trace_limits): past them the trace is rejected, as one dead letter.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evaluator.core.errors import InvalidTraceError, first_problem
from evaluator.core.trace_limits import (
    MAX_LABEL_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    identifier_problem,
    metadata_problem,
)
from evaluator.core.usage import Usage

MAX_TEXT_CHARS = 100_000
"""Longest text field (output, input, one context document) kept by default; longer ones are
truncated. EVALUATOR_MAX_TEXT_CHARS sets another limit (Settings.max_text_chars, passed to
`parse_trace`)."""
MIN_TEXT_CHARS = 1_000

MAX_CONTEXT_DOCS = 50

MAX_DEAD_LETTER_CHARS = 64_000
"""Longest payload kept in the dead-letter table (the rest is cut, the reason is kept): enough
to see what was wrong, and a million bad lines stay a bounded amount of memory per batch."""
MAX_DEAD_LETTER_ERROR_CHARS = 2_000

_SURROGATE = re.compile("[\ud800-\udfff]")

TRUNCATION_MARK = "\n[... truncated by evaluator: {dropped} characters removed ...]"
TRUNCATION_MARK_RE = re.compile(re.escape(TRUNCATION_MARK).replace(re.escape("{dropped}"), r"\d+"))

Status = Literal["scored", "unscored", "error", "skipped"]
TERMINAL_STATUSES: tuple[Status, ...] = ("scored", "unscored", "error", "skipped")


def canonical_json(value: Any) -> str:
    """The JSON form every content hash is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def hash64(text: str) -> int:
    """An 8-byte blake2b hash of the text as an unsigned int: what the run's id checks keep per id
    (evaluator.ingest.seen_ids). Lone surrogates hash as themselves."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: str = Field(max_length=MAX_LABEL_CHARS)
    content: str = ""


class Trace(BaseModel):
    """One LLM interaction to evaluate (built from one or more spans)."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str
    span_id: str | None = None
    input: str | list[Message] = ""
    system: str | None = None
    context: list[str] = Field(default_factory=list)
    output: str = ""
    expected: str | None = None
    """A reference answer (what a correct output says), for rubrics that require `expected`."""
    model: str | None = Field(default=None, max_length=MAX_LABEL_CHARS)
    provider: str | None = Field(default=None, max_length=MAX_LABEL_CHARS)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    finish_reason: str | None = Field(default=None, max_length=MAX_LABEL_CHARS)
    feedback: Literal["positive", "negative", "neutral"] | None = None
    session_id: str | None = None
    user_id: str | None = Field(default=None, max_length=MAX_LABEL_CHARS)
    prompt_version: str | None = Field(default=None, max_length=MAX_LABEL_CHARS)
    tags: list[Annotated[str, Field(max_length=MAX_TAG_CHARS)]] = Field(
        default_factory=list, max_length=MAX_TAGS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    start_time: datetime | None = None
    end_time: datetime | None = None
    truncated: list[str] = Field(default_factory=list)
    """Names of fields that were cut to the text limit (`max_text_chars`) on the way in."""
    input_hash: str | None = None
    """sha256 of the input as stored (masked), set by PII masking: a dedup key that reveals
    nothing the stored trace does not (a hash of the raw input could be brute-forced back)."""
    pii_masked: bool = False

    @field_validator("trace_id", "span_id", "session_id")
    @classmethod
    def _safe_identifier(cls, value: str | None) -> str | None:
        problem = None if value is None else identifier_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("context")
    @classmethod
    def _limit_context(cls, docs: list[str]) -> list[str]:
        return [doc for doc in docs if doc.strip()][:MAX_CONTEXT_DOCS]

    @property
    def question(self) -> str:
        """The user's question: the last user message, or the plain input."""
        if isinstance(self.input, str):
            return self.input
        for message in reversed(self.input):
            if message.role == "user":
                return message.content
        return self.input[-1].content if self.input else ""

    @property
    def is_negative_feedback(self) -> bool:
        return self.feedback == "negative"


ClaimSupport = Literal["supported", "unsupported", "contradicted"]


class ClaimVerdict(BaseModel):
    """One claim of an evaluated answer as a judge checked it (rubrics with `claims: true`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str = Field(min_length=1)
    verdict: ClaimSupport
    evidence: str | None = None
    """The words of the source (context, reference, question) that support or contradict it."""


def supported_share(claims: Iterable[ClaimVerdict]) -> float | None:
    """The share of claims the judge found supported; None without claims."""
    verdicts = [claim.verdict for claim in claims]
    return verdicts.count("supported") / len(verdicts) if verdicts else None


class Evaluation(BaseModel):
    """One rubric applied to one trace by one judge, with full provenance."""

    model_config = ConfigDict(extra="forbid")

    evaluation_id: str
    trace_id: str
    rubric: str
    rubric_version: int
    rubric_hash: str
    judge: str
    judge_hash: str
    label: str | None = None
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    passed: bool | None = None
    reasoning: str | None = None
    status: Status
    reason: str | None = None
    raw_reply: str | None = None
    usage: Usage = Usage()
    """What judging it used (stored and sent as the four flat columns)."""
    attempts: int = 0
    cached: bool = False
    prompt_hash: str | None = None
    sample_reason: str | None = None
    sample_weight: float = 1.0
    truncated: bool = False
    run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    stability: float | None = Field(default=None, ge=0.0, le=1.0)
    """Repeated judging (panels, samples): share of samples agreeing with the label."""
    claims: list[ClaimVerdict] | None = None
    """The claims the judge checked one by one, when the rubric asks for them (then `score` is
    the supported share)."""


def evaluation_id_for(trace_id: str, rubric_hash: str, judge_hash: str) -> str:
    """Deterministic id: the same trace, rubric version and judge config give the same id."""
    return sha256_hex(f"{trace_id}\x1f{rubric_hash}\x1f{judge_hash}")[:32]


class DeadLetter(BaseModel):
    """A payload that could not be used, kept with the reason so nothing is lost silently."""

    dead_letter_id: str
    source: str
    error: str
    field: str | None = None
    payload: str
    created_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def from_error(cls, source: str, payload: Any, error: Exception) -> DeadLetter:
        if isinstance(payload, str):
            text = payload
        else:
            try:
                text = canonical_json(payload)
            except (RecursionError, ValueError, TypeError) as exc:
                text = f"<the payload cannot be written as JSON: {exc}>"
        identity = f"{source}\x1f{text}".encode("utf-8", "surrogatepass")
        text = text[:MAX_DEAD_LETTER_CHARS].encode("utf-8", "replace").decode("utf-8")
        field = getattr(error, "field", None)
        return cls(
            dead_letter_id=sha256_hex(identity)[:32],
            source=source,
            error=str(error)[:MAX_DEAD_LETTER_ERROR_CHARS],
            field=field[:MAX_DEAD_LETTER_ERROR_CHARS] if isinstance(field, str) else None,
            payload=text,
        )


def _truncate_text(text: str, limit: int) -> str:
    """At most `limit` characters, the mark included, so a truncated trace validated again (by
    the worker) is left as it is and keeps its mark's count."""
    kept = limit - len(TRUNCATION_MARK.format(dropped=len(text)))  # the mark's longest form
    return text[:kept] + TRUNCATION_MARK.format(dropped=len(text) - kept)


def _truncate_oversized(payload: dict[str, Any], limit: int) -> list[str]:
    """Cut oversized text fields in place; return the names of the fields cut."""
    cut: list[str] = []
    for name in ("output", "expected", "system", "input", "error"):
        value = payload.get(name)
        if isinstance(value, str) and len(value) > limit:
            payload[name] = _truncate_text(value, limit)
            cut.append(name)
    if isinstance(payload.get("input"), list):
        for message in payload["input"]:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str) and len(content) > limit:
                message["content"] = _truncate_text(content, limit)
                if "input" not in cut:
                    cut.append("input")
    docs = payload.get("context")
    if isinstance(docs, list):
        for index, doc in enumerate(docs):
            if isinstance(doc, str) and len(doc) > limit:
                docs[index] = _truncate_text(doc, limit)
                if "context" not in cut:
                    cut.append("context")
    return cut


def _lone_surrogate(value: Any, path: str) -> str | None:
    """Where a string holds a lone surrogate (JSON can spell one, "\\ud800"; UTF-8 cannot carry
    it, so such a trace could never be hashed, sent or stored), or None."""
    if isinstance(value, str):
        return path if not value.isascii() and _SURROGATE.search(value) else None
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        found = _lone_surrogate(key, where) or _lone_surrogate(item, where)
        if found is not None:
            return found
    return None


def _describe_validation_error(error: ValidationError) -> tuple[str, str]:
    problem = first_problem(error)
    count = problem.count
    more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
    return problem.where, f"invalid trace: field '{problem.where}': {problem.message}{more}"


def parse_trace(payload: Any, max_text_chars: int = MAX_TEXT_CHARS) -> Trace:
    """Validate one trace payload (a dict or a JSON string) into a Trace.

    Raises InvalidTraceError naming the offending field; never anything else. Text fields longer
    than `max_text_chars` are cut and marked.
    """
    if isinstance(payload, (str, bytes)):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise InvalidTraceError(f"invalid trace: not valid JSON ({exc})", field="<root>") from None
    if not isinstance(payload, dict):
        raise InvalidTraceError(
            f"invalid trace: expected a JSON object, got {type(payload).__name__}", field="<root>"
        )
    payload = dict(payload)
    if isinstance(payload.get("input"), list):
        payload["input"] = [dict(m) if isinstance(m, dict) else m for m in payload["input"]]
    if isinstance(payload.get("context"), list):
        payload["context"] = list(payload["context"])
    metadata = payload.get("metadata")
    problem = metadata_problem(metadata) if isinstance(metadata, dict) else None
    if problem is not None:
        where, why = problem
        raise InvalidTraceError(f"invalid trace: field '{where}': {why}", field=where)
    cut = _truncate_oversized(payload, max_text_chars)
    given = payload.get("truncated")
    if cut and (given is None or isinstance(given, list) and all(isinstance(n, str) for n in given)):
        payload["truncated"] = sorted({*(given or []), *cut})
    try:
        surrogate_at = _lone_surrogate(payload, "")
        if surrogate_at is not None:
            raise InvalidTraceError(
                f"invalid trace: field '{surrogate_at or '<root>'}': text holds a lone surrogate "
                "(\\ud800-\\udfff), which is not valid Unicode", field=surrogate_at or "<root>")
        return Trace.model_validate(payload)
    except ValidationError as exc:
        field, message = _describe_validation_error(exc)
        raise InvalidTraceError(message, field=field) from None
    except RecursionError:
        raise InvalidTraceError("invalid trace: nested too deeply", field="<root>") from None
