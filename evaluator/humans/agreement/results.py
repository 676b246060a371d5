"""Typed agreement results: what the reports compute, read by attribute through the library.

Each model is frozen; `to_dict()` is called once, at the edge (`--json`), and gives the JSON
keys in field order. An undefined statistic is an `Estimate` with value None and a reason.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from typing import Any


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in field order (nested models become dicts)."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Interval(_Serializable):
    """Percentile bootstrap interval; `n_undefined` resamples had no defined statistic."""

    low: float | None
    high: float | None
    confidence: float
    method: str
    n_boot: int
    n_undefined: int


@dataclass(frozen=True)
class Estimate(_Serializable):
    """A point estimate with its interval, or value None and the reason it is undefined."""

    value: float | None
    ci: Interval | None
    reason: str | None


@dataclass(frozen=True)
class KappaEstimate(_Serializable):
    """Cohen's kappa (`weights`: None, linear or quadratic) of `n` pairs over the `labels`."""

    value: float | None
    ci: Interval | None
    reason: str | None
    n: int
    weights: str | None
    labels: list[Hashable]


@dataclass(frozen=True)
class AlphaEstimate(_Serializable):
    """Krippendorff's alpha at a measurement level."""

    level: str
    value: float | None
    ci: Interval | None
    reason: str | None


@dataclass(frozen=True)
class BootstrapNote(_Serializable):
    """How every interval of one report was drawn."""

    n_boot: int
    seed: int | None
    confidence: float
    method: str


@dataclass(frozen=True)
class LabelMetrics(_Serializable):
    """Precision, recall and F1 of one label, the judge's against the humans'."""

    label: Hashable
    support: int
    precision: Estimate
    recall: Estimate
    f1: Estimate


@dataclass(frozen=True)
class LabelScores(_Serializable):
    """Point precision, recall and F1 of one label; None where undefined, the reason in
    `undefined` (statistic -> why)."""

    label: Hashable
    support: int
    precision: float | None
    recall: float | None
    f1: float | None
    undefined: dict[str, str]


@dataclass(frozen=True)
class ConfusionCounts(_Serializable):
    """Counts of label pairs, `rows` (the reference) by `columns` (the judge's role)."""

    labels: list[Hashable]
    rows: str
    columns: str
    counts: list[list[int]]


@dataclass(frozen=True)
class AgreementReport(_Serializable):
    """Judge vs reference labels (and scores): every statistic with an interval."""

    n: int
    labels: list[Hashable]
    ordinal: bool
    bootstrap: BootstrapNote
    kappa: Estimate
    weighted_kappa: dict[str, Estimate] | None
    alpha: AlphaEstimate
    accuracy: Estimate
    macro_f1: Estimate
    weighted_f1: Estimate
    mcc: Estimate
    per_label: list[LabelMetrics]
    confusion_matrix: ConfusionCounts
    spearman: Estimate | None
    kendall: Estimate | None
    headline: str
    verdict: str

    @property
    def headline_estimate(self) -> Estimate:
        """Quadratic-weighted kappa for ordinal labels, else Cohen's kappa."""
        if self.weighted_kappa is not None:
            return self.weighted_kappa["quadratic"]
        return self.kappa


@dataclass(frozen=True)
class PairKappa(_Serializable):
    """Cohen's kappa of two annotators on the units both labelled."""

    annotators: list[str]
    n_units: int
    value: float | None
    ci: Interval | None
    reason: str | None


@dataclass(frozen=True)
class MeanKappa(_Serializable):
    """Mean pairwise kappa over the `n_pairs` pairs where kappa is defined."""

    value: float | None
    ci: Interval | None
    reason: str | None
    n_pairs: int


@dataclass(frozen=True)
class InterAnnotatorReport(_Serializable):
    """Agreement among several annotators."""

    n_annotators: int
    n_units: int
    n_pairable_units: int
    labels: list[Hashable]
    annotators: list[str]
    bootstrap: BootstrapNote
    alpha: AlphaEstimate
    mean_pairwise_kappa: MeanKappa
    pairwise_kappa: list[PairKappa]


@dataclass(frozen=True, kw_only=True)
class Unavailable(_Serializable):
    """A report that could not be made for this data, and why."""

    value: None = None
    reason: str


@dataclass(frozen=True)
class StratumWeight(_Serializable):
    """How the labelled items of one annotation stratum were weighted."""

    stratum: str
    labelled: int
    exported: int | None
    selection_probability: float


@dataclass(frozen=True)
class CorrectedRate(_Serializable):
    """A failure rate corrected for the judge's errors (Rogan-Gladen, design-weighted)."""

    n_production: int
    n_labelled: int
    n_strata: int
    apparent_rate: float
    sensitivity: float
    specificity: float
    youden_j: float
    corrected_rate: float
    clipped: bool
    method: str
    ci: Interval | None
    strata: list[StratumWeight] = field(default_factory=list)


@dataclass(frozen=True)
class CorrectedPrevalence(_Serializable):
    """The true rate of `positive_label` in production from the judge's flag rate there
    (Rogan-Gladen over simple random labelled pairs)."""

    positive_label: Hashable
    n_production: int
    n_flagged: int
    n_labelled: int
    apparent_rate: float
    sensitivity: float
    specificity: float
    youden_j: float
    corrected_rate: float
    clipped: bool
    ci: Interval | None


@dataclass(frozen=True)
class FailureRates(_Serializable):
    """Raw and sample-weighted failure rates in production, and the corrected one (or why not)."""

    n_production: int
    n_failed: int
    raw_rate: float | None
    weighted_rate: float | None
    basis: str
    corrected: CorrectedRate | None
    reason: str | None


@dataclass(frozen=True)
class GroupAgreement(_Serializable):
    """Everything `evaluator agreement` shows for one rubric version and judge."""

    rubric: str
    rubric_version: int
    judge: str
    n: int
    human_labels: int
    ties_left_out: int
    off_menu_left_out: int
    pairing: str
    agreement: AgreementReport | None
    reason: str | None
    inter_annotator: InterAnnotatorReport | Unavailable
    failure_rate: FailureRates

    @property
    def ref(self) -> str:
        return f"{self.rubric}@v{self.rubric_version}"


@dataclass(frozen=True)
class JudgeAgreement(_Serializable):
    """The judge-vs-humans part of a GroupAgreement, without the failure rates and the
    annotators' agreement (the HTML report's card shows this part only)."""

    rubric: str
    rubric_version: int
    judge: str
    n: int
    agreement: AgreementReport | None
    reason: str | None

    @property
    def ref(self) -> str:
        return f"{self.rubric}@v{self.rubric_version}"


@dataclass(frozen=True)
class StoreAgreement(_Serializable):
    """Agreement reports for every (rubric version, judge) of a store."""

    db: str
    groups: list[GroupAgreement]
    collapse: dict[str, str]
    rubric_versions_without_file: list[str]


@dataclass(frozen=True)
class FileAgreement(_Serializable):
    """Agreement of two columns of a labelled file."""

    file: str
    a: str
    b: str
    rows: int
    collapse: dict[str, str]
    rows_missing_either: int
    unreadable_rows: list[str]
    roles: str
    agreement: AgreementReport
