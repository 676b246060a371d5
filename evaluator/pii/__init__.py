"""PII masking at the start of the pipeline, before anything is stored or enqueued.

Kinds: e-mail (also obfuscated), phone (libphonenumber), payment card (Luhn), IBAN (mod 97),
IPv4/IPv6 (ipaddress), credentials (API keys, bearer tokens, JWTs, webhooks, assigned secrets),
US SSN; after a cue word, national identifiers (python-stdnum), dates of birth, passport numbers.
Modes: `off`; `mask` (`<EMAIL_1>`, numbered per trace); `hash` (`<EMAIL_3fa2c1>`, an HMAC of
the normalized value, stable across traces).

    masker = PiiMasker(PiiConfig(mode="mask"))
    masked = masker.mask_trace(trace)

May import: core.
"""

from evaluator.pii.masker import (
    MODES,
    PiiConfig,
    PiiMasker,
    Placeholders,
    input_hash,
    resolve_overlaps,
)
from evaluator.pii.match import ALL_KINDS, KIND_TAGS, PiiMatch

__all__ = [
    "ALL_KINDS", "KIND_TAGS", "MODES", "PiiConfig", "PiiMasker", "PiiMatch", "Placeholders",
    "input_hash", "resolve_overlaps",
]
