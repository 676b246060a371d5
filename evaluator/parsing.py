"""Turn a judge's reply into a verdict: JSON first, then a tolerant text fallback.

The verdict binds to the LAST one in the reply, so an evaluated answer quoted earlier in the
judge's reasoning cannot decide it. Nothing is guessed: no allowed label, an off-menu JSON
label, or a negated last mention ("not factual") raise VerdictParseError, and the pipeline
records the evaluation as unscored with the raw reply kept.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluator.errors import VerdictParseError
from evaluator.stage_timing import timed

LABEL_KEYS = ("label", "verdict", "answer")
REASONING_KEYS = ("reasoning", "rationale", "explanation")

_MAX_OBJECT_STARTS = 1_000
"""How many `{` positions (from the end) are tried as JSON objects: bounds hostile replies."""
_EDGE_NOISE = " \t\r\n\"'`*_.,;:!?()[]{}<>"
_SEPARATORS = re.compile(r"[\s_-]+")
_VERDICT_KEY = (
    r"\b(?:final[\s_]+answer|label|verdict|classification|judge?ment|decision|rating|grade"
    r"|answer(?=[\"'*]*\s*[:=]))\b"
)
_HEDGED = re.compile(
    r"(?:\b(?:not|never|no|without|hardly|neither|nor|isn't|wasn't|aren't|isnt)\s+(?:\w+\s+){0,2}"
    r"|\bnon[\s-]?|\b(?:partially|partly|mostly|somewhat|largely|half)[\s-]+)$",
    re.IGNORECASE,
)
"""A bare label mention ending like this ('not factual', 'partially complied') is no verdict."""
_HEDGE_WINDOW = 40


@dataclass(frozen=True)
class ParsedVerdict:
    label: str
    reasoning: str | None
    method: str  # "json" | "text"


def canonical_label(text: str) -> str:
    """'  Mostly-Faithful.' -> 'mostly_faithful': case, edge punctuation and separators ignored."""
    return _SEPARATORS.sub("_", text.strip(_EDGE_NOISE).lower()).strip("_")


@timed("parse")
def parse_verdict(reply: str, labels: Sequence[str]) -> ParsedVerdict:
    """The verdict in a judge reply; raises VerdictParseError (and nothing else) without one.

    JSON comes first; a label mentioned in the text after that JSON object is the later
    verdict and wins (a judge that quotes an answer's fake JSON and then concludes in prose).
    """
    if not isinstance(reply, str):
        raise VerdictParseError(f"judge reply is {type(reply).__name__}, not text")
    allowed = {canonical_label(label): label for label in labels if isinstance(label, str)}
    allowed.pop("", None)
    if not allowed:
        raise VerdictParseError("no allowed labels were given to parse the judge reply against")
    found = _json_verdict(reply)
    if found is not None:
        later = _from_text(reply, allowed, start=found[1])
        return later or _from_json(found[0], allowed)
    verdict = _from_text(reply, allowed)
    if verdict is None:
        raise VerdictParseError(
            f"judge reply has no JSON verdict and mentions no allowed label "
            f"(allowed: {_describe_allowed(allowed)}; reply: {len(reply)} characters)"
        )
    return verdict


def _describe_allowed(allowed: dict[str, str]) -> str:
    return ", ".join(allowed.values())


def _label_key(obj: dict[str, Any]) -> str | None:
    keys = {key.lower(): key for key in obj}
    return next((keys[name] for name in LABEL_KEYS if name in keys), None)


def _json_verdict(reply: str) -> tuple[dict[str, Any], int] | None:
    """The JSON object with a label key that ends last in the reply (the outermost on a tie),
    and where it ends. The whole reply and ```json fenced blocks are found like any object."""
    best = None
    decoder, position = json.JSONDecoder(), len(reply)
    for _ in range(_MAX_OBJECT_STARTS):
        position = reply.rfind("{", 0, position)
        if position < 0:
            break
        try:
            obj, end = decoder.raw_decode(reply, position)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and _label_key(obj) and (best is None or end >= best[1]):
            best = (obj, end)
    return best


def _from_json(obj: dict[str, Any], allowed: dict[str, str]) -> ParsedVerdict:
    key = _label_key(obj)
    value = obj[key]
    label = allowed.get(canonical_label(value)) if isinstance(value, str) else None
    if label is None:
        raise VerdictParseError(
            f"judge reply's JSON {key!r} is {json.dumps(value)[:100]}, not an allowed label "
            f"(allowed: {_describe_allowed(allowed)})"
        )
    values = {name.lower(): value for name, value in obj.items()}
    reasoning = next((values[n] for n in REASONING_KEYS if isinstance(values.get(n), str)), None)
    return ParsedVerdict(label=label, reasoning=reasoning, method="json")


@functools.lru_cache(maxsize=256)
def _label_patterns(canonical: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(verdict phrase like 'Verdict: X', whole-word label) for one label set, longest first."""
    alternation = "|".join(
        r"[\s_-]+".join(map(re.escape, label.split("_")))
        for label in sorted(canonical, key=len, reverse=True)
    )
    label = rf"(?P<label>{alternation})(?![\w-])"
    verdict_phrase = re.compile(
        rf"{_VERDICT_KEY}[^\w\n]{{0,12}}(?:(?:is|would\s+be|should\s+be)\b[^\w\n]{{0,4}})?"
        rf"(?P<negation>\b(?:not|non)\b[\s-]*)?{label}",
        re.IGNORECASE,
    )
    return verdict_phrase, re.compile(rf"(?<![\w-]){label}", re.IGNORECASE)


def _from_text(reply: str, allowed: dict[str, str], start: int = 0) -> ParsedVerdict | None:
    """The last verdict phrase ('Verdict: X'), else the last whole-word label, from `start` on."""
    verdict_phrase, whole_word = _label_patterns(tuple(allowed))
    last = None
    for last in verdict_phrase.finditer(reply, start):
        pass
    hedged = last is not None and bool(last.group("negation"))
    if last is None:
        for last in whole_word.finditer(reply, start):
            pass
        if last is None:
            return None
        window_start = max(0, last.start() - _HEDGE_WINDOW)
        hedged = bool(_HEDGED.search(reply, window_start, last.start()))
    if hedged:
        mention = reply[max(0, last.start() - 20) : last.end()]
        raise VerdictParseError(
            f"judge reply's last verdict ...{mention!r} is negated or qualified; cannot tell "
            f"which label it meant (allowed: {_describe_allowed(allowed)})"
        )
    label = allowed[canonical_label(last.group("label"))]
    reasoning = reply[: last.start()].strip() or None
    return ParsedVerdict(label=label, reasoning=reasoning, method="text")
