"""How well the judge agrees with humans, and humans with each other.

Pure numpy functions over label and score lists. Statistics that cannot be computed for the
data (kappa when everyone used one label, a correlation of constant scores...) raise
`AgreementError` from the scalar functions and appear as null with a reason in the reports;
NaN is never returned as a number. Modules: `stats` (confusion-matrix statistics),
`alpha` (Krippendorff), `correlation` (Spearman, Kendall), `bootstrap` (intervals),
`correction` (Rogan-Gladen), `report` (JSON-ready reports).
"""

from evaluator.humans.agreement.alpha import krippendorff_alpha
from evaluator.humans.agreement.correction import corrected_prevalence, rogan_gladen
from evaluator.humans.agreement.correlation import kendall_tau_b, spearman
from evaluator.humans.agreement.report import agreement_report, inter_annotator_report, kappa_with_ci
from evaluator.humans.agreement.stats import (
    AgreementError,
    ConfusionMatrix,
    cohen_kappa,
    confusion_matrix,
    f1_average,
    kappa_band,
    matthews_corrcoef,
    per_label_metrics,
    raw_agreement,
)

__all__ = [
    "AgreementError", "ConfusionMatrix", "agreement_report", "cohen_kappa", "confusion_matrix",
    "corrected_prevalence", "f1_average", "inter_annotator_report", "kappa_band", "kappa_with_ci",
    "kendall_tau_b", "krippendorff_alpha", "matthews_corrcoef", "per_label_metrics",
    "raw_agreement", "rogan_gladen", "spearman",
]
