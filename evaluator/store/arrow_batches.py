"""Records -> one typed Arrow table per store table, so a batch is inserted in one statement.

Column by column with explicit types: far cheaper than row tuples, and it keeps None as NULL
(an all-None column still gets its real type). The schemas are the tables' own columns, derived
from the migrations (store.schema). Duplicate keys are dropped here, first wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar

import pyarrow as pa

from evaluator.core.records import ClaimVerdict, DeadLetter, Evaluation, utcnow
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.store.schema import arrow_schema

EVALUATION_SCHEMA = arrow_schema("evaluations")
JUDGE_CALL_SCHEMA = arrow_schema("judge_calls")
DEAD_LETTER_SCHEMA = arrow_schema("dead_letters")
TRACE_SCHEMA = arrow_schema("traces")

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
    columns = zip(*[pick(row) for row in rows], strict=True)  # transpose in C, not one comprehension per column
    return pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema)


def evaluations_table(evaluations: Sequence[Evaluation]) -> pa.Table:
    unique = first_per_key(evaluations, lambda e: e.evaluation_id)
    return _table(EVALUATION_SCHEMA, [{**e.__dict__, **e.usage.flat()} if e.claims is None else
                                      {**e.__dict__, **e.usage.flat(), "claims": claims_json(e.claims)}
                                      for e in unique])


def claims_json(claims: Sequence[ClaimVerdict]) -> str:
    """The claims column: a JSON list of {claim, verdict, evidence}."""
    return json.dumps([claim.model_dump() for claim in claims], ensure_ascii=False)


def judge_calls_table(calls: Sequence[JudgeCall]) -> pa.Table:
    unique = first_per_key(calls, lambda c: c.call_id)
    return _table(JUDGE_CALL_SCHEMA, [c.flat() for c in unique])


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
            "input_hash": s.trace.input_hash,
        }
        for s in unique
    ]
    return _table(TRACE_SCHEMA, rows)
