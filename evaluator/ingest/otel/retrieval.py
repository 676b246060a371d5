"""The text of retrieved documents, wherever an instrumentation puts it.

Every documented way is read, in a span's own order:
  - OpenInference: `retrieval.documents.N.document.content`;
  - GenAI semantic conventions: `gen_ai.retrieval.documents`, a JSON list of documents. The
    spec's documents carry `id` and `score` only (util-genai's RetrievalDocument); a document
    given as a mapping may add its text (`content`, `text` or `page_content`);
  - OpenLLMetry vector-store instrumentations (Chroma, Qdrant, ...): one `db.query.result` (or
    `db.search.result`) span event per hit, its text in `db.query.result.document`;
  - OpenLLMetry tasks: `traceloop.entity.output` of a retrieval task (a `@task` or a LangChain
    retriever), the JSON of what it returned: a list of strings or of documents.
When a retrieval span carries no text, `missing_text_note` says so and what would record it,
instead of a bare "no context".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evaluator.ingest.otel.conventions import RESULT_EVENTS, indexed, loads_json, text_of
from evaluator.ingest.otel.hints import instrumentation_of
from evaluator.ingest.otel.spans import SpanRecord

_DOCUMENT_TEXT_KEYS = ("content", "text", "page_content", "pageContent", "document")
_OUTPUT_WRAPPERS = ("outputs", "documents", "output", "result", "results")


def _document_text(document: Any) -> str:
    """A document's text: a string, a mapping with a text key, or LangChain's serialized
    Document (`{"lc": 1, "kwargs": {"page_content": ...}}`)."""
    if isinstance(document, str):
        return document
    if not isinstance(document, Mapping):
        return ""
    if isinstance(document.get("kwargs"), Mapping):
        document = document["kwargs"]
    for key in _DOCUMENT_TEXT_KEYS:
        if isinstance(document.get(key), str):
            return document[key]
    return ""


def _task_documents(value: Any) -> list[str]:
    output = loads_json(value)
    for _ in range(2):  # {"outputs": [...]} (LangChain callbacks) or {"documents": [...]}
        if isinstance(output, Mapping):
            output = next((output[key] for key in _OUTPUT_WRAPPERS if key in output), None)
    if not isinstance(output, (list, tuple)):
        return []
    return [_document_text(item) for item in output]


def read_documents(span: SpanRecord) -> list[str]:
    """Retrieved document texts of one retriever span (empty strings dropped)."""
    attrs = span.attributes
    docs = [text_of(d.get("document.content")) for d in indexed(attrs, "retrieval.documents")]
    semconv = loads_json(attrs.get("gen_ai.retrieval.documents"))
    if isinstance(semconv, (list, tuple)):
        docs.extend(_document_text(d) for d in semconv)
    for event in span.events:
        if event.name in RESULT_EVENTS:
            text = event.attributes.get(f"{event.name}.document")
            docs.append(text if isinstance(text, str) else "")
    if "traceloop.entity.output" in attrs:
        docs.extend(_task_documents(attrs["traceloop.entity.output"]))
    return [doc for doc in docs if doc]


def _why_empty(span: SpanRecord) -> str:
    setting = instrumentation_of(span.scope).setting
    if "gen_ai.retrieval.documents" in span.attributes:
        return ("its gen_ai.retrieval.documents has ids and scores only: give each document's "
                "text as 'content' (a mapping, not util-genai's RetrievalDocument)")
    if any(event.name in RESULT_EVENTS for event in span.events):
        return ("its db.query.result events carry no db.query.result.document: include the "
                f"documents in the query results and record content ({setting})")
    return f"enable content capture ({setting})"


def missing_text_note(retrievers: Sequence[SpanRecord]) -> str | None:
    """Why a trace that did retrieve has no context, naming the first retrieval span."""
    if not retrievers:
        return None
    first = retrievers[0]
    return f"retrieval span {first.name!r} without document text: {_why_empty(first)}"
