"""Records -> one typed Arrow table per store table, so a batch is inserted in one statement.

Column by column with explicit types: far cheaper than row tuples, and it keeps None as NULL
(an all-None column still gets its real type). Duplicate keys are dropped here, first wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar

import pyarrow as pa

from evaluator.core.rows import JudgeCall
from evaluator.core.records import DeadLetter, Evaluation, utcnow
from evaluator.core.rows import StoredTrace

TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Naive datetimes are taken as UTC; aware ones are converted to UTC (TIMESTAMPTZ keeps the instant)."""

EVALUATION_SCHEMA = pa.schema([
    ("evaluation_id", pa.string()),
    ("trace_id", pa.string()),
    ("rubric", pa.string()),
    ("rubric_version", pa.int32()),
    ("rubric_hash", pa.string()),
    ("judge", pa.string()),
    ("judge_hash", pa.string()),
    ("label", pa.string()),
    ("score", pa.float64()),
    ("passed", pa.bool_()),
    ("reasoning", pa.string()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("raw_reply", pa.string()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cost_usd", pa.float64()),
    ("latency_ms", pa.float64()),
    ("attempts", pa.int32()),
    ("cached", pa.bool_()),
    ("prompt_hash", pa.string()),
    ("sample_reason", pa.string()),
    ("sample_weight", pa.float64()),
    ("truncated", pa.bool_()),
    ("run_id", pa.string()),
    ("created_at", TIMESTAMP),
    ("stability", pa.float64()),
])

JUDGE_CALL_SCHEMA = pa.schema([
    ("call_id", pa.string()),
    ("evaluation_id", pa.string()),
    ("trace_id", pa.string()),
    ("rubric", pa.string()),
    ("rubric_version", pa.int32()),
    ("run_id", pa.string()),
    ("judge", pa.string()),
    ("model", pa.string()),
    ("transport", pa.string()),
    ("sample", pa.int32()),
    ("attempt", pa.int32()),
    ("status", pa.string()),
    ("http_status", pa.int32()),
    ("error_class", pa.string()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cost_usd", pa.float64()),
    ("latency_ms", pa.float64()),
    ("cached", pa.bool_()),
    ("created_at", TIMESTAMP),
])

DEAD_LETTER_SCHEMA = pa.schema([
    ("dead_letter_id", pa.string()),
    ("source", pa.string()),
    ("error", pa.string()),
    ("field", pa.string()),
    ("payload", pa.string()),
    ("created_at", TIMESTAMP),
])

TRACE_SCHEMA = pa.schema([
    ("trace_id", pa.string()),
    ("trace_json", pa.string()),
    ("model", pa.string()),
    ("provider", pa.string()),
    ("prompt_version", pa.string()),
    ("status", pa.string()),
    ("feedback", pa.string()),
    ("finish_reason", pa.string()),
    ("sample_reason", pa.string()),
    ("sample_weight", pa.float64()),
    ("start_time", TIMESTAMP),
    ("received_at", TIMESTAMP),
])

T = TypeVar("T")


def first_per_key(items: Iterable[T], key: Callable[[T], str]) -> list[T]:
    """Drop later items whose key was already seen (a batch may carry a redelivered result)."""
    seen: set[str] = set()
    kept: list[T] = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept


def _table(schema: pa.Schema, rows: Sequence[dict[str, Any]]) -> pa.Table:
    if not rows:
        return schema.empty_table()
    pick = itemgetter(*schema.names)
    columns = zip(*[pick(row) for row in rows])  # transpose in C, not one comprehension per column
    return pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)


def evaluations_table(evaluations: Sequence[Evaluation]) -> pa.Table:
    unique = first_per_key(evaluations, lambda e: e.evaluation_id)
    return _table(EVALUATION_SCHEMA, [e.__dict__ for e in unique])


def judge_calls_table(calls: Sequence[JudgeCall]) -> pa.Table:
    unique = first_per_key(calls, lambda c: c.call_id)
    return _table(JUDGE_CALL_SCHEMA, [{name: getattr(c, name) for name in JUDGE_CALL_SCHEMA.names}
                                      for c in unique])


def dead_letters_table(dead_letters: Sequence[DeadLetter]) -> pa.Table:
    unique = first_per_key(dead_letters, lambda d: d.dead_letter_id)
    return _table(DEAD_LETTER_SCHEMA, [d.__dict__ for d in unique])


def traces_table(traces: Sequence[StoredTrace], received_at: datetime | None = None) -> pa.Table:
    received_at = received_at or utcnow()
    unique = first_per_key(traces, lambda s: s.trace.trace_id)
    rows = [
        {
            "trace_id": s.trace.trace_id,
            "trace_json": s.trace.model_dump_json(),
            "model": s.trace.model,
            "provider": s.trace.provider,
            "prompt_version": s.trace.prompt_version,
            "status": s.trace.status,
            "feedback": s.trace.feedback,
            "finish_reason": s.trace.finish_reason,
            "sample_reason": s.sample_reason,
            "sample_weight": s.sample_weight,
            "start_time": s.trace.start_time,
            "received_at": received_at,
        }
        for s in unique
    ]
    return _table(TRACE_SCHEMA, rows)
