"""Rank correlations between judge and human scores: Spearman's rho and Kendall's tau-b.

Both depend only on the distinct (judge score, human score) pairs and how often each occurs,
so the data is reduced to those cells with counts, and every statistic takes a stack of count
vectors (B, m): one row for the point estimate, B rows for a bootstrap (resampling items is
drawing new counts for the same cells). Ties get average ranks, as in scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from evaluator.humans.agreement.stats import AgreementError, defined_value


@dataclass(frozen=True)
class LevelGrouping:
    """How to sum cell counts per distinct score (level): cell order and group boundaries."""

    order: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, keys: np.ndarray) -> LevelGrouping:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        return cls(order, starts, np.diff(np.r_[starts, len(keys)]))

    def totals(self, counts: np.ndarray) -> np.ndarray:
        """(B, groups) sums of the counts (B, m) within each group."""
        return np.add.reduceat(counts[:, self.order], self.starts, axis=1)


@dataclass(frozen=True)
class ScorePairs:
    """Distinct (judge, human) score pairs, sorted by judge score then human score."""

    judge_level: np.ndarray
    """Rank (0-based, among distinct judge scores) of each cell's judge score."""
    human_level: np.ndarray
    counts: np.ndarray

    @cached_property
    def judge_grouping(self) -> LevelGrouping:
        return LevelGrouping.of(self.judge_level)

    @cached_property
    def human_grouping(self) -> LevelGrouping:
        return LevelGrouping.of(self.human_level)

    @cached_property
    def inversion_plan(self) -> list[tuple[LevelGrouping, np.ndarray]]:
        """Per bit of the human level, high to low: grouping by the higher bits, and the bit.

        A pair of cells (i before j) is discordant when human_level[i] > human_level[j]; the
        first bit where they differ decides it, with i's bit 1 and j's bit 0, and both sharing
        all higher bits. Counting those per bit is O(m) each: O(m log L) over all bits.
        """
        plan = []
        for bit in reversed(range(max(int(self.human_level.max()).bit_length(), 1))):
            key = self.human_level >> bit
            grouping = LevelGrouping.of(key >> 1)
            plan.append((grouping, (key[grouping.order] & 1).astype(bool)))
        return plan


def as_scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    try:
        scores = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise AgreementError(f"{name} must be numbers") from None
    if scores.ndim != 1:
        raise AgreementError(f"{name} must be a flat list of numbers, got shape {scores.shape}")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise AgreementError(f"{name}[{bad[0]}] is missing or not finite: drop unscored items "
                             "before correlating scores")
    return scores


def score_pairs(judge_scores: Sequence[float], human_scores: Sequence[float]) -> ScorePairs:
    """Check two aligned score lists and reduce them to distinct pairs with counts."""
    judge, human = as_scores(judge_scores, "judge_scores"), as_scores(human_scores, "human_scores")
    if len(judge) != len(human):
        raise AgreementError(f"judge_scores has {len(judge)} items but human_scores has "
                             f"{len(human)}: pass one score per item, aligned by position")
    if not len(judge):
        raise AgreementError("no scored pairs: a correlation needs judge and human scores")
    _, judge_level = np.unique(judge, return_inverse=True)
    human_values, human_level = np.unique(human, return_inverse=True)
    cells, counts = np.unique(judge_level * len(human_values) + human_level, return_counts=True)
    return ScorePairs(cells // len(human_values), cells % len(human_values), counts)


def _average_ranks(grouping: LevelGrouping, levels: np.ndarray, counts: np.ndarray):
    """Each cell's average rank (ties share the mean of their positions), and levels in use."""
    totals = grouping.totals(counts)
    ranks = np.cumsum(totals, axis=1) - (totals - 1) / 2.0
    return ranks[:, levels], (totals > 0).sum(axis=1)


def spearman_batch(pairs: ScorePairs, counts: np.ndarray) -> np.ndarray:
    """Spearman's rho (Pearson correlation of average ranks) per count row; NaN if undefined."""
    weights = counts.astype(float)
    judge_ranks, judge_used = _average_ranks(pairs.judge_grouping, pairs.judge_level, counts)
    human_ranks, human_used = _average_ranks(pairs.human_grouping, pairs.human_level, counts)
    mean_rank = (weights.sum(axis=1, keepdims=True) + 1) / 2.0
    judge_ranks -= mean_rank
    human_ranks -= mean_rank
    covariance = (weights * judge_ranks * human_ranks).sum(axis=1)
    spread = np.sqrt((weights * judge_ranks ** 2).sum(axis=1)
                     * (weights * human_ranks ** 2).sum(axis=1))
    defined = (judge_used > 1) & (human_used > 1)
    rho = np.clip(covariance / np.where(defined, spread, 1.0), -1.0, 1.0)
    return np.where(defined, rho, np.nan)


def _discordant_pairs(pairs: ScorePairs, counts: np.ndarray) -> np.ndarray:
    """Pairs of items ordered one way by the judge and the other way by the humans."""
    discordant = np.zeros(len(counts), dtype=np.int64)
    for grouping, bit_set in pairs.inversion_plan:
        in_order = counts[:, grouping.order]
        ones = np.where(bit_set, in_order, 0)
        ones_before = np.cumsum(ones, axis=1) - ones
        ones_before_group = np.repeat(ones_before[:, grouping.starts], grouping.sizes, axis=1)
        ones_before -= ones_before_group
        discordant += (np.where(bit_set, 0, in_order) * ones_before).sum(axis=1)
    return discordant


def kendall_batch(pairs: ScorePairs, counts: np.ndarray) -> np.ndarray:
    """Kendall's tau-b per count row: (concordant - discordant) / sqrt(untied_x * untied_y)."""
    counts = counts.astype(np.int64)

    def tied(totals: np.ndarray) -> np.ndarray:
        return (totals * (totals - 1) // 2).sum(axis=1)

    n = counts.sum(axis=1)
    all_pairs = n * (n - 1) // 2
    judge_ties = tied(pairs.judge_grouping.totals(counts))
    human_ties = tied(pairs.human_grouping.totals(counts))
    both_ties = tied(counts)
    discordant = _discordant_pairs(pairs, counts)
    difference = all_pairs - judge_ties - human_ties + both_ties - 2 * discordant
    spread = (all_pairs - judge_ties).astype(float) * (all_pairs - human_ties).astype(float)
    defined = spread > 0
    tau = np.clip(difference / np.sqrt(np.where(defined, spread, 1.0)), -1.0, 1.0)
    return np.where(defined, tau, np.nan)


def spearman(judge_scores: Sequence[float], human_scores: Sequence[float]) -> float:
    """Spearman's rank correlation between judge and human scores (as scipy's spearmanr)."""
    pairs = score_pairs(judge_scores, human_scores)
    return defined_value(spearman_batch(pairs, pairs.counts[None, :])[0], "spearman")


def kendall_tau_b(judge_scores: Sequence[float], human_scores: Sequence[float]) -> float:
    """Kendall's tau-b between judge and human scores (as scipy's kendalltau)."""
    pairs = score_pairs(judge_scores, human_scores)
    return defined_value(kendall_batch(pairs, pairs.counts[None, :])[0], "kendall")
