"""Where PII masking happens, configured by the caller's Settings (EVALUATOR_PII_*).

By default traces are masked at ingest, before they are enqueued or stored, so the judge sees
masked text too (`EVALUATOR_PII_JUDGE_SEES=masked`). With `raw`, ingest leaves the text alone
for the judge and the worker masks each trace before it is stored; note that a judge's reply
may then quote raw text in its reasoning. Either way a trace whose id looks like PII is a dead
letter (ids are never masked), and what a dead letter keeps is masked too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from evaluator.core.records import DeadLetter, Trace
from evaluator.core.settings import Settings

if TYPE_CHECKING:
    from evaluator.pii import PiiMasker
    from evaluator.pii.masker import Mode

Masker = Callable[[Trace], Trace]


@lru_cache(maxsize=8)
def _pii_masker(mode: Mode, region: str, salt: str) -> PiiMasker | None:
    if mode == "off":
        return None
    # lazy: the PII package takes 0.3 s to import: loaded when masking is on
    from evaluator.pii import PiiConfig, PiiMasker

    return PiiMasker(PiiConfig(mode=mode, phone_region=region, hash_salt=salt))


def _configured(settings: Settings) -> PiiMasker | None:
    return _pii_masker(settings.pii_mode, settings.pii_phone_region,
                       settings.pii_hash_salt.get_secret_value())


def storage_masker(settings: Settings) -> Masker | None:
    """The masker every stored trace goes through (None when EVALUATOR_PII_MODE=off)."""
    masker = _configured(settings)
    return masker.mask_trace if masker else None


def payload_masker(settings: Settings) -> Callable[[str], str] | None:
    """The text masker for the raw payload a dead letter keeps: it is stored, so always masked
    like a stored trace (None when EVALUATOR_PII_MODE=off)."""
    masker = _configured(settings)
    return masker.mask_text if masker else None


def identifier_check(settings: Settings) -> Masker | None:
    """Rejects (InvalidTraceError) a trace whose trace, span or session id looks like PII: ids
    are never masked, so one that is not opaque cannot be stored (None when masking is off)."""
    masker = _configured(settings)
    return masker.check_identifiers if masker else None


def dead_letter_masker(settings: Settings) -> Callable[[DeadLetter], DeadLetter] | None:
    """Masks what a dead letter keeps: its payload, and its error and field, which can quote a
    metadata key or a field name taken from the payload (None when EVALUATOR_PII_MODE=off)."""
    masker = _configured(settings)
    if masker is None:
        return None
    # A million bad lines often share a few errors: mask each distinct one once (they are short,
    # records.MAX_DEAD_LETTER_ERROR_CHARS, so the cache stays small).
    mask_short = lru_cache(maxsize=4096)(masker.mask_text)

    def mask(dead: DeadLetter) -> DeadLetter:
        return dead.model_copy(update={
            "payload": masker.mask_text(dead.payload), "error": mask_short(dead.error),
            "field": mask_short(dead.field) if dead.field else dead.field})

    return mask


def ingest_masker(settings: Settings) -> Masker | None:
    """The masker applied at ingest: the storage masker, unless the judge must see raw text."""
    return None if settings.judge_sees_raw else storage_masker(settings)


def ingest_trace_masker(settings: Settings) -> Masker:
    """What ingest does to a sampled trace before it is enqueued (the span exporter, `evaluator
    receive`, `evaluator ingest`): refuse ids that look like PII, then mask, unless the judge must
    see raw text (EVALUATOR_PII_MODE, EVALUATOR_PII_JUDGE_SEES)."""
    check, mask = identifier_check(settings), ingest_masker(settings)

    def apply(trace: Trace) -> Trace:
        trace = check(trace) if check else trace
        return mask(trace) if mask else trace

    return apply
