"""JSON Schemas of the files people write for Evaluator, generated from the models that read
them: a trace (one line of a trace JSONL file), a dataset item (one line of a regression
dataset) and a human label row (one line of a label JSONL file, or one CSV row).

`evaluator schema NAME` prints one; docs/schemas/NAME.schema.json holds each, and a test
checks that they match what this module generates.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evaluator.core.errors import ConfigError
from evaluator.core.records import Trace
from evaluator.regression.datasets import DatasetItem

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

TRACE_FIELDS = {
    "trace_id": "Required. Identifies the trace; evaluations and labels refer to it.",
    "span_id": "The span the answer came from.",
    "input": "The user's question as text, or the chat messages (role, content) sent to the model.",
    "system": "System instructions the app gave the model.",
    "context": "Retrieved documents, one string each (faithfulness needs them).",
    "output": "The answer to evaluate.",
    "expected": "A reference answer (what a correct output says), for rubrics that need it "
                "(correctness).",
    "model": "Model name, e.g. gpt-4o-mini (a sampling segment key).",
    "provider": "Model provider, e.g. openai.",
    "input_tokens": "Prompt tokens the app's call used.",
    "output_tokens": "Completion tokens the app's call used.",
    "latency_ms": "How long the app's call took.",
    "status": "'error' when the app's call failed: such traces are always evaluated.",
    "error": "The app's error message, when status is 'error'.",
    "finish_reason": "Why the model stopped (stop, length, content_filter: always evaluated).",
    "feedback": "The user's feedback; 'negative' is always evaluated.",
    "session_id": "Conversation or session id.",
    "user_id": "End-user id (masked like any text).",
    "prompt_version": "Version of the app's prompt (a sampling segment and report key).",
    "tags": "Free tags; always-evaluate rules can match them.",
    "metadata": "Anything else (flat or nested JSON); metadata.route is a sampling segment key.",
    "start_time": "When the app's call started (ISO 8601; UTC when no zone is given).",
    "end_time": "When the app's call ended.",
    "truncated": "Set by Evaluator: fields cut to EVALUATOR_MAX_TEXT_CHARS.",
    "input_hash": "Set by Evaluator: sha256 of the masked input.",
    "pii_masked": "Set by Evaluator: whether PII masking ran on the trace.",
}

DATASET_ITEM_FIELDS = {
    "id": "Required. Unique within the dataset (a built item's id is its input's hash).",
    "input": "Required. The question as text, or a non-empty list of chat messages.",
    "context": "Retrieved documents, one string each.",
    "output": "The answer the app gave (a replay with --target regenerates it).",
    "expected": "A reference answer (what a correct output says), for rubrics that need it "
                "(correctness). A JSON object here is read as expected_labels (the form "
                "written before the reference answer existed).",
    "expected_labels": "Criterion -> label the output earned, e.g. "
                       "{\"hallucination\": \"hallucinated\"}.",
    "label_source": "Required. Who gave the expected labels: 'human' or 'judge'.",
    "metadata": "Provenance: source_trace_id, failing rubrics, judge, the trace's system text.",
}


class LabelRow(BaseModel):
    """One human label: one JSON object a line of a JSONL label file, or a row of a CSV label
    file (a header names the columns; every cell is text there). Other columns are ignored (the text an exported
    annotation batch shows: allowed_labels, question, context, output)."""

    model_config = ConfigDict(json_schema_extra={
        "anyOf": [{"required": ["trace_id"]}, {"required": ["item_id"]}],
        "allOf": [{"anyOf": [{"required": ["label"]}, {"required": ["score"]}]}],
    })

    trace_id: str | None = Field(None, description="The labelled trace (trace_id or item_id "
                                                   "is required).")
    item_id: str | None = Field(None, description="A dataset item id, for labels of a dataset.")
    rubric: str = Field(description="The rubric: NAME, or NAME@vN for one version (else the "
                                    "latest).")
    rubric_version: int | None = Field(None, description="The version, when rubric is a bare "
                                                         "NAME.")
    label: str | None = Field(None, description="One of the rubric's labels (label or score "
                                                "is required).")
    score: float | None = Field(None, ge=0, le=1, description="0..1, 1 = desired; a label is "
                                                              "inferred when one label has it.")
    annotator: str = Field(description="Who gave the label (a name or an id).")
    note: str | None = Field(None, description="Free text.")


def _trace_schema() -> dict[str, Any]:
    return _described(Trace.model_json_schema(), TRACE_FIELDS)


def _dataset_item_schema() -> dict[str, Any]:
    return _described(DatasetItem.model_json_schema(), DATASET_ITEM_FIELDS)


SCHEMAS = {
    "trace": _trace_schema,
    "dataset-item": _dataset_item_schema,
    "labels": lambda: LabelRow.model_json_schema(),
}


def _described(schema: dict[str, Any], descriptions: dict[str, str]) -> dict[str, Any]:
    for name, description in descriptions.items():
        schema["properties"][name]["description"] = description
    return schema


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema `name` (trace, dataset-item, labels), with its $schema dialect."""
    if name not in SCHEMAS:
        raise ConfigError(f"no schema {name!r}: use one of {', '.join(SCHEMAS)}")
    return {"$schema": SCHEMA_DIALECT, **SCHEMAS[name]()}


def schema_text(name: str) -> str:
    """The schema as written to docs/schemas: indented JSON, a newline at the end."""
    return json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"
