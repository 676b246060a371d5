"""The built-in code scorers. Each is a class whose keyword arguments are a rubric's `params`;
each reads the trace's `output` and, for the match scorers, its reference answer `expected`."""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from typing import Any

import regex

from evaluator.core.records import Trace
from evaluator.judges.scorers.base import SCORERS, Score

DEFAULT_REGEX_TIMEOUT_S = 0.5
CHARS_PER_TOKEN = 4
"""Tokens are estimated as characters / 4, the estimate the judge rate limiter uses (no
tokenizer: none can be downloaded at run time)."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d{3})*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def _no_expected() -> Score:
    return Score(None, "the item has no `expected` reference answer to compare with")


def normalize(text: str) -> str:
    """Case, accents' compatibility forms, punctuation, articles and spacing removed (the SQuAD
    answer normalization, on NFKC text)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


class ExactMatch:
    """The output equals `expected` (after stripping surrounding space, unless `strip: false`)."""

    version = "1"

    def __init__(self, case_sensitive: bool = True, strip: bool = True):
        self.case_sensitive, self.strip = bool(case_sensitive), bool(strip)

    def _form(self, text: str) -> str:
        text = text.strip() if self.strip else text
        return text if self.case_sensitive else text.casefold()

    def score(self, trace: Trace) -> Score:
        if trace.expected is None:
            return _no_expected()
        if self._form(trace.output) == self._form(trace.expected):
            return Score(1.0, "the output equals the expected answer")
        return Score(0.0, f"the output {_quote(trace.output)} differs from the expected "
                          f"{_quote(trace.expected)}")


class NormalizedMatch:
    """The output equals `expected` once both are normalized (`normalize`); with
    `contains: true`, the normalized expected answer only has to appear in the output."""

    version = "1"

    def __init__(self, contains: bool = False):
        self.contains = bool(contains)

    def score(self, trace: Trace) -> Score:
        if trace.expected is None:
            return _no_expected()
        output, expected = normalize(trace.output), normalize(trace.expected)
        found = (f" {expected} " in f" {output} ") if self.contains else output == expected
        how = "contains" if self.contains else "equals"
        if found:
            return Score(1.0, f"the normalized output {how} the normalized expected answer")
        return Score(0.0, f"the normalized output {_quote(output)} does not {how.rstrip('s')} "
                          f"the normalized expected {_quote(expected)}")


class Contains:
    """The output contains `any` (at least one) or `all` of `values`; without values, the
    expected answer. `forbidden: true` inverts it: none of them may appear."""

    version = "1"

    def __init__(self, values: list[str] | None = None, mode: str = "any",
                 case_sensitive: bool = False, forbidden: bool = False):
        if mode not in ("any", "all"):
            raise ValueError(f"mode must be 'any' or 'all', not {mode!r}")
        if values is not None and (not isinstance(values, list) or not values
                                   or not all(isinstance(v, str) and v for v in values)):
            raise ValueError("values must be a non-empty list of non-empty strings")
        self.values, self.mode = values, mode
        self.case_sensitive, self.forbidden = bool(case_sensitive), bool(forbidden)

    def score(self, trace: Trace) -> Score:
        values = self.values
        if values is None:
            if trace.expected is None:
                return _no_expected()
            values = [trace.expected]
        fold = (lambda text: text) if self.case_sensitive else str.casefold
        output = fold(trace.output)
        present = [value for value in values if fold(value) in output]
        if self.forbidden:
            if present:
                return Score(0.0, f"the output contains the forbidden {_quote(present[0])}")
            return Score(1.0, f"the output contains none of the {len(values)} forbidden strings")
        missing = [value for value in values if value not in present]
        ok = bool(present) if self.mode == "any" else not missing
        if ok:
            return Score(1.0, f"the output contains {len(present)} of the {len(values)} strings "
                              f"({self.mode} required)")
        return Score(0.0, f"the output lacks {_quote(missing[0])} ({len(present)} of "
                          f"{len(values)} present, {self.mode} required)")


class Regex:
    """The output matches `pattern` (searched anywhere; `full: true` for the whole output), or
    must not with `forbidden: true`. A search longer than `timeout_s` (catastrophic
    backtracking) is an error, never a hang: the `regex` module stops it."""

    version = "1"

    def __init__(self, pattern: str, ignore_case: bool = False, full: bool = False,
                 forbidden: bool = False, timeout_s: float = DEFAULT_REGEX_TIMEOUT_S):
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("pattern must be a non-empty string")
        if not 0 < float(timeout_s) <= 10:
            raise ValueError("timeout_s must be more than 0 and at most 10 seconds")
        try:
            self.pattern = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
        except regex.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
        self.full, self.forbidden, self.timeout_s = bool(full), bool(forbidden), float(timeout_s)

    def score(self, trace: Trace) -> Score:
        search = self.pattern.fullmatch if self.full else self.pattern.search
        try:
            match = search(trace.output, timeout=self.timeout_s)
        except TimeoutError:
            raise TimeoutError(f"pattern {self.pattern.pattern!r} ran past its {self.timeout_s:g} s "
                               "timeout on this output (catastrophic backtracking?)") from None
        if self.forbidden:
            if match:
                return Score(0.0, f"the output matches the forbidden pattern at {_quote(match.group(0))}")
            return Score(1.0, f"the output does not match {self.pattern.pattern!r}")
        if match:
            return Score(1.0, f"the output matches {self.pattern.pattern!r} at {_quote(match.group(0))}")
        return Score(0.0, f"the output does not match {self.pattern.pattern!r}")


def _json_text(output: str, code_fence: bool) -> str:
    fenced = _FENCE.match(output) if code_fence else None
    return fenced.group(1) if fenced else output


class JsonValid:
    """The output is one JSON value (`code_fence: true` also accepts it inside a ``` fence)."""

    version = "1"

    def __init__(self, code_fence: bool = False):
        self.code_fence = bool(code_fence)

    def score(self, trace: Trace) -> Score:
        try:
            json.loads(_json_text(trace.output, self.code_fence))
        except (ValueError, RecursionError) as exc:
            return Score(0.0, f"the output is not valid JSON: {exc}")
        return Score(1.0, "the output is valid JSON")


class JsonSchema:
    """The output is JSON conforming to `schema` (a JSON Schema, any draft jsonschema knows;
    checked when the rubric loads)."""

    version = "1"

    def __init__(self, schema: dict[str, Any], code_fence: bool = False):
        import jsonschema  # lazy: only rubrics of this kind need it

        if not isinstance(schema, dict):
            raise ValueError("schema must be a JSON Schema object")
        validator = jsonschema.validators.validator_for(schema)
        try:
            validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None
        self.validator = validator(schema)
        self.code_fence = bool(code_fence)

    def score(self, trace: Trace) -> Score:
        try:
            value = json.loads(_json_text(trace.output, self.code_fence))
        except (ValueError, RecursionError) as exc:
            return Score(0.0, f"the output is not valid JSON: {exc}")
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if not errors:
            return Score(1.0, "the output conforms to the schema")
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path) or "<root>"
        return Score(0.0, f"{len(errors)} schema violation(s); at {where}: {first.message}")


class Length:
    """The output's length is within limits: characters, words, and estimated tokens
    (characters / 4). Every limit is optional; at least one is needed."""

    version = "1"

    def __init__(self, min_chars: int | None = None, max_chars: int | None = None,
                 min_words: int | None = None, max_words: int | None = None,
                 max_tokens: int | None = None):
        self.limits = {"min_chars": min_chars, "max_chars": max_chars, "min_words": min_words,
                       "max_words": max_words, "max_tokens": max_tokens}
        if all(limit is None for limit in self.limits.values()):
            raise ValueError("set at least one of " + ", ".join(self.limits))
        for name, limit in self.limits.items():
            if limit is not None and (not isinstance(limit, int) or limit < 0):
                raise ValueError(f"{name} must be a whole number, 0 or more")

    def score(self, trace: Trace) -> Score:
        measured = {"chars": len(trace.output), "words": len(trace.output.split()),
                    "tokens": math.ceil(len(trace.output) / CHARS_PER_TOKEN)}
        for name, limit in self.limits.items():
            if limit is None:
                continue
            bound, unit = name.split("_")
            value = measured[unit]
            if value < limit if bound == "min" else value > limit:
                return Score(0.0, f"the output has {value} {unit}, {bound} {limit}")
        return Score(1.0, f"the output ({measured['chars']} chars, {measured['words']} words, "
                          f"~{measured['tokens']} tokens) is within the limits")


def _parse_number(text: str) -> float | None:
    found = _NUMBER.search(text)
    return float(found.group(0).replace(",", "")) if found else None


class Numeric:
    """The first number in the output is within `tolerance` of the number in `expected`
    (absolute; `relative: true` for a share of the expected value)."""

    version = "1"

    def __init__(self, tolerance: float = 0.0, relative: bool = False):
        if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
            raise ValueError("tolerance must be a finite number, 0 or more")
        self.tolerance, self.relative = float(tolerance), bool(relative)

    def score(self, trace: Trace) -> Score:
        if trace.expected is None:
            return _no_expected()
        expected = _parse_number(trace.expected)
        if expected is None:
            return Score(None, f"the expected answer {_quote(trace.expected)} holds no number")
        got = _parse_number(trace.output)
        if got is None:
            return Score(0.0, "the output holds no number")
        allowed = self.tolerance * abs(expected) if self.relative else self.tolerance
        off = abs(got - expected)
        verdict = "within" if off <= allowed else "beyond"
        return Score(float(off <= allowed), f"the output's {got:g} is {off:g} from the expected "
                                            f"{expected:g}, {verdict} the tolerance {allowed:g}")


for _name, _scorer in (("exact_match", ExactMatch), ("normalized_match", NormalizedMatch),
                       ("contains", Contains), ("regex", Regex), ("json_valid", JsonValid),
                       ("json_schema", JsonSchema), ("length", Length), ("numeric", Numeric)):
    SCORERS.register(_name, _scorer)
