"""Rogan-Gladen correction: the true failure rate behind an imperfect judge's flags.

A judge that flags a fraction p of production outputs, with sensitivity Se and specificity Sp
measured against human labels, implies a true rate (p + Sp - 1) / (Se + Sp - 1), clipped to
[0, 1] (Rogan & Gladen, 1978). When Se + Sp - 1 <= 0 the judge is no better than chance at
telling failures apart and the correction is undefined: we raise rather than guess.

The interval is a percentile bootstrap, not the delta method: the estimate is a ratio whose
denominator nears 0 for weak judges and is clipped at 0 and 1, both of which a symmetric normal
approximation ignores. Each resample redraws the human-labelled pairs (multinomial on their
2 x 2 table) and, independently, the production sample (binomial on n_flagged / n_production).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from evaluator.humans.agreement.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_BOOT,
    bootstrap_samples,
    check_bootstrap_settings,
    percentile_interval,
)
from evaluator.humans.agreement.results import CorrectedPrevalence
from evaluator.humans.agreement.stats import AgreementError, encode_label_pairs, safe_ratio

CHANCE_LEVEL_REASON = ("the judge is no better than chance at spotting {label} "
                       "(sensitivity + specificity - 1 = {youden:.3f} <= 0), so the "
                       "Rogan-Gladen correction is undefined: improve the judge or its "
                       "rubric first")


def _check_rate(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise AgreementError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


def rogan_gladen(apparent_rate: float, sensitivity: float, specificity: float) -> float:
    """Corrected prevalence (p + Sp - 1) / (Se + Sp - 1), clipped to [0, 1]."""
    p = _check_rate(apparent_rate, "apparent_rate")
    youden = _check_rate(sensitivity, "sensitivity") + _check_rate(specificity, "specificity") - 1
    if youden <= 0:
        raise AgreementError(CHANCE_LEVEL_REASON.format(label="failures", youden=youden))
    return min(max((p + specificity - 1) / youden, 0.0), 1.0)


def _corrected_batch(tables: np.ndarray, apparent: np.ndarray) -> np.ndarray:
    """Clipped correction per 2x2 table [[TN, FP], [FN, TP]] (human rows); NaN if undefined."""
    tables = tables.astype(float)
    sensitivity = safe_ratio(tables[:, 1, 1], tables[:, 1].sum(axis=1))
    specificity = safe_ratio(tables[:, 0, 0], tables[:, 0].sum(axis=1))
    youden = sensitivity + specificity - 1
    youden = np.where(youden > 0, youden, np.nan)
    return np.clip((apparent + specificity - 1) / youden, 0.0, 1.0)


def corrected_prevalence(n_flagged: int, n_production: int,
                         judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
                         positive_label: Hashable, n_boot: int = DEFAULT_N_BOOT,
                         seed: int | None = 0, confidence: float = DEFAULT_CONFIDENCE
                         ) -> CorrectedPrevalence:
    """True rate of `positive_label` in production, from the judge's flag rate there.

    `n_flagged` of `n_production` outputs were given `positive_label` by the judge;
    `judge_labels`/`human_labels` are the pairs that measure the judge's sensitivity and
    specificity for that label (every other label counts as negative).
    """
    check_bootstrap_settings(n_boot, confidence)
    counts_are_whole = all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                           for x in (n_flagged, n_production))
    if not counts_are_whole or not 0 <= n_flagged <= n_production or n_production < 1:
        raise AgreementError(f"need whole numbers 0 <= n_flagged <= n_production, n_production "
                             f">= 1; got n_flagged={n_flagged!r}, n_production={n_production!r}")
    judge, human, order = encode_label_pairs(judge_labels, human_labels)
    positive = order.index(positive_label) if positive_label in order else -1
    table = np.bincount((human == positive) * 2 + (judge == positive), minlength=4).reshape(2, 2)
    for row, who in ((1, f"human-labelled {positive_label!r} items"),
                     (0, f"human-labelled items other than {positive_label!r}")):
        if not table[row].sum():
            measure = "sensitivity" if row else "specificity"
            raise AgreementError(f"{measure} is undefined: the labelled pairs hold no {who}; "
                                 "label some before correcting rates")
    sensitivity = float(table[1, 1] / table[1].sum())
    specificity = float(table[0, 0] / table[0].sum())
    youden = sensitivity + specificity - 1
    if youden <= 0:
        raise AgreementError(CHANCE_LEVEL_REASON.format(label=repr(positive_label), youden=youden))
    apparent = n_flagged / n_production
    unclipped = (apparent + specificity - 1) / youden
    ci = None
    if n_boot:
        rng = np.random.default_rng(seed)
        tables = bootstrap_samples(lambda rows: rows, table.ravel(), n_boot, rng).reshape(-1, 2, 2)
        apparent_resampled = rng.binomial(n_production, apparent, size=n_boot) / n_production
        ci = percentile_interval(
            _corrected_batch(tables, apparent_resampled), confidence,
            method=("percentile bootstrap over the labelled pairs and the production sample "
                    "(Rogan-Gladen undefined in n_undefined resamples, which the interval "
                    "leaves out)"))
    return CorrectedPrevalence(
        positive_label=positive_label, n_production=n_production, n_flagged=n_flagged,
        n_labelled=len(judge), apparent_rate=apparent, sensitivity=sensitivity,
        specificity=specificity, youden_j=youden, corrected_rate=min(max(unclipped, 0.0), 1.0),
        clipped=not 0.0 <= unclipped <= 1.0, ci=ci)
