"""The judge-corrected failure rate when the human-labelled items are a stratified sample.

Production is the judged traces, each with its sampling weight w (the inverse of its sampling
probability) and the judge's verdict J (1 = fail); the judge's apparent rate is
p = sum(w J) / sum(w). The labelled items are drawn from those traces per stratum s with
selection probability pi_s: `evaluator labels export` takes every judge failure and a few passes,
so strata follow the judge's verdict and a plain count over the labelled items would over-weight
failures. Each labelled item stands for w / pi traffic traces, so with H = the humans say fail

    Se = sum(w/pi J H) / sum(w/pi H)        Sp = sum(w/pi (1-J)(1-H)) / sum(w/pi (1-H))

are the judge's sensitivity and specificity over all traffic, and Rogan-Gladen gives the true
rate (p + Sp - 1) / (Se + Sp - 1), clipped to [0, 1]. (When the strata are exactly the judge's
verdicts this is the weight share of each verdict times the humans' failure rate within it.)

The interval is a percentile bootstrap of both samples at once: each resample redraws the
production traces with their weights, and, independently, the labelled items within each stratum
(each stratum keeping its size), as the two were drawn.
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
from evaluator.humans.agreement.correction import CHANCE_LEVEL_REASON
from evaluator.humans.agreement.results import CorrectedRate
from evaluator.humans.agreement.stats import AgreementError

METHOD = ("Rogan-Gladen with sensitivity and specificity weighted by w/pi (production sampling "
          "weight over the item's selection probability in its annotation stratum); percentile "
          "bootstrap redrawing the production traces and, within each stratum, the labelled items")


def _cells(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of the stacked columns and how often each occurs."""
    rows, counts = np.unique(np.column_stack(columns), axis=0, return_counts=True)
    return rows, counts


def _jeffreys_cells(judge: np.ndarray, human: np.ndarray, weight: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A stratum's distinct (J, H, w/pi) cells and their Dirichlet parameters: the counts, plus
    half an item of each human verdict at the mean weight, for each judge verdict present
    (Jeffreys' prior: a verdict the humans rarely or never gave still varies)."""
    cells, counts = _cells([judge, human, weight])
    prior = [(j, h, weight[judge == j].mean()) for j in np.unique(judge) for h in (0.0, 1.0)]
    return (np.vstack([cells, np.array(prior)]),
            np.concatenate([counts, np.full(len(prior), 0.5)]))


def _judge_totals(judge: np.ndarray, human: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per item, its weight in [J=1 & H=1, H=1, J=0 & H=0, H=0] (sensitivity, specificity)."""
    return np.column_stack([weight * judge * human, weight * human,
                            weight * (1 - judge) * (1 - human), weight * (1 - human)])


def _corrected(apparent: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Clipped Rogan-Gladen per row of totals (..., 4); NaN where it is undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity = totals[..., 0] / totals[..., 1]
        specificity = totals[..., 2] / totals[..., 3]
        youden = sensitivity + specificity - 1
        youden = np.where(youden > 0, youden, np.nan)
        return np.clip((apparent + specificity - 1) / youden, 0.0, 1.0)


def _as_flags(values: Sequence[bool] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not np.isin(array, (0, 1)).all():
        raise AgreementError(f"{name} must be a flat list of true/false (1 = fail)")
    return array.astype(float)


def _as_counts(values: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer) or (array < 1).any():
        raise AgreementError(f"production_counts must be {n} whole numbers >= 1, one per "
                             "production entry")
    return array.astype(np.int64)


def _as_weights(values: Sequence[float] | np.ndarray, n: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (n,) or not (np.isfinite(array) & (array > 0)).all():
        raise AgreementError(f"{name} must be {n} positive finite numbers")
    return array


def design_corrected_rate(production_weights: Sequence[float] | np.ndarray,
                          production_fails: Sequence[bool] | np.ndarray,
                          judge_fails: Sequence[bool] | np.ndarray,
                          human_fails: Sequence[bool] | np.ndarray,
                          item_weights: Sequence[float] | np.ndarray,
                          strata: Sequence[Hashable],
                          n_boot: int = DEFAULT_N_BOOT, seed: int | None = 0,
                          confidence: float = DEFAULT_CONFIDENCE,
                          production_counts: Sequence[int] | np.ndarray | None = None
                          ) -> CorrectedRate:
    """True failure rate of all traffic from the judge's verdicts on production traces.

    `production_weights`/`production_fails`: every judged production trace's sampling weight
    and whether the judge failed it. The labelled items: the judge's and the humans' verdict
    (True = fail), `item_weights` = production weight / selection probability, and the stratum
    each item was drawn in. `production_counts`: how many judged traces each production
    (weight, verdict) entry stands for (default one each): a store passes its traces counted by
    (weight, verdict), a few rows instead of one per trace.
    """
    check_bootstrap_settings(n_boot, confidence)
    production_fail = _as_flags(production_fails, "production_fails")
    production_weight = _as_weights(production_weights, len(production_fail), "production_weights")
    multiplicity = _as_counts(production_counts, len(production_fail))
    judge, human = _as_flags(judge_fails, "judge_fails"), _as_flags(human_fails, "human_fails")
    weight = _as_weights(item_weights, len(judge), "item_weights")
    if not len(production_fail):
        raise AgreementError("no judged production traces to correct the failure rate of")
    if len(human) != len(judge) or len(strata) != len(judge):
        raise AgreementError("judge_fails, human_fails, item_weights and strata must be aligned, "
                             "one per labelled item")
    for present, who, measure in ((human, "human-labelled failures", "sensitivity"),
                                  (1 - human, "human-labelled passes", "specificity")):
        if not present.any():
            raise AgreementError(f"{measure} is undefined: the labelled items hold no {who}; "
                                 "label some before correcting rates")
    totals = _judge_totals(judge, human, weight).sum(axis=0)
    sensitivity, specificity = totals[0] / totals[1], totals[2] / totals[3]
    youden = sensitivity + specificity - 1
    if youden <= 0:
        raise AgreementError(CHANCE_LEVEL_REASON.format(label="failures", youden=youden))
    counted_weight = production_weight if multiplicity is None else production_weight * multiplicity
    apparent = float(counted_weight @ production_fail / counted_weight.sum())
    unclipped = (apparent + specificity - 1) / youden
    codes = np.unique(np.asarray(strata, dtype=object).astype(str), return_inverse=True)[1]
    ci = None
    if n_boot:
        rng = np.random.default_rng(seed)
        values, index = np.unique(production_weight, return_inverse=True)
        counts = np.bincount(2 * index + production_fail.astype(int), weights=multiplicity,
                             minlength=2 * len(values)).astype(np.int64)
        cell_weight, cell_fail = np.repeat(values, 2), np.tile([0.0, 1.0], len(values))
        apparent_boot = bootstrap_samples(
            lambda rows: rows @ (cell_weight * cell_fail) / (rows @ cell_weight), counts,
            n_boot, rng)
        totals_boot = np.zeros((n_boot, 4))
        for stratum in range(codes.max() + 1):
            inside = codes == stratum
            cells, alpha = _jeffreys_cells(judge[inside], human[inside], weight[inside])
            shares = rng.dirichlet(alpha, size=n_boot)
            totals_boot += inside.sum() * shares @ _judge_totals(cells[:, 0], cells[:, 1],
                                                                 cells[:, 2])
        ci = percentile_interval(
            _corrected(apparent_boot, totals_boot), confidence,
            method=("percentile bootstrap over the production traces and, within each stratum, "
                    "the labelled items (Rogan-Gladen undefined in n_undefined resamples, which "
                    "the interval leaves out)"))
    return CorrectedRate(
        n_production=len(production_fail) if multiplicity is None else int(multiplicity.sum()),
        n_labelled=len(judge), n_strata=int(codes.max()) + 1,
        apparent_rate=apparent, sensitivity=float(sensitivity), specificity=float(specificity),
        youden_j=float(youden), corrected_rate=min(max(unclipped, 0.0), 1.0),
        clipped=not 0.0 <= unclipped <= 1.0, method=METHOD, ci=ci)
