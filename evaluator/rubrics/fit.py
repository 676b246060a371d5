"""Fitting trace text into the judge prompt: what does not fit is cut with a mark, never refused.

A trace can hold far more text than a prompt may (fifty context documents and a long
conversation, each under the per-field limit); refusing to render it would let padding escape
judgement. So before rendering, the pieces of trace text the rubric uses are cut to one common
length, the largest that keeps their total within the budget (short pieces stay whole), and a
conversation keeps its latest MAX_MESSAGES messages. Each cut ends with the same mark as a field
cut on the way in (`records.TRUNCATION_MARK`), and the fields named in the prompt's note are
read from those marks: the note is our text, never a copy of a trace field.
"""

from __future__ import annotations

import re
from typing import Any

from evaluator.core.records import TRUNCATION_MARK

MAX_MESSAGES = 200
"""Messages of a conversation shown to the judge: the latest ones (a template loops over them)."""
NOTED_FIELDS = ("input", "system", "context", "output", "expected", "output_a", "output_b")
"""The field names a cut note may mention, in this order ('input': question and messages)."""

_BEFORE, _AFTER = TRUNCATION_MARK.split("{dropped}")
_CUT = re.compile(re.escape(_BEFORE) + "[0-9]+" + re.escape(_AFTER) + r"\Z")
_DROPPED = "[... {count} earlier messages removed by evaluator ...]"
_DROPPED_ROLE = "evaluator"


def cut(text: str, limit: int) -> str:
    """At most `limit` characters (at least the mark), ending with the truncation mark."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - len(TRUNCATION_MARK.format(dropped=len(text))))
    return text[:kept] + TRUNCATION_MARK.format(dropped=len(text) - kept)


def latest_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The latest MAX_MESSAGES - 1 messages after one of ours saying how many were dropped."""
    if len(messages) <= MAX_MESSAGES:
        return messages
    kept = messages[len(messages) - MAX_MESSAGES + 1:]
    note = _DROPPED.format(count=f"{len(messages) - len(kept):,}")
    return [{"role": _DROPPED_ROLE, "content": note}, *kept]


def common_length(lengths: list[int], budget: int) -> int | None:
    """The largest L with sum(min(n, L) for n in lengths) <= budget; None when all fit."""
    if sum(lengths) <= budget:
        return None
    remaining, ordered = budget, sorted(lengths)
    for index, length in enumerate(ordered):
        share = remaining // (len(ordered) - index)
        if length > share:
            return share
        remaining -= length
    return None  # not reached: the total exceeds the budget, so some piece exceeds its share


def _texts(values: dict[str, Any], fields: frozenset[str], field: str) -> list[str]:
    """The pieces of text a field shows (the question and the messages the template uses)."""
    if field == "input":
        question = [values["question"]] if "question" in fields else []
        shown = values["messages"] if "messages" in fields else []
        return [*question, *(message["content"] for message in shown)]
    if field == "context":
        return list(values["context"])
    return [values[field]]


def _uses(fields: frozenset[str], field: str) -> bool:
    return bool(fields & {"question", "messages"}) if field == "input" else field in fields


def fit(values: dict[str, Any], fields: frozenset[str], budget: int) -> tuple[dict[str, Any], int]:
    """`values` with the text of the used `fields` cut to fit `budget` characters in total;
    returns them and the characters of used text they hold."""
    used = [field for field in NOTED_FIELDS if _uses(fields, field)]
    fixed = sum(len(message["role"]) for message in values["messages"]) if "messages" in fields else 0
    limit = common_length([len(text) for field in used for text in _texts(values, fields, field)],
                          max(0, budget - fixed))
    if limit is not None:
        values = {
            **values,
            "question": cut(values["question"], limit),
            "system": cut(values["system"], limit),
            "output": cut(values["output"], limit),
            "expected": cut(values["expected"], limit),
            **{name: cut(values[name], limit) for name in ("output_a", "output_b") if name in values},
            "context": [cut(doc, limit) for doc in values["context"]],
            "messages": [{"role": m["role"], "content": cut(m["content"], limit)}
                         for m in values["messages"]],
        }
    chars = fixed + sum(len(text) for field in used for text in _texts(values, fields, field))
    return values, chars


def cut_fields(values: dict[str, Any], fields: frozenset[str]) -> list[str]:
    """The used fields whose text carries a cut mark (or whose conversation lost messages)."""
    found = []
    for field in NOTED_FIELDS:
        if not _uses(fields, field):
            continue
        dropped = field == "input" and "messages" in fields and bool(values["messages"]) and (
            values["messages"][0]["role"] == _DROPPED_ROLE)
        if dropped or any(_CUT.search(text) for text in _texts(values, fields, field)):
            found.append(field)
    return found
