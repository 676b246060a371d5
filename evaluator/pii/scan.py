"""One cheap pass over a text that every detector starts from.

Running each detector's regex over the whole text costs ~10-30 µs per KB each; most text holds
no PII. So the text is scanned once for the few things PII needs (digit runs, long unbroken
tokens, `@`, `:`/`=`), and detectors run their precise regexes only in small windows around
those, with `pattern.finditer(text, start, end)` so lookbehinds still see the real context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DIGIT_RUN = re.compile(r"\d(?:[ \t.\-/()]{0,3}\d)*")
"""Digits with the separators numbers are written with: `(415) 555-0134`, `4111 1111 ...`, `10.0.0.1`."""
_LONG_TOKEN = re.compile(r"\S{15,}")
"""Credentials are long unbroken tokens; prose words are short."""
_ASSIGNMENT = re.compile(r"[:=]")
_DIGITS = str.maketrans("", "", "0123456789")
OBFUSCATION_HINT = re.compile(r"(?i)[\[({<]\s*(?:at|@|dot|\.)\s*[\])}>]|\sdot\s|[\uff20\ufe6b]")
"""What an address written against scrapers needs (`[at]`, ` dot `, a full-width `＠`)."""


def count_digits(text: str) -> int:
    return len(text) - len(text.translate(_DIGITS))


class TextScan:
    """A text plus the candidate positions detectors start from, computed once and shared."""

    __slots__ = ("assignments", "digit_runs", "long_tokens", "lower", "text")

    def __init__(self, text: str):
        self.text = text
        self.lower = text.lower()
        """For `in` checks only: its indices may differ from `text`'s for non-ASCII text."""
        self.digit_runs = [found.span() for found in _DIGIT_RUN.finditer(text)]
        self.long_tokens = [found.span() for found in _LONG_TOKEN.finditer(text)]
        self.assignments = [found.start() for found in _ASSIGNMENT.finditer(text)]
        """Positions of `:` and `=` (where `api_key=...` or `token: ...` would put a value)."""

    def runs_with_digits(self, minimum: int) -> list[tuple[int, int]]:
        """Digit runs holding at least `minimum` digits (most runs are too short to count)."""
        text = self.text
        return [
            (start, end)
            for start, end in self.digit_runs
            if end - start >= minimum and count_digits(text[start:end]) >= minimum
        ]

    @property
    def empty(self) -> bool:
        """Nothing any detector could start from: no digits, `@`, `:`/`=`, long token or
        obfuscated address."""
        return not (
            self.digit_runs or self.long_tokens or self.assignments or "@" in self.text
            or OBFUSCATION_HINT.search(self.text)
        )

    def positions_of(self, needle: str) -> list[int]:
        positions = []
        at = self.text.find(needle)
        while at != -1:
            positions.append(at)
            at = self.text.find(needle, at + 1)
        return positions

    def windows(self, spans: Iterable[tuple[int, int]], before: int, after: int) -> list[tuple[int, int]]:
        """Spans widened by `before`/`after` characters, clipped to the text, overlaps merged."""
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            start, end = max(0, start - before), min(len(self.text), end + after)
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged
