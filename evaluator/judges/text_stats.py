"""Cheap lexical features for the offline judge: sentences, content words, numbers, names.

Everything here is plain regex and set work, precompiled at import, so a judge call stays in
the tens of microseconds. The stemmer is deliberately light (plural, -ing, -ed, trailing e):
it only has to make "expires" meet "expired", not to be linguistics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

STOP_WORDS = frozenset(
    """
    a about above after again all also am an and any anything are as at be because been before
    being below between both but by can cannot could did do does doing done don down during each
    else etc even ever every few for from further get gets getting give go going got had has have
    having he her here hers him his how however i if in into is it its itself just know let like
    make many may me might more most much must my need no nor not now of off on once one only or
    other our ours out over own please quite rather really same say see she should so some still
    such sure than thank thanks that the their them then there these they thing things this those
    though through to too under until up upon us use used using very want was way we well were
    what when where whether which while who whom whose why will with within without would yes yet
    you your yours can't won't isn't aren't doesn't don't didn't i'm i've i'd you're it's that's
    there's here's let's we're they're
    """.split()
)

_WORD_RE = re.compile(r"[a-z][a-z0-9]*(?:'[a-z]+)?")
_NUMBER_RE = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_CAPITALIZED_RE = re.compile(r"\b[A-Z][A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*\b")
_SENTENCE_BREAK_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*")
_LIST_MARKER_RE = re.compile(r"^(?:[-*\u2022]\s+|\d{1,2}[.)]\s+)")
_EMAIL_RE = re.compile(r"[^\s@]{1,64}@[^\s@]{1,255}\.\w+")
r"""Bounded parts (RFC 5321: 64 before the @, 255 after): `\S+@` backtracks quadratically on a
long run of non-space characters, ~15 s for 100,000 of them."""

_SUFFIXES = (
    ("sses", "ss"),
    ("ies", "y"),
    ("ness", ""),
    ("ments", ""),
    ("ment", ""),
    ("ingly", ""),
    ("ing", ""),
    ("edly", ""),
    ("ed", ""),
    ("ly", ""),
    ("s", ""),
)
_NO_STRIP_S = ("ss", "us", "is")
_UNDOUBLED = frozenset("bdfglmnprt")
_CACHED_TEXT_MAX = 2000
"""Texts up to this length have their stems cached; caches stay small even for huge inputs."""


@lru_cache(maxsize=16384)
def stem(word: str) -> str:
    """Strip one common English suffix (and a trailing e / doubled consonant) from a word."""
    if len(word) <= 3:
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(_NO_STRIP_S):
                break
            word = word[: -len(suffix)] + replacement
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] in _UNDOUBLED:
        word = word[:-1]
    return word


def _straight_quotes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def content_stems(text: str) -> frozenset[str]:
    """Stems of the words that carry meaning: lowercased, stop words and one-letter words out."""
    if len(text) <= _CACHED_TEXT_MAX:
        return _cached_content_stems(text)
    return _content_stems(text)


def _content_stems(text: str) -> frozenset[str]:
    words = set(_WORD_RE.findall(_straight_quotes(text.lower())))
    return frozenset(stem(w) for w in words if w not in STOP_WORDS and len(w) > 1)


_cached_content_stems = lru_cache(maxsize=4096)(_content_stems)
"""Sentences recur: every rubric judged on a trace looks at the same answer sentences."""


def numbers(text: str) -> set[str]:
    """Numbers written in the text, normalized ("21,196" -> "21196", "99.90" -> "99.9")."""
    found = set()
    for raw in _NUMBER_RE.findall(text):
        value = raw.replace(",", "")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        found.add(value)
    return found


def names(sentence: str) -> set[str]:
    """Lowercased capitalized words that do not open the sentence: a cheap named-entity proxy."""
    return {
        match.group().lower()
        for match in _CAPITALIZED_RE.finditer(sentence)
        if match.start() > 0 and match.group().lower() not in STOP_WORDS
    }


@lru_cache(maxsize=256)
def split_sentences(text: str) -> tuple[str, ...]:
    """Sentences and list items of a text, list markers removed, empty pieces dropped (cached)."""
    pieces = []
    for piece in _SENTENCE_BREAK_RE.split(_straight_quotes(text)):
        piece = _LIST_MARKER_RE.sub("", piece.strip())
        if piece:
            pieces.append(piece)
    return tuple(pieces)


def without_emails(text: str) -> str:
    return _EMAIL_RE.sub(" ", text)


@dataclass(frozen=True)
class Evidence:
    """What a body of reference text (context documents, the question) says, as sets."""

    stems: frozenset[str]
    numbers: frozenset[str]
    names: frozenset[str]
    """Lowercased words of the text, stemmed or not, used to recognise a name as known."""

    @property
    def is_empty(self) -> bool:
        return not self.stems and not self.numbers


@lru_cache(maxsize=64)
def evidence_from(texts: tuple[str, ...]) -> Evidence:
    """Index reference texts once; cached because one trace is judged by several rubrics."""
    joined = "\n".join(texts)
    stems = _content_stems(joined)
    words = set(_WORD_RE.findall(_straight_quotes(joined.lower())))
    return Evidence(stems=stems, numbers=frozenset(numbers(joined)), names=frozenset(words | stems))
