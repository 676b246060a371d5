"""The size and shape limits a trace must keep, checked once when it is parsed (`parse_trace`).

A trace is untrusted input. Everything after validation (masking, the queue, the results
channel, DuckDB) holds it in memory, serializes it and recurses into it, so a trace that is
nested hundreds of levels deep or carries megabytes of metadata is rejected at the door, as one
dead letter naming the field, instead of failing later in a place that loses its neighbours too.
Long *text* fields (output, input, context, system, error) are not rejected: they are truncated
and marked (records.max_text_chars).
"""

from __future__ import annotations

import re
from typing import Any

MAX_ID_CHARS = 128
SAFE_ID = re.compile(rf"[A-Za-z0-9._:/-]{{1,{MAX_ID_CHARS}}}")
"""trace_id, span_id and session_id: opaque identifiers, never user text. They end up in file
names, URLs, log lines, alert bodies and report pages, and they are not masked (an id is a key),
so they are held to a pattern that cannot carry an address, a sentence or markup."""
SAFE_ID_RULE = (f"must be 1 to {MAX_ID_CHARS} characters from A-Z a-z 0-9 . _ : / - (an opaque "
                "id: no spaces, no user text)")

MAX_LABEL_CHARS = 256
"""model, provider, prompt_version, finish_reason, user_id, a message's role."""
MAX_TAGS = 64
MAX_TAG_CHARS = 256
MAX_METADATA_DEPTH = 16
"""Levels of nested objects and arrays inside `metadata` (a flat object is 1 level)."""
MAX_METADATA_CHARS = 64_000
"""Length of `metadata` written as JSON (counted while walking it, so a 20 MB blob costs a
look at its first 64,000 characters, not a copy)."""

_SCALARS = (str, int, float, bool, type(None))


def identifier_problem(value: str) -> str | None:
    """Why `value` is not a safe identifier, or None."""
    return None if SAFE_ID.fullmatch(value) else SAFE_ID_RULE


def metadata_problem(metadata: dict[str, Any]) -> tuple[str, str] | None:
    """(where, why) when `metadata` is nested too deeply, too large or not plain JSON; else None.

    Iterative, so no nesting depth can overflow the stack, and stops at the first problem."""
    size = 0
    stack: list[tuple[str, Any, int]] = [("metadata", metadata, 1)]
    while stack:
        where, value, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            continue
        if depth > MAX_METADATA_DEPTH:
            return where, f"nested deeper than {MAX_METADATA_DEPTH} levels"
        size += 2
        for key, item in items:
            inside = f"{where}.{key}"
            if isinstance(value, dict) and not isinstance(key, str):
                return where, f"key {key!r} is not a string"
            size += len(key) + 4 if isinstance(key, str) else 1
            if isinstance(item, str):
                size += len(item) + 2
            elif isinstance(item, (dict, list, tuple)):
                stack.append((inside[:200], item, depth + 1))
            elif isinstance(item, _SCALARS):
                size += 8
            else:
                return inside[:200], f"a {type(item).__name__} is not a JSON value"
            if size > MAX_METADATA_CHARS:
                return "metadata", f"larger than {MAX_METADATA_CHARS:,} characters of JSON"
    return None
