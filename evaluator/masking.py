"""Where PII masking happens, configured from the environment.

By default traces are masked at ingest, before they are enqueued or stored, so the judge sees
masked text too (`EVALUATOR_PII_JUDGE_SEES=masked`). With `raw`, ingest leaves the text alone
for the judge and the worker masks each trace before it is stored; note that a judge's reply
may then quote raw text in its reasoning. The raw payload a dead letter keeps is masked too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from evaluator.errors import ConfigError
from evaluator.records import Trace

if TYPE_CHECKING:
    from evaluator.pii import PiiMasker

Masker = Callable[[Trace], Trace]


@lru_cache(maxsize=8)
def _pii_masker(mode: str, region: str, salt: str) -> PiiMasker | None:
    if mode == "off":
        return None
    from evaluator.pii import PiiConfig, PiiMasker

    return PiiMasker(PiiConfig(mode=mode, phone_region=region, hash_salt=salt))


def _configured() -> PiiMasker | None:
    env = os.environ
    return _pii_masker(env.get("EVALUATOR_PII_MODE", "mask"),
                       env.get("EVALUATOR_PII_PHONE_REGION", "US"), env.get("EVALUATOR_PII_HASH_SALT", ""))


def storage_masker() -> Masker | None:
    """The masker every stored trace goes through (None when EVALUATOR_PII_MODE=off)."""
    masker = _configured()
    return masker.mask_trace if masker else None


def payload_masker() -> Callable[[str], str] | None:
    """The text masker for the raw payload a dead letter keeps: it is stored, so always masked
    like a stored trace (None when EVALUATOR_PII_MODE=off)."""
    masker = _configured()
    return masker.mask_text if masker else None


def judge_sees_raw() -> bool:
    value = os.environ.get("EVALUATOR_PII_JUDGE_SEES", "masked")
    if value not in {"masked", "raw"}:
        raise ConfigError(f"EVALUATOR_PII_JUDGE_SEES={value!r}: use 'masked' or 'raw'")
    return value == "raw"


def ingest_masker() -> Masker | None:
    """The masker applied at ingest: the storage masker, unless the judge must see raw text."""
    return None if judge_sees_raw() else storage_masker()
