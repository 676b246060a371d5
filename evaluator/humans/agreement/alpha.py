"""Krippendorff's alpha: agreement among any number of annotators, with missing values.

Reliability data is an annotators x units matrix; None or NaN marks a unit an annotator did not
label. Following Krippendorff (2011, "Computing Krippendorff's alpha-reliability"), each unit
with m >= 2 values adds every ordered pair of its values, weighted 1/(m-1), to a coincidence
matrix o; then alpha = 1 - (n-1) * sum(o * d) / sum(n_c * n_k * d), where n_c are the
row totals of o, n their sum and d the squared distance between two values for the level.
Units with identical value patterns contribute identically, so the data is reduced to its
distinct unit patterns with multiplicities (which is also what the bootstrap resamples).
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evaluator.humans.agreement.stats import (
    AgreementError,
    as_plain_list,
    check_choice,
    is_missing,
    resolve_order,
    safe_ratio,
)

Level = Literal["nominal", "ordinal", "interval"]
LEVELS = ("nominal", "ordinal", "interval")


@dataclass(frozen=True)
class ReliabilityData:
    """Distinct units of an annotators x units matrix: value codes (-1 = missing) per pattern."""

    labels: list[Hashable]
    patterns: np.ndarray
    """(distinct units, annotators) value codes."""
    multiplicity: np.ndarray
    """How many units share each pattern."""
    n_units: int


def encode_reliability_data(reliability_data: Sequence[Sequence[Any]] | np.ndarray,
                            level: Level = "nominal",
                            labels_order: Sequence[Hashable] | None = None) -> ReliabilityData:
    """Check the matrix and code its labels in one order (ordinal needs one, interval numbers)."""
    check_choice(level, LEVELS, "level of measurement")
    try:
        rows = [as_plain_list(row) for row in reliability_data]
    except TypeError:
        rows = []
    if not rows or len({len(row) for row in rows}) != 1:
        raise AgreementError("reliability data must be a non-empty annotators x units matrix "
                             "(one row per annotator, every row as long as the others)")
    if not rows[0]:
        raise AgreementError("reliability data has no units: nothing to measure agreement on")
    try:
        observed = {value for row in rows for value in row if not is_missing(value)}
    except TypeError:
        raise AgreementError("values must be hashable, such as strings or numbers") from None
    if not observed:
        raise AgreementError("every value in the reliability data is missing")
    if level == "interval" and not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                       for v in observed):
        raise AgreementError("interval alpha needs numeric values: use level='ordinal' with a "
                             "labels_order for ordered labels")
    order = resolve_order(observed, labels_order,
                          needs_order_for="ordinal alpha" if level == "ordinal" else None)
    index = {value: code for code, value in enumerate(order)}
    codes = np.array([[-1 if is_missing(v) else index[v] for v in row] for row in rows],
                     dtype=np.int64)
    patterns, multiplicity = np.unique(codes.T, axis=0, return_counts=True)
    return ReliabilityData(order, patterns, multiplicity, codes.shape[1])


def pattern_coincidences(patterns: np.ndarray, n_values: int) -> np.ndarray:
    """(patterns, V, V) coincidences of each unit pattern: (n n^T - diag n) / (m-1), 0 if m < 2."""
    present = patterns >= 0
    rows = np.broadcast_to(np.arange(len(patterns))[:, None], patterns.shape)[present]
    counts = np.bincount(rows * n_values + patterns[present],
                         minlength=len(patterns) * n_values).reshape(len(patterns), n_values)
    per_unit = counts.sum(axis=1)
    pair_weight = np.where(per_unit >= 2, 1.0 / np.maximum(per_unit - 1, 1), 0.0)
    pairs = counts[:, :, None] * counts[:, None, :] - counts[:, :, None] * np.eye(n_values)
    return pairs * pair_weight[:, None, None]


def squared_distances(level: Level, marginals: np.ndarray, values: Sequence[Any]) -> np.ndarray:
    """Krippendorff's d(c, k)^2 between values, for each stack of value totals (..., V)."""
    v = marginals.shape[-1]
    if level == "nominal":
        return 1.0 - np.eye(v)
    if level == "interval":
        numeric = np.asarray(values, dtype=float)
        return np.subtract.outer(numeric, numeric) ** 2
    # ordinal: (n_c/2 + n_(c+1) + ... + n_(k-1) + n_k/2)^2 = (M_k - M_c)^2, M = cumsum(n) - n/2
    midpoints = np.cumsum(marginals, axis=-1) - marginals / 2.0
    return (midpoints[..., None, :] - midpoints[..., :, None]) ** 2


def alpha_batch(coincidences: np.ndarray, level: Level, values: Sequence[Any]) -> np.ndarray:
    """Alpha for each coincidence matrix in a stack (..., V, V); NaN where undefined."""
    coincidences = np.asarray(coincidences, dtype=float)
    marginals = coincidences.sum(axis=-1)
    n = marginals.sum(axis=-1)
    distances = squared_distances(level, marginals, values)
    observed = (coincidences * distances).sum(axis=(-2, -1))
    expected = (marginals[..., :, None] * marginals[..., None, :] * distances).sum(axis=(-2, -1))
    return 1.0 - safe_ratio((n - 1) * observed, expected)


def alpha_undefined_reason(coincidences: np.ndarray) -> str:
    if not coincidences.any():
        return "no unit has values from two or more annotators, so nothing can be compared"
    return ("every comparable value is the same, so no disagreement is expected by chance "
            "and alpha is 0/0")


def krippendorff_alpha(reliability_data: Sequence[Sequence[Any]] | np.ndarray,
                       level: Level = "nominal",
                       labels_order: Sequence[Hashable] | None = None) -> float:
    """Krippendorff's alpha of an annotators x units matrix (None/NaN = missing).

    `labels_order` orders labels for level='ordinal' (required unless the values are numbers).
    """
    data = encode_reliability_data(reliability_data, level, labels_order)
    coincidences = np.tensordot(data.multiplicity,
                                pattern_coincidences(data.patterns, len(data.labels)), axes=1)
    value = float(alpha_batch(coincidences, level, data.labels))
    if np.isnan(value):
        raise AgreementError(f"alpha is undefined: {alpha_undefined_reason(coincidences)}")
    return value
