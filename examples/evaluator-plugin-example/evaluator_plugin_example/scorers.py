"""A code scorer: Flesch reading ease of the output, passing at `min_score` or more."""

from __future__ import annotations

import re

from evaluator.core.records import Trace
from evaluator.judges.scorers import Score

_WORD = re.compile(r"[A-Za-z]+")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    count = len(_VOWEL_GROUPS.findall(word.lower()))
    if word.lower().endswith("e") and count > 1:
        count -= 1
    return max(count, 1)


class ReadingEase:
    """Rubric params: `min_score` (Flesch reading ease, about 0 to 100; 60 is plain English)."""

    version = "1"

    def __init__(self, min_score: float = 60.0):
        if not isinstance(min_score, (int, float)):
            raise ValueError("min_score must be a number")
        self.min_score = float(min_score)

    def score(self, trace: Trace) -> Score:
        words = _WORD.findall(trace.output)
        if not words:
            return Score(None, "the output has no words to measure")
        sentences = max(1, len(re.findall(r"[.!?]+", trace.output)))
        ease = (206.835 - 1.015 * len(words) / sentences
                - 84.6 * sum(syllables(word) for word in words) / len(words))
        passed = ease >= self.min_score
        return Score(1.0 if passed else 0.0,
                     f"Flesch reading ease {ease:.1f} ({'at least' if passed else 'below'} {self.min_score:g})")
