"""Turn a judge's reply into a verdict: a complete JSON verdict first, then a careful text reading.

A complete, schema-valid JSON verdict (an allowed label and its reasoning) that opens or closes
the reply wins over anything around it, so text that quotes the evaluated answer before or after
it cannot flip it. Without one, every verdict the reply holds (label-only JSON objects, `Verdict: X` phrases, else bare
label mentions) must agree. Nothing is guessed: conflicting verdicts, no allowed label, an
off-menu JSON label, or only negated mentions ("not factual") raise VerdictParseError, and the
pipeline records the evaluation as unscored with the raw reply kept.

A rubric that asks for claims (`claims: true`) also gets the verdict's claim list, read only from
the complete JSON verdicts that open or close the reply (the ones that decide the label), so a
claim list quoted anywhere else cannot change the score. A malformed list, or framing verdicts
whose lists differ, is a VerdictParseError too: the score depends on it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from evaluator.core.errors import VerdictParseError
from evaluator.core.records import ClaimVerdict
from evaluator.core.stage_timing import timed

LABEL_KEYS = ("label", "verdict", "answer")
REASONING_KEYS = ("reasoning", "rationale", "explanation")
CLAIMS_KEY = "claims"
CLAIM_VERDICTS = ("supported", "unsupported", "contradicted")
MAX_CLAIMS = 500
"""Longest claim list read from one reply (a judge's reply is bounded by its max_tokens anyway)."""

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
_OPENING = re.compile(r"\s*(?:```(?:json)?\s*)?\[?\s*", re.IGNORECASE)
_CLOSING = re.compile(r"\s*\]?\s*(?:```\s*)?")


@dataclass(frozen=True)
class ParsedVerdict:
    label: str
    reasoning: str | None
    method: str  # "json" | "text"
    claims: tuple[ClaimVerdict, ...] | None = None
    """Only when asked for (`with_claims`) and given by the deciding JSON verdict."""


def canonical_label(text: str) -> str:
    """'  Mostly-Faithful.' -> 'mostly_faithful': case, edge punctuation and separators ignored."""
    return _SEPARATORS.sub("_", text.strip(_EDGE_NOISE).lower()).strip("_")


@timed("parse")
def parse_verdict(reply: str, labels: Sequence[str], with_claims: bool = False) -> ParsedVerdict:
    """The verdict in a judge reply; raises VerdictParseError (and nothing else) without one.
    `with_claims` also reads the claim list of the deciding JSON verdict."""
    if not isinstance(reply, str):
        raise VerdictParseError(f"judge reply is {type(reply).__name__}, not text")
    allowed = {canonical_label(label): label for label in labels if isinstance(label, str)}
    allowed.pop("", None)
    if not allowed:
        raise VerdictParseError("no allowed labels were given to parse the judge reply against")
    found = _json_verdicts(reply, allowed)
    if found:
        return _from_json(reply, found, allowed, with_claims)
    return _from_text(reply, allowed)


@dataclass(frozen=True)
class _JsonVerdict:
    key: str
    value: Any
    label: str | None  # the allowed label the value names, None when it is off the menu
    reasoning: str | None
    start: int
    end: int
    claims: Any = None
    """The raw value of the object's "claims" key (None when it has none)."""

    @property
    def complete(self) -> bool:
        """Schema-valid: an allowed label and its reasoning (what the structured modes ask for)."""
        return self.label is not None and self.reasoning is not None


def _describe_allowed(allowed: dict[str, str]) -> str:
    return ", ".join(allowed.values())


def _conflict(kinds: str, names: set[str], allowed: dict[str, str]) -> VerdictParseError:
    return VerdictParseError(
        f"judge reply holds conflicting {kinds} ({', '.join(sorted(names))}) and no single "
        f"complete JSON verdict; not guessing which one the judge meant "
        f"(allowed: {_describe_allowed(allowed)})"
    )


def _label_key(obj: dict[str, Any]) -> str | None:
    keys = {key.lower(): key for key in obj}
    return next((keys[name] for name in LABEL_KEYS if name in keys), None)


def _json_verdicts(reply: str, allowed: dict[str, str]) -> list[_JsonVerdict]:
    """The outermost JSON objects with a label key, in reply order. The whole reply and ```json
    fenced blocks are found like any object; objects nested in another one are its data."""
    objects: list[_JsonVerdict] = []
    decoder, position = json.JSONDecoder(), len(reply)
    for _ in range(_MAX_OBJECT_STARTS):
        position = reply.rfind("{", 0, position)
        if position < 0:
            break
        try:
            obj, end = decoder.raw_decode(reply, position)
        except (ValueError, RecursionError):
            continue
        key = _label_key(obj) if isinstance(obj, dict) else None
        if key is not None:
            objects.append(_read_json(obj, key, allowed, position, end))
    outermost = [found for found in objects
                 if not any(o.start < found.start and found.end <= o.end for o in objects)]
    return sorted(outermost, key=lambda found: found.start)


def _read_json(obj: dict[str, Any], key: str, allowed: dict[str, str], start: int,
               end: int) -> _JsonVerdict:
    value = obj[key]
    label = allowed.get(canonical_label(value)) if isinstance(value, str) else None
    values = {name.lower(): item for name, item in obj.items()}
    reasoning = next((values[n] for n in REASONING_KEYS if isinstance(values.get(n), str)), None)
    return _JsonVerdict(key, value, label, reasoning, start, end, values.get(CLAIMS_KEY))


def _from_json(reply: str, found: list[_JsonVerdict], allowed: dict[str, str],
               with_claims: bool) -> ParsedVerdict:
    complete = [verdict for verdict in found if verdict.complete]
    named = {verdict.label for verdict in complete if verdict.label}
    if len(named) > 1:
        raise _conflict("JSON verdicts", named, allowed)
    framing = [verdict for verdict in complete if _frames(reply, verdict)]
    if named and framing:
        claims = _framing_claims(framing) if with_claims else None
        return ParsedVerdict(label=named.pop(), reasoning=complete[-1].reasoning, method="json",
                             claims=claims)
    off_menu = next((verdict for verdict in found if verdict.label is None), None)
    if off_menu is not None:
        raise VerdictParseError(
            f"judge reply's JSON {off_menu.key!r} is {json.dumps(off_menu.value)[:100]}, not an "
            f"allowed label (allowed: {_describe_allowed(allowed)})"
        )
    outside = _outside(reply, found)
    mentioned = _text_verdicts(outside, allowed, required=False)
    named = {verdict.label for verdict in found if verdict.label} | {
        label for label, _ in mentioned}
    if len(named) > 1:
        raise _conflict("verdicts", named, allowed)
    reasoning = complete[-1].reasoning if complete else outside.strip() or None
    return ParsedVerdict(label=named.pop(), reasoning=reasoning, method="json")


def _frames(reply: str, verdict: _JsonVerdict) -> bool:
    """True when the verdict opens or closes the reply (past blanks, a ```json fence or a [):
    the judge's own answer. An object in the middle of prose may be a quotation, so there it
    wins only when no text verdict around it disagrees."""
    return bool(_OPENING.fullmatch(reply, 0, verdict.start)
                or _CLOSING.fullmatch(reply, verdict.end))


def _framing_claims(framing: list[_JsonVerdict]) -> tuple[ClaimVerdict, ...] | None:
    """The claim list the framing verdicts agree on (None when none of them has one)."""
    lists = {read_claims(verdict.claims) for verdict in framing if verdict.claims is not None}
    if len(lists) > 1:
        raise VerdictParseError("judge reply's verdicts hold different claim lists; not "
                                "guessing which one the judge meant")
    return lists.pop() if lists else None


def read_claims(value: Any) -> tuple[ClaimVerdict, ...]:
    """A judge's claim list: objects with `claim` (text), `verdict` (supported, unsupported or
    contradicted; case and separators ignored) and optional `evidence` (text or null). Other
    keys are ignored; anything else raises VerdictParseError naming the entry."""
    if not isinstance(value, list):
        raise VerdictParseError(f"judge reply's {CLAIMS_KEY!r} is {type(value).__name__}, not a "
                                "list of claims")
    if len(value) > MAX_CLAIMS:
        raise VerdictParseError(f"judge reply lists {len(value)} claims, more than {MAX_CLAIMS}")
    return tuple(_claim(index, entry) for index, entry in enumerate(value))


def _claim(index: int, entry: Any) -> ClaimVerdict:
    fields = {str(key).lower(): item for key, item in entry.items()} if isinstance(
        entry, dict) else {}
    verdict = fields.get("verdict")
    if isinstance(verdict, str):
        verdict = canonical_label(verdict)
    try:
        return ClaimVerdict.model_validate({"claim": fields.get("claim"), "verdict": verdict,
                                            "evidence": fields.get("evidence")})
    except ValidationError:
        shown = json.dumps(entry, ensure_ascii=False, default=str)[:200]
        raise VerdictParseError(
            f"judge reply's claim {index + 1} is not {{\"claim\": text, \"verdict\": one of "
            f"{', '.join(CLAIM_VERDICTS)}, \"evidence\": text or null}}: {shown}") from None


def _outside(reply: str, verdicts: list[_JsonVerdict]) -> str:
    """The reply without its JSON verdict objects (each replaced by a line break)."""
    pieces, position = [], 0
    for verdict in verdicts:
        pieces.append(reply[position : verdict.start])
        position = verdict.end
    pieces.append(reply[position:])
    return "\n".join(pieces)


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


def _text_verdicts(text: str, allowed: dict[str, str],
                   required: bool) -> list[tuple[str, re.Match[str]]]:
    """Every verdict the text states: its `Verdict: X` phrases, else its plain label mentions.

    A negated phrase ('Verdict: not X') raises; negated or qualified mentions ('not factual',
    'partially complied') count for nothing, and raise when they are all there is and a
    verdict is `required`.
    """
    verdict_phrase, whole_word = _label_patterns(tuple(allowed))
    phrases = list(verdict_phrase.finditer(text))
    negated = next((match for match in phrases if match.group("negation")), None)
    if negated is None and not phrases:
        mentions = list(whole_word.finditer(text))
        phrases = [match for match in mentions if not _hedged(text, match)]
        if not phrases and mentions and required:
            negated = mentions[-1]
    if negated is not None:
        mention = text[max(0, negated.start() - 20) : negated.end()]
        raise VerdictParseError(
            f"judge reply's verdict ...{mention!r} is negated or qualified; cannot tell "
            f"which label it meant (allowed: {_describe_allowed(allowed)})"
        )
    return [(allowed[canonical_label(match.group("label"))], match) for match in phrases]


def _hedged(text: str, match: re.Match[str]) -> bool:
    return bool(_HEDGED.search(text, max(0, match.start() - _HEDGE_WINDOW), match.start()))


def _from_text(reply: str, allowed: dict[str, str]) -> ParsedVerdict:
    mentioned = _text_verdicts(reply, allowed, required=True)
    if not mentioned:
        raise VerdictParseError(
            f"judge reply has no JSON verdict and mentions no allowed label "
            f"(allowed: {_describe_allowed(allowed)}; reply: {len(reply)} characters)"
        )
    named = {label for label, _ in mentioned}
    if len(named) > 1:
        raise _conflict("verdicts", named, allowed)
    label, last = mentioned[-1]
    return ParsedVerdict(label=label, reasoning=reply[: last.start()].strip() or None,
                         method="text")
