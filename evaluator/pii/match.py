"""What a detector reports, and the kinds of PII the masker knows."""

from __future__ import annotations

from dataclasses import dataclass

KIND_TAGS: dict[str, str] = {
    "email": "EMAIL",
    "phone": "PHONE",
    "card": "CARD",
    "iban": "IBAN",
    "ip": "IP",
    "secret": "SECRET",
    "ssn": "SSN",
    "national_id": "NATIONAL_ID",
    "dob": "DOB",
    "passport": "PASSPORT",
}
"""Kind name (as configured) -> placeholder tag (as the judge sees it: `<EMAIL_1>`)."""

ALL_KINDS: frozenset[str] = frozenset(KIND_TAGS)

KIND_PRIORITY: dict[str, int] = {kind: rank for rank, kind in enumerate(
    ("secret", "card", "iban", "ssn", "national_id", "passport", "email", "phone", "dob", "ip")
)}
"""Which kind names a span two detectors found with the same extent (lower wins)."""


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of PII found in a text: `text[start:end] == value`."""

    kind: str
    start: int
    end: int
    value: str
    canonical: str
    """The normalized value placeholders are keyed on, so `(415) 555-0134` and `415.555.0134`,
    or `Jane@X.com` and `jane@x.com`, get the same placeholder."""
