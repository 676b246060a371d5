"""Making trace text inert inside a judge prompt: delimiters it cannot forge."""

from __future__ import annotations

import re

from evaluator.rubrics.lookalikes import LESS_THAN_LOOKALIKES, fold

_ASCII_INVISIBLE = str.maketrans("", "", "".join(map(chr, [*range(9), *range(11, 32), 127])))
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)
"""Control and invisible formatting characters; U+E0000-E007F are the tag characters that spell
ASCII no reader sees (a known way to smuggle instructions to a model)."""
_LOOKALIKE_OPENERS = "\uff1c\ufe64\u2329" + LESS_THAN_LOOKALIKES.replace("\u2039", "")
_ANGLE_RUN = re.compile("[<>]{3,}")
_TAG_WORDS = "data|output|context|question|input|system|user|assistant|instructions?"
_TAG = rf"(?=\s*/?\s*(?i:{_TAG_WORDS})\b|\|)"
_TAG_OPENER = re.compile("<" + _TAG)
_LOOKALIKE_TAG_OPENER = re.compile(f"[{_LOOKALIKE_OPENERS}]{_TAG}")
_SAFE_OPENER = "\u2039"
"""'‹' replaces the opener of a tag-like sequence; it opens no tag (nor a run: runs are spaced)."""
_MARKER_WORDS = tuple(
    (word, re.compile(f"{word}(?<![A-Za-z]{word})(?![A-Za-z])"), word.capitalize())
    for word in ("BEGIN", "END")
)
"""Literal-first patterns (the look-behind sits after the word) so the regex engine skips fast."""
_BLOCK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 _-]{0,39}")


def _space_out(match: re.Match[str]) -> str:
    return " ".join(match.group())


def neutralize(text: str) -> str:
    """Make trace text inert inside a prompt; idempotent, and cheap on ordinary text.

    Strips control and invisible formatting characters (keeps \\n and \\t), writes look-alikes
    that spell a marker-like sequence in ASCII (`lookalikes.fold`: `⋘ЕΝD` is `<<<END`), spaces
    out runs of three or more angle brackets (`<<<` becomes `< < <`), turns the opener of
    data/role-like tags and `<|special|>` tokens into `‹`, and writes the uppercase marker words
    BEGIN/END as Begin/End, so the text can neither close nor open a `data_block`. Each regex
    runs only when a cheap substring test says it could match.
    """
    if text.isascii():
        text = text.translate(_ASCII_INVISIBLE)
        lookalikes = False
    else:
        text = fold(_INVISIBLE.sub("", text))
        lookalikes = any(char in text for char in _LOOKALIKE_OPENERS)
    if "<<" in text or ">>" in text or "<>" in text or "><" in text:
        text = _ANGLE_RUN.sub(_space_out, text)
    if "<" in text:
        text = _TAG_OPENER.sub(_SAFE_OPENER, text)
    if lookalikes:
        text = _LOOKALIKE_TAG_OPENER.sub(_SAFE_OPENER, text)
    for word, pattern, softened in _MARKER_WORDS:
        if word in text:
            text = pattern.sub(softened, text)
    return text


_KNOWN: dict[str, str] = {}
"""Recent texts and their neutral form (a neutral text is its own: neutralize is idempotent)."""
KNOWN_MAX = 512
"""Texts remembered before the memory is cleared."""
KNOWN_MAX_CHARS = 20_000
"""Longer texts are neutralized every time: the memory stays a few MB at most."""


def neutralized(text: str) -> str:
    """`neutralize(text)`, remembered for recent texts: each rubric judged on a trace
    neutralizes the same fields, and `data_block` neutralizes them again. A text seen before
    costs a dict lookup (its hash is computed once per string object)."""
    found = _KNOWN.get(text)
    if found is None:
        found = neutralize(text)
        if len(text) <= KNOWN_MAX_CHARS:
            if len(_KNOWN) >= KNOWN_MAX:
                _KNOWN.clear()
            _KNOWN[text] = _KNOWN[found] = found
    return found


def data_block(name: str, text: str) -> str:
    """Template global: wrap text in BEGIN/END markers (re-neutralized, so joins stay inert)."""
    if not isinstance(name, str) or not _BLOCK_NAME.fullmatch(name):
        raise ValueError(f"data_block name {name!r}: use letters, digits, ' ', '_', '-' (max 40)")
    if not isinstance(text, str):
        raise TypeError(
            f"data_block({name!r}, ...) needs a string, not {type(text).__name__}; "
            "join lists first, e.g. context|join('\\n\\n')"
        )
    return f"<<<BEGIN {name.upper()}>>>\n{neutralized(text)}\n<<<END {name.upper()}>>>"


