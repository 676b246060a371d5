"""Agreement reports: judge vs humans, and humans among themselves (typed, see `results`).

Reports raise `AgreementError` only for invalid input. A statistic that is undefined for
valid data (kappa when everyone used one label, say) is an `Estimate` with value None and a
reason (JSON {"value": null, "ci": null, "reason": "..."}), so one undefined number does not
hide the others. Every interval comes from
one seeded bootstrap of the items shared by all statistics of the report.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from evaluator.humans.agreement.alpha import (
    Level,
    alpha_batch,
    alpha_undefined_reason,
    encode_reliability_data,
    pattern_coincidences,
)
from evaluator.humans.agreement.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_BOOT,
    bootstrap_samples,
    check_bootstrap_settings,
    estimate,
)
from evaluator.humans.agreement.correlation import kendall_batch, score_pairs, spearman_batch
from evaluator.humans.agreement.results import (
    AgreementReport,
    AlphaEstimate,
    BootstrapNote,
    ConfusionCounts,
    Estimate,
    InterAnnotatorReport,
    KappaEstimate,
    LabelMetrics,
    MeanKappa,
    PairKappa,
)
from evaluator.humans.agreement.stats import (
    KAPPA_WEIGHTS,
    UNDEFINED_REASONS,
    AgreementError,
    KappaWeights,
    agreement_batch,
    check_choice,
    encode_label_pairs,
    f1_average_batch,
    kappa_band,
    kappa_batch,
    mcc_batch,
    per_label_batch,
    table_from_codes,
)

MAX_RESAMPLED_CELLS = 20_000_000
"""Largest n_boot x labels^2 resampled table stack held in memory (160 MB of counts)."""

BOOTSTRAP_METHOD = ("percentile bootstrap over items; resampling is drawn as multinomial counts "
                    "of the distinct observations, the same distribution as resampling items")


def _bootstrap_note(n_boot: int, seed: int | None, confidence: float) -> BootstrapNote:
    return BootstrapNote(n_boot=n_boot, seed=seed, confidence=confidence, method=BOOTSTRAP_METHOD)


def _label_tables(judge_codes: np.ndarray, human_codes: np.ndarray, k: int, n_boot: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """The confusion table (k, k), and n_boot resampled tables (n_boot, k, k) or None."""
    table = table_from_codes(judge_codes, human_codes, k)
    if not n_boot:
        return table, None
    if n_boot * k * k > MAX_RESAMPLED_CELLS:
        raise AgreementError(f"{k} distinct labels x n_boot={n_boot} is too large to bootstrap: "
                             "map labels to fewer classes (free text?), or lower n_boot")
    return table, bootstrap_samples(lambda rows: rows, table.ravel(), n_boot, rng).reshape(-1, k, k)


def kappa_with_ci(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
                  labels_order: Sequence[Hashable] | None = None, weights: KappaWeights = None,
                  n_boot: int = DEFAULT_N_BOOT, seed: int | None = 0,
                  confidence: float = DEFAULT_CONFIDENCE) -> KappaEstimate:
    """Cohen's kappa with a percentile-bootstrap interval."""
    check_bootstrap_settings(n_boot, confidence)
    check_choice(weights, KAPPA_WEIGHTS, "kappa weights")
    judge, human, order = encode_label_pairs(
        judge_labels, human_labels, labels_order,
        needs_order_for=f"{weights}-weighted kappa" if weights else None)
    table, resampled = _label_tables(judge, human, len(order), n_boot, np.random.default_rng(seed))
    samples = None if resampled is None else kappa_batch(resampled, weights)
    result = estimate(kappa_batch(table, weights), samples, confidence, UNDEFINED_REASONS["kappa"])
    return KappaEstimate(result.value, result.ci, result.reason, len(judge), weights, order)


def agreement_report(judge_labels: Sequence[Hashable], human_labels: Sequence[Hashable],
                     labels_order: Sequence[Hashable] | None = None, ordinal: bool = False,
                     judge_scores: Sequence[float] | None = None,
                     human_scores: Sequence[float] | None = None,
                     n_boot: int = DEFAULT_N_BOOT, seed: int | None = 0,
                     confidence: float = DEFAULT_CONFIDENCE) -> AgreementReport:
    """How well the judge agrees with human labels (and scores), every statistic with a CI.

    The headline is Cohen's kappa, or quadratic-weighted kappa when `ordinal` (labels then
    need `labels_order`, worst to best, unless they are numbers). Scores, when given, are
    aligned with the labels item by item.
    """
    check_bootstrap_settings(n_boot, confidence)
    if (judge_scores is None) != (human_scores is None):
        raise AgreementError("pass both judge_scores and human_scores, or neither")
    judge, human, order = encode_label_pairs(
        judge_labels, human_labels, labels_order,
        needs_order_for="ordinal agreement (weighted kappa, ordinal alpha)" if ordinal else None)
    rng = np.random.default_rng(seed)
    table, resampled = _label_tables(judge, human, len(order), n_boot, rng)

    def summarize(batch_statistic, reason: str = "") -> Estimate:
        samples = None if resampled is None else batch_statistic(resampled)
        return estimate(batch_statistic(table), samples, confidence, reason)

    level: Level = "ordinal" if ordinal else "nominal"
    alpha = summarize(lambda t: alpha_batch(t + np.swapaxes(t, -1, -2), level, order),
                      alpha_undefined_reason(table + table.T))
    weighted_kappa = None
    if ordinal:
        weighted_kappa = {
            weights: summarize(lambda t, w=weights: kappa_batch(t, w), UNDEFINED_REASONS["kappa"])
            for weights in ("linear", "quadratic")}
    kappa = summarize(kappa_batch, UNDEFINED_REASONS["kappa"])
    accuracy = summarize(agreement_batch)
    spearman = kendall = None
    if judge_scores is not None and human_scores is not None:
        spearman, kendall = _score_correlations(judge_scores, human_scores, len(judge), n_boot,
                                                rng, confidence)
    headline = "quadratic-weighted kappa" if ordinal else "kappa"
    headline_estimate = weighted_kappa["quadratic"] if weighted_kappa else kappa
    return AgreementReport(
        n=len(judge), labels=order, ordinal=ordinal,
        bootstrap=_bootstrap_note(n_boot, seed, confidence),
        kappa=kappa, weighted_kappa=weighted_kappa,
        alpha=AlphaEstimate(level=level, **vars(alpha)),
        accuracy=accuracy,
        macro_f1=summarize(lambda t: f1_average_batch(t, "macro")),
        weighted_f1=summarize(lambda t: f1_average_batch(t, "weighted")),
        mcc=summarize(mcc_batch, UNDEFINED_REASONS["mcc"]),
        per_label=_per_label(table, resampled, order, confidence),
        confusion_matrix=ConfusionCounts(labels=list(order), rows="human", columns="judge",
                                         counts=table.tolist()),
        spearman=spearman, kendall=kendall, headline=headline,
        verdict=verdict_line(headline, headline_estimate, len(judge), accuracy.value))


def _per_label(table: np.ndarray, resampled: np.ndarray | None, order: list[Hashable],
               confidence: float) -> list[LabelMetrics]:
    point = per_label_batch(table)
    samples = None if resampled is None else per_label_batch(resampled)

    def metric(name: str, i: int) -> Estimate:
        return estimate(point[name][i], None if samples is None else samples[name][:, i],
                        confidence, UNDEFINED_REASONS[name])

    return [LabelMetrics(label=label, support=int(point["support"][i]),
                         precision=metric("precision", i), recall=metric("recall", i),
                         f1=metric("f1", i))
            for i, label in enumerate(order)]


def _score_correlations(judge_scores: Sequence[float], human_scores: Sequence[float], n: int,
                        n_boot: int, rng: np.random.Generator, confidence: float
                        ) -> tuple[Estimate, Estimate]:
    """Spearman's rho and Kendall's tau-b of the scores."""
    pairs = score_pairs(judge_scores, human_scores)
    if int(pairs.counts.sum()) != n:
        raise AgreementError(f"got {int(pairs.counts.sum())} score pairs for {n} label pairs: "
                             "scores must be aligned with the labels, one per item")

    def both(rows: np.ndarray) -> np.ndarray:
        return np.stack([spearman_batch(pairs, rows), kendall_batch(pairs, rows)], axis=1)

    point = both(pairs.counts[None, :])[0]
    samples = None if not n_boot else bootstrap_samples(both, pairs.counts, n_boot, rng)
    spearman, kendall = (estimate(point[i], None if samples is None else samples[:, i],
                                  confidence, UNDEFINED_REASONS[name])
                         for i, name in enumerate(("spearman", "kendall")))
    return spearman, kendall


def verdict_line(statistic: str, result: Estimate, n: int, accuracy: float | None) -> str:
    """One plain-language sentence on the headline statistic, with its Landis & Koch band."""
    if result.value is None:
        return (f"{statistic.capitalize()} is undefined ({result.reason}); the judge and the "
                f"humans agree on {accuracy:.1%} of {n:,} items.")
    value, ci = result.value, result.ci
    line = f"Judge-human agreement is {kappa_band(value)}: {statistic} {value:.2f}"
    if ci and ci.low is not None and ci.high is not None:
        line += f" ({ci.confidence:.0%} CI {ci.low:.2f} to {ci.high:.2f})"
        low_band, high_band = kappa_band(ci.low), kappa_band(ci.high)
        if low_band != high_band:
            line += f", somewhere from {low_band} to {high_band}"
    return line + f", over {n:,} items."


def inter_annotator_report(reliability_data: Sequence[Sequence[Any]] | np.ndarray,
                           level: Level = "nominal",
                           labels_order: Sequence[Hashable] | None = None,
                           annotators: Sequence[str] | None = None,
                           n_boot: int = DEFAULT_N_BOOT, seed: int | None = 0,
                           confidence: float = DEFAULT_CONFIDENCE) -> InterAnnotatorReport:
    """Agreement among several annotators (annotators x units, None/NaN = missing).

    Krippendorff's alpha, Cohen's kappa for each pair of annotators (on the units both
    labelled) and their mean over the pairs where kappa is defined. Units are resampled;
    a resample where one of those pairs has no defined kappa is counted as undefined.
    """
    check_bootstrap_settings(n_boot, confidence)
    data = encode_reliability_data(reliability_data, level, labels_order)
    n_annotators, v = data.patterns.shape[1], len(data.labels)
    names = list(annotators) if annotators is not None else [str(i) for i in range(n_annotators)]
    if len(names) != n_annotators:
        raise AgreementError(f"{len(names)} annotator names for {n_annotators} annotators")
    coincidences_per_pattern = pattern_coincidences(data.patterns, v).reshape(-1, v * v)
    pairs = list(combinations(range(n_annotators), 2))
    pair_cells = [_pair_cells(data.patterns, a, b, v) for a, b in pairs]

    def statistics(rows: np.ndarray) -> np.ndarray:
        coincidences = (rows @ coincidences_per_pattern).reshape(-1, v, v)
        kappas = [kappa_batch(_pair_tables(rows, cells, v)) for cells in pair_cells]
        return np.stack([alpha_batch(coincidences, level, data.labels), *kappas], axis=1)

    point = statistics(data.multiplicity[None, :])[0]
    rng = np.random.default_rng(seed)
    samples = None if not n_boot else bootstrap_samples(statistics, data.multiplicity, n_boot, rng)
    coincidences = (data.multiplicity @ coincidences_per_pattern).reshape(v, v)

    def column(i: int) -> np.ndarray | None:
        return None if samples is None else samples[:, i]

    pairwise = []
    for i, ((a, b), cells) in enumerate(zip(pairs, pair_cells, strict=True), start=1):
        shared = int(data.multiplicity[cells >= 0].sum())
        reason = (UNDEFINED_REASONS["kappa"] if shared else
                  "these two annotators labelled no unit in common")
        pairwise.append(PairKappa(annotators=[names[a], names[b]], n_units=shared,
                                  **vars(estimate(point[i], column(i), confidence, reason))))
    defined = [i for i in range(1, len(point)) if not np.isnan(point[i])]
    mean_samples = None if samples is None or not defined else samples[:, defined].mean(axis=1)
    mean_kappa = estimate(point[defined].mean() if defined else np.nan, mean_samples, confidence,
                          "no pair of annotators has a defined kappa")
    pairable = int(data.multiplicity[(data.patterns >= 0).sum(axis=1) >= 2].sum())
    return InterAnnotatorReport(
        n_annotators=n_annotators, n_units=data.n_units, n_pairable_units=pairable,
        labels=data.labels, annotators=names,
        bootstrap=_bootstrap_note(n_boot, seed, confidence),
        alpha=AlphaEstimate(level=level, **vars(estimate(
            point[0], column(0), confidence, alpha_undefined_reason(coincidences)))),
        mean_pairwise_kappa=MeanKappa(**vars(mean_kappa), n_pairs=len(defined)),
        pairwise_kappa=pairwise)


def _pair_cells(patterns: np.ndarray, a: int, b: int, v: int) -> np.ndarray:
    """Per unit pattern, the (a's label, b's label) cell of a v x v table; -1 if one is missing."""
    both = (patterns[:, a] >= 0) & (patterns[:, b] >= 0)
    return np.where(both, patterns[:, a] * v + patterns[:, b], -1)


def _pair_tables(rows: np.ndarray, cells: np.ndarray, v: int) -> np.ndarray:
    """(rows, v, v) tables of two annotators from unit-pattern counts (rows, patterns)."""
    used = cells >= 0
    counts = rows[:, used]
    index = (np.arange(len(rows))[:, None] * v * v + cells[used]).ravel()
    return np.bincount(index, weights=counts.ravel(), minlength=len(rows) * v * v).reshape(-1, v, v)
