"""Judge-vs-human label statistics, all computed from one confusion matrix.

Every statistic here is a function of the k x k table of (human, judge) label counts, so each
has a `*_batch` form that takes a stack of tables (..., k, k) and returns one value per table:
the point estimate is a stack of one, a bootstrap is a stack of B resampled tables.

Undefined is not a number. Inside the batch arithmetic NaN marks a statistic whose formula
divides by zero on that table (kappa when both raters used one identical label, MCC when a
rater used a single label, ...). NaN never leaves this package: scalar functions raise
`AgreementError` quoting `UNDEFINED_REASONS`, reports write `null` plus that reason.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evaluator.core.errors import EvaluatorError
from evaluator.humans.agreement.results import LabelScores

KappaWeights = Literal["linear", "quadratic"] | None
KAPPA_WEIGHTS = (None, "linear", "quadratic")

UNDEFINED_REASONS = {
    "kappa": "both raters gave every item the same single label, so chance agreement is 1 "
             "and kappa is 0/0",
    "mcc": "the judge or the humans used a single label for every item, so MCC is 0/0 "
           "(scikit-learn reports 0.0 here)",
    "precision": "the judge never chose this label",
    "recall": "the humans never chose this label",
    "f1": "neither the judge nor the humans chose this label",
    "spearman": "the judge's or the humans' scores are all equal, so there is no ranking to "
                "correlate",
    "kendall": "the judge's or the humans' scores are all equal, so there is no ranking to "
               "correlate",
}

DISPLAY_NAMES = {"mcc": "MCC", "spearman": "Spearman's rho", "kendall": "Kendall's tau-b"}

LANDIS_KOCH_BANDS = ((0.20, "slight"), (0.40, "fair"), (0.60, "moderate"),
                     (0.80, "substantial"), (1.00, "almost perfect"))
"""Upper bound (inclusive) of each Landis & Koch (1977) band; below 0 is "poor"."""


class AgreementError(EvaluatorError):
    """Agreement input is invalid, or the requested statistic is undefined for this data."""


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (human, judge) label pairs: rows are human labels, columns judge labels."""

    labels: list[Hashable]
    counts: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "rows": "human", "columns": "judge",
                "counts": self.counts.tolist()}


def is_missing(value: Any) -> bool:
    """None or a float NaN: an item nobody labelled (the judge left it unscored, say)."""
    return value is None or (isinstance(value, float) and value != value)


def as_plain_list(values: Sequence[Any] | np.ndarray) -> list[Any]:
    """A list of plain Python values (numpy scalars become int/float/str, JSON-ready)."""
    if isinstance(values, np.ndarray):
        return values.tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def resolve_order(observed: set, labels_order: Sequence[Hashable] | None, *,
                  needs_order_for: str | None = None) -> list[Hashable]:
    """The label order to use: `labels_order` when given (checked), else the sorted labels.

    `needs_order_for` names an order-sensitive statistic (weighted kappa, ordinal alpha): for
    those, sorting is only trusted when every label is a number; text labels need an order.
    """
    if labels_order is not None:
        order = as_plain_list(labels_order)
        known = set(order)
        if len(known) != len(order):
            raise AgreementError(f"labels_order {order!r} lists a label twice")
        unknown = sorted(map(repr, observed - known))
        if unknown:
            raise AgreementError(f"labels {', '.join(unknown)} not in labels_order {order!r}: "
                                 "add them, or fix the labels")
        return order
    if needs_order_for and not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                   for v in observed):
        raise AgreementError(f"{needs_order_for} depends on the order of the labels: pass "
                             "labels_order (worst to best) for non-numeric labels")
    try:
        return sorted(observed)
    except TypeError:
        shown = ", ".join(sorted(map(repr, observed)))
        raise AgreementError(f"labels mix types that cannot be sorted ({shown}): "
                             "pass labels_order") from None


def encode_label_pairs(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
                       labels_order: Sequence[Hashable] | None = None, *,
                       needs_order_for: str | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
    """Check two aligned label lists and turn them into integer codes into one label order."""
    judge, human = as_plain_list(judge_labels), as_plain_list(human_labels)
    if len(judge) != len(human):
        raise AgreementError(f"judge_labels has {len(judge)} items but human_labels has "
                             f"{len(human)}: pass one label per item, aligned by position")
    if not judge:
        raise AgreementError("no labelled pairs: agreement needs at least one judge/human pair")
    for name, values in (("judge_labels", judge), ("human_labels", human)):
        missing = next((i for i, v in enumerate(values) if is_missing(v)), None)
        if missing is not None:
            raise AgreementError(f"{name}[{missing}] is missing (None/NaN): drop unscored or "
                                 "unlabelled items before measuring agreement")
    try:
        observed = set(judge) | set(human)
    except TypeError:
        raise AgreementError("labels must be hashable values such as strings or numbers") from None
    order = resolve_order(observed, labels_order, needs_order_for=needs_order_for)
    index = {label: code for code, label in enumerate(order)}
    judge_codes = np.fromiter(map(index.__getitem__, judge), dtype=np.int64, count=len(judge))
    human_codes = np.fromiter(map(index.__getitem__, human), dtype=np.int64, count=len(human))
    return judge_codes, human_codes, order


def confusion_matrix(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
                     labels_order: Sequence[Hashable] | None = None) -> ConfusionMatrix:
    """Counts of each (human, judge) label pair; sklearn's confusion_matrix(human, judge)."""
    judge, human, order = encode_label_pairs(judge_labels, human_labels, labels_order)
    return ConfusionMatrix(order, table_from_codes(judge, human, len(order)))


def table_from_codes(judge_codes: np.ndarray, human_codes: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(human_codes * k + judge_codes, minlength=k * k).reshape(k, k)


def safe_ratio(numerator: Any, denominator: Any) -> np.ndarray:
    """numerator / denominator, NaN (undefined) where the denominator is zero; no warnings."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, dtype=float),
                                                 np.asarray(denominator, dtype=float))
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def agreement_batch(tables: np.ndarray) -> np.ndarray:
    """Fraction of items where judge and human gave the same label (accuracy)."""
    return np.trace(tables, axis1=-2, axis2=-1) / tables.sum(axis=(-2, -1))


def check_choice(value: Any, choices: tuple, what: str) -> None:
    if value not in choices:
        raise AgreementError(f"unknown {what} {value!r}: use one of "
                             f"{', '.join(map(repr, choices))}")


def kappa_weight_matrix(k: int, weights: KappaWeights) -> np.ndarray:
    """Disagreement weights: 0 on the diagonal; 1, |i-j| or (i-j)^2 off it (as sklearn)."""
    check_choice(weights, KAPPA_WEIGHTS, "kappa weights")
    distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))).astype(float)
    if weights is None:
        return (distance > 0).astype(float)
    return distance if weights == "linear" else distance ** 2


def kappa_batch(tables: np.ndarray, weights: KappaWeights = None) -> np.ndarray:
    """Cohen's kappa: 1 - observed weighted disagreement / disagreement expected by chance."""
    tables = np.asarray(tables, dtype=float)
    w = kappa_weight_matrix(tables.shape[-1], weights)
    n = tables.sum(axis=(-2, -1))[..., None, None]
    expected = safe_ratio(tables.sum(axis=-1)[..., :, None] * tables.sum(axis=-2)[..., None, :], n)
    return 1.0 - safe_ratio((w * tables).sum(axis=(-2, -1)), (w * expected).sum(axis=(-2, -1)))


def mcc_batch(tables: np.ndarray) -> np.ndarray:
    """Multiclass Matthews correlation (Gorodkin's R_K), as sklearn's matthews_corrcoef."""
    tables = np.asarray(tables, dtype=float)
    true_counts, predicted_counts = tables.sum(axis=-1), tables.sum(axis=-2)
    correct = np.trace(tables, axis1=-2, axis2=-1)
    n = tables.sum(axis=(-2, -1))
    covariance = correct * n - (true_counts * predicted_counts).sum(axis=-1)
    predicted_spread = n ** 2 - (predicted_counts ** 2).sum(axis=-1)
    true_spread = n ** 2 - (true_counts ** 2).sum(axis=-1)
    return safe_ratio(covariance, np.sqrt(predicted_spread * true_spread))


def per_label_batch(tables: np.ndarray) -> dict[str, np.ndarray]:
    """Per label (last axis): support (human count), precision, recall and F1 of the judge."""
    tables = np.asarray(tables, dtype=float)
    hits = np.diagonal(tables, axis1=-2, axis2=-1)
    human_counts, judge_counts = tables.sum(axis=-1), tables.sum(axis=-2)
    return {"support": human_counts, "precision": safe_ratio(hits, judge_counts),
            "recall": safe_ratio(hits, human_counts),
            "f1": safe_ratio(2 * hits, human_counts + judge_counts)}


def f1_average_batch(tables: np.ndarray, average: Literal["macro", "weighted"]) -> np.ndarray:
    """Macro F1 over the labels either side used; or F1 weighted by human support.

    Labels neither side used have no F1 and are left out of the macro mean, so an unused
    entry of `labels_order` does not drag the mean toward 0 (sklearn with labels=None agrees).
    """
    check_choice(average, ("macro", "weighted"), "F1 average")
    scores = per_label_batch(tables)
    f1, defined = scores["f1"], ~np.isnan(scores["f1"])
    if average == "macro":
        return np.where(defined, f1, 0.0).sum(axis=-1) / defined.sum(axis=-1)
    support = scores["support"]
    return np.where(defined, f1 * support, 0.0).sum(axis=-1) / support.sum(axis=-1)


def defined_value(value: Any, statistic: str) -> float:
    """The value as a float, or AgreementError saying why the statistic is undefined."""
    value = float(value)
    if np.isnan(value):
        raise AgreementError(f"{DISPLAY_NAMES.get(statistic, statistic)} is undefined: "
                             f"{UNDEFINED_REASONS[statistic]}")
    return value


def raw_agreement(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable]) -> float:
    """Fraction of items with the same judge and human label (sklearn's accuracy_score)."""
    return float(agreement_batch(confusion_matrix(judge_labels, human_labels).counts))


def cohen_kappa(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
                labels_order: Sequence[Hashable] | None = None,
                weights: KappaWeights = None) -> float:
    """Cohen's kappa; `weights` 'linear'/'quadratic' for ordinal labels, in `labels_order`."""
    check_choice(weights, KAPPA_WEIGHTS, "kappa weights")
    needs_order = f"{weights}-weighted kappa" if weights else None
    judge, human, order = encode_label_pairs(judge_labels, human_labels, labels_order,
                                             needs_order_for=needs_order)
    return defined_value(kappa_batch(table_from_codes(judge, human, len(order)), weights), "kappa")


def matthews_corrcoef(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable]) -> float:
    """Matthews correlation coefficient, multiclass, the human labels taken as truth."""
    return defined_value(mcc_batch(confusion_matrix(judge_labels, human_labels).counts), "mcc")


def f1_average(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
               average: Literal["macro", "weighted"] = "macro") -> float:
    """Macro (unweighted mean over used labels) or support-weighted F1 of the judge."""
    return float(f1_average_batch(confusion_matrix(judge_labels, human_labels).counts, average))


def per_label_metrics(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
                      labels_order: Sequence[Hashable] | None = None) -> list[LabelScores]:
    """One row per label: support, precision, recall, F1; None (with reasons) where undefined.

    A table row, not a single number, so an undefined cell is `None` rather than an error.
    """
    matrix = confusion_matrix(judge_labels, human_labels, labels_order)
    scores = per_label_batch(matrix.counts)
    rows = []
    for i, label in enumerate(matrix.labels):
        values = {name: None if np.isnan(value := float(scores[name][i])) else value
                  for name in ("precision", "recall", "f1")}
        rows.append(LabelScores(
            label=label, support=int(scores["support"][i]), **values,
            undefined={name: UNDEFINED_REASONS[name] for name, value in values.items()
                       if value is None}))
    return rows


def kappa_band(kappa: float) -> str:
    """Landis & Koch's plain-language band for a kappa value: "poor" ... "almost perfect"."""
    if not isinstance(kappa, numbers.Real) or not kappa <= 1.0 or not np.isfinite(kappa):
        raise AgreementError(f"kappa must be a finite number at most 1, got {kappa!r}")
    if kappa < 0:
        return "poor"
    return next(band for upper, band in LANDIS_KOCH_BANDS if kappa <= upper)
