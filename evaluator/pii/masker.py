"""PiiMasker: find PII in text and replace it with placeholders the judge can still reason about.

Runs at the start of the pipeline, before a trace is stored or enqueued. Within one trace the
same value always gets the same placeholder (`<EMAIL_1>` twice means the same address), across
all its fields. Masking is idempotent: placeholders are never detected as PII themselves.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers

from evaluator.errors import ConfigError
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
from evaluator.pii.match import ALL_KINDS, KIND_PRIORITY, KIND_TAGS, PiiMatch
from evaluator.pii.scan import TextScan
from evaluator.records import Message, Trace, canonical_json, sha256_hex

Mode = Literal["off", "mask", "hash"]
MODES: tuple[Mode, ...] = ("off", "mask", "hash")

Placeholders = dict[str, dict[str, str]]
"""Numbering state shared by the fields of one trace: kind -> canonical value -> placeholder."""

HASH_CHARS = 6
"""Hex characters of the keyed hash in hash-mode placeholders (`<EMAIL_3fa2c1>`): 24 bits, so
two values of one kind in a trace share a placeholder about once in 16 million pairs. Six also
keeps placeholders below the seven digits that would make them look like a phone number."""

Detector = Callable[[TextScan], Iterator[PiiMatch]]


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

    def find(self, text: str) -> list[PiiMatch]:
        """Every PII match in `text` after overlap resolution, in text order (mode is ignored)."""
        if not text:
            return []
        scan = TextScan(text)
        if scan.empty:
            return []
        candidates = [match for detector in self._detectors for match in detector(scan)]
        if self._phone_digits is not None:
            candidates += find_phones(scan, self.config.phone_region, self._phone_digits, candidates)
        return resolve_overlaps(candidates)

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

    def mask_trace(self, trace: Trace) -> Trace:
        """A masked copy of `trace` with one placeholder map across all its text fields.

        Sets `input_hash` from the raw input first (dedup without keeping the text), unless the
        trace says it was masked already: then its input is no longer raw and the hash is kept.
        """
        input_hash = trace.input_hash if trace.pii_masked and trace.input_hash else raw_input_hash(trace)
        if self.config.mode == "off":
            return trace.model_copy(update={"input_hash": input_hash})
        seen: Placeholders = {}

        def mask(text: str | None) -> str | None:
            return self.mask_text(text, seen) if text else text

        if isinstance(trace.input, str):
            masked_input: str | list[Message] = mask(trace.input) or ""
        else:
            masked_input = [m.model_copy(update={"content": mask(m.content)}) for m in trace.input]
        update: dict[str, Any] = {
            "input": masked_input,
            "system": mask(trace.system),
            "context": [mask(doc) for doc in trace.context],
            "output": mask(trace.output),
            "error": mask(trace.error),
            "user_id": mask(trace.user_id),
            "tags": [mask(tag) for tag in trace.tags],
            "metadata": {k: mask(v) if isinstance(v, str) else v for k, v in trace.metadata.items()},
            "input_hash": input_hash,
            "pii_masked": True,
        }
        return trace.model_copy(update=update)


def raw_input_hash(trace: Trace) -> str:
    """sha256 of the canonical JSON of the input as it is now (a string or a list of messages)."""
    raw = trace.input if isinstance(trace.input, str) else [m.model_dump() for m in trace.input]
    return sha256_hex(canonical_json(raw))
