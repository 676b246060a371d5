"""PiiMasker: find PII in text and replace it with placeholders the judge can still reason about.

Runs at the start of the pipeline, before a trace is stored or enqueued. Every string of a trace
is masked: text fields, labels (model, provider, prompt version, finish reason, roles), tags,
and metadata keys and values at any depth. Identifiers (trace, span and session ids) are keys,
not text: `check_identifiers` rejects one that looks like PII (ingest makes it a dead letter),
and masking leaves them as they are. Within one trace the same value always gets the same
placeholder (`<EMAIL_1>` twice means the same address), across all its fields. Masking is
idempotent: placeholders are never detected as PII themselves.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers

from evaluator.core.errors import ConfigError, InvalidTraceError
from evaluator.core.records import Message, Trace, canonical_json, sha256_hex
from evaluator.pii.credentials import find_secrets
from evaluator.pii.detectors import (
    find_cards,
    find_emails,
    find_ibans,
    find_ips,
    find_phones,
    find_ssns,
    national_min_digits,
)
from evaluator.pii.identifiers import find_dates_of_birth, find_national_ids, find_passports
from evaluator.pii.match import ALL_KINDS, KIND_PRIORITY, KIND_TAGS, PiiMatch
from evaluator.pii.scan import TextScan

Mode = Literal["off", "mask", "hash"]
MODES: tuple[Mode, ...] = ("off", "mask", "hash")

Placeholders = dict[str, dict[str, str]]
"""Numbering state shared by the fields of one trace: kind -> canonical value -> placeholder."""

HASH_CHARS = 6
"""Hex characters of the keyed hash in hash-mode placeholders (`<EMAIL_3fa2c1>`): 24 bits, so
two values of one kind in a trace share a placeholder about once in 16 million pairs. Six also
keeps placeholders below the seven digits that would make them look like a phone number."""

Detector = Callable[[TextScan], Iterator[PiiMatch]]

CLEAN_MEMO_CHARS = 1024
CLEAN_MEMO_ENTRIES = 4096
CLEAN_MEMO_TOTAL_CHARS = 1 << 20
"""Texts of up to CLEAN_MEMO_CHARS the detectors found free of PII are remembered (up to
CLEAN_MEMO_ENTRIES of them or CLEAN_MEMO_TOTAL_CHARS in all, then forgotten all at once):
metadata keys, ids and labels that look like tokens (`source_trace_id`) recur in every trace,
and so do the retrieved documents of a RAG app (the bundled sample's 3,473 contexts are 147
documents of ~220 characters); each ran every detector again (ids ~0.08 ms of the ~0.33 ms a
replayed item's masking took, its documents about half the rest). Only PII-free text is kept,
so the memo never holds personal data."""

IDENTIFIERS = ("trace_id", "span_id", "session_id")
_RANDOM_ID = {"trace_id": re.compile("[0-9a-f]{32}"), "span_id": re.compile("[0-9a-f]{16}")}
"""OpenTelemetry ids, random by construction: never checked (a 16-digit span id can pass the
Luhn check of a card number about once in 20,000 spans)."""


@dataclass(frozen=True)
class PiiConfig:
    """How to mask. `hash` mode keys its HMAC with `hash_salt`: without a secret salt a phone
    number's placeholder can be reversed by hashing every phone number, so set one in production."""

    mode: Mode = "mask"
    kinds: frozenset[str] = ALL_KINDS
    phone_region: str = "US"
    """Region used to read phone numbers written without a `+` country code."""
    hash_salt: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"PII mode {self.mode!r} is not one of {', '.join(MODES)}")
        kinds = frozenset(self.kinds)
        unknown = sorted(kinds - ALL_KINDS)
        if unknown:
            raise ConfigError(f"unknown PII kind(s) {unknown}: choose from {sorted(ALL_KINDS)}")
        object.__setattr__(self, "kinds", kinds)
        if self.phone_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(
                f"phone_region {self.phone_region!r} is not a region libphonenumber knows (e.g. US, GB, DE)"
            )


_CHEAP_DETECTORS: dict[str, Detector] = {
    "secret": find_secrets,
    "email": find_emails,
    "card": find_cards,
    "iban": find_ibans,
    "ssn": find_ssns,
    "ip": find_ips,
    "national_id": find_national_ids,
    "dob": find_dates_of_birth,
    "passport": find_passports,
}
"""Everything but phones, which run last so they can skip digits these already explained."""


def resolve_overlaps(candidates: Iterable[PiiMatch]) -> list[PiiMatch]:
    """Longest match first (then earliest, then by kind priority); drop anything overlapping
    a match already kept. Returns non-overlapping matches in text order."""
    ordered = sorted(candidates, key=lambda m: (m.start - m.end, m.start, KIND_PRIORITY[m.kind]))
    starts: list[int] = []
    kept: list[PiiMatch] = []
    for match in ordered:
        index = bisect.bisect_right(starts, match.start)
        if index and kept[index - 1].end > match.start:
            continue
        if index < len(kept) and kept[index].start < match.end:
            continue
        starts.insert(index, match.start)
        kept.insert(index, match)
    return kept


class PiiMasker:
    """Masks PII in text and traces. Holds no per-trace state, so one instance can be shared
    by threads; numbering state lives in the `placeholders` dict a caller passes around."""

    def __init__(self, config: PiiConfig = PiiConfig()):
        self.config = config
        self._detectors = [found for kind, found in _CHEAP_DETECTORS.items() if kind in config.kinds]
        self._phone_digits = national_min_digits(config.phone_region) if "phone" in config.kinds else None
        self._hash_key = config.hash_salt.encode("utf-8")
        self._clean: dict[str, None] = {}
        self._clean_chars = 0

    def find(self, text: str) -> list[PiiMatch]:
        """Every PII match in `text` after overlap resolution, in text order (mode is ignored)."""
        if not text:
            return []
        short = len(text) <= CLEAN_MEMO_CHARS
        if short and text in self._clean:
            return []
        scan = TextScan(text)
        matches: list[PiiMatch] = []
        if not scan.empty:
            candidates = [match for detector in self._detectors for match in detector(scan)]
            if self._phone_digits is not None:
                candidates += find_phones(scan, self.config.phone_region, self._phone_digits,
                                          candidates)
            matches = resolve_overlaps(candidates)
        if short and not matches:  # a role, a system prompt: remembered, not scanned again
            if len(self._clean) >= CLEAN_MEMO_ENTRIES or self._clean_chars >= CLEAN_MEMO_TOTAL_CHARS:
                self._clean.clear()
                self._clean_chars = 0
            self._clean[text] = None
            self._clean_chars += len(text)
        return matches

    def mask_text(self, text: str, placeholders: Placeholders | None = None) -> str:
        """`text` with each PII match replaced by its placeholder. Pass the same `placeholders`
        dict for every field of one trace so numbering is shared across them."""
        if self.config.mode == "off" or not text:
            return text
        if placeholders is None:
            placeholders = {}
        # Masking can expose a match that a longer, overlapping one hid (`1::0@0.AA` becomes
        # `1::<EMAIL_1>`), so repeat until nothing is found. This ends: detectors never match
        # placeholder text, so every pass shrinks the rest. PII-free text costs one pass.
        while matches := self.find(text):
            pieces: list[str] = []
            position = 0
            for match in matches:
                pieces.append(text[position : match.start])
                pieces.append(self._placeholder(match, placeholders))
                position = match.end
            pieces.append(text[position:])
            text = "".join(pieces)
        return text

    def _placeholder(self, match: PiiMatch, placeholders: Placeholders) -> str:
        seen = placeholders.setdefault(match.kind, {})
        placeholder = seen.get(match.canonical)
        if placeholder is None:
            if self.config.mode == "hash":
                message = f"{match.kind}\x1f{match.canonical}".encode()
                suffix = hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()[:HASH_CHARS]
            else:
                suffix = str(len(seen) + 1)
            placeholder = seen[match.canonical] = f"<{KIND_TAGS[match.kind]}_{suffix}>"
        return placeholder

    def check_identifiers(self, trace: Trace) -> Trace:
        """`trace` unchanged, or InvalidTraceError when one of its ids holds what looks like PII
        (an id is never masked: it is the key that joins a trace to its evaluations)."""
        if self.config.mode == "off":
            return trace
        for name in IDENTIFIERS:
            value = getattr(trace, name)
            random_id = _RANDOM_ID.get(name)
            if not value or random_id is not None and random_id.fullmatch(value):
                continue
            kinds = sorted({match.kind for match in self.find(value)})
            if kinds:
                raise InvalidTraceError(
                    f"invalid trace: field '{name}' holds what looks like personal data "
                    f"({', '.join(kinds)}): use an opaque id (a UUID, a counter)", field=name)
        return trace

    def mask_trace(self, trace: Trace) -> Trace:
        """A masked copy of `trace` with one placeholder map across all its strings, and its
        `input_hash` (see `input_hash`). Ids are left as they are: see `check_identifiers`."""
        if self.config.mode == "off":
            return trace.model_copy(update={"input_hash": input_hash(trace)})
        seen: Placeholders = {}

        def mask(text: str | None) -> str | None:
            return self.mask_text(text, seen) if text else text

        if isinstance(trace.input, str):
            masked_input: str | list[Message] = mask(trace.input) or ""
        else:
            masked_input = [m.model_copy(update={"role": mask(m.role), "content": mask(m.content)})
                            for m in trace.input]
        update: dict[str, Any] = {
            "input": masked_input,
            "system": mask(trace.system),
            "context": [mask(doc) for doc in trace.context],
            "output": mask(trace.output),
            "expected": mask(trace.expected),
            "error": mask(trace.error),
            **{name: mask(getattr(trace, name)) for name in
               ("user_id", "model", "provider", "prompt_version", "finish_reason")},
            "tags": [mask(tag) for tag in trace.tags],
            "metadata": self._mask_json(trace.metadata, seen),
            "pii_masked": True,
        }
        masked = trace.model_copy(update=update)
        return masked.model_copy(update={"input_hash": input_hash(masked)})

    def _mask_json(self, value: Any, seen: Placeholders) -> Any:
        """A JSON value with every string masked, object keys included. Depth is bounded by the
        trace limits (evaluator.core.trace_limits), so recursion is safe here."""
        if isinstance(value, str):
            return self.mask_text(value, seen)
        if isinstance(value, list):
            return [self._mask_json(item, seen) for item in value]
        if isinstance(value, dict):
            masked: dict[str, Any] = {}
            for key, item in value.items():
                # two keys spelling one value two ways ("415-555-0134", "(415) 555-0134") mask
                # to one placeholder: the first one's value is kept
                masked.setdefault(self.mask_text(key, seen), self._mask_json(item, seen))
            return masked
        return value


def input_hash(trace: Trace) -> str:
    """sha256 of the canonical JSON of the input as it is now: taken after masking, so the dedup
    key holds nothing the stored (masked) trace does not. A hash of the raw input could be
    reversed by hashing every candidate value (an SSN took 43 s)."""
    text = trace.input if isinstance(trace.input, str) else [m.model_dump() for m in trace.input]
    return sha256_hex(canonical_json(text))
