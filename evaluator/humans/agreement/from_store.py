"""Judge-vs-human agreement and judge-corrected failure rates, from the store.

Per (rubric version, judge): the latest scored evaluation of each trace is paired with the
human labels of that trace (labels naming a rubric version meet only that version).

Several annotators on one item: the item counts once, with the annotators' majority label.
Resampling items (not annotator-item pairs) keeps the bootstrap intervals honest: counting each
annotator's label as its own pair would treat correlated labels of one item as independent
evidence. Items whose annotators tie are left out and counted. Disagreement among annotators is
reported separately, as inter-annotator agreement over all the rubric's labelled items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter

from evaluator.core.errors import RubricError
from evaluator.humans.agreement.bootstrap import DEFAULT_N_BOOT
from evaluator.humans.agreement.collapse import collapse, collapse_order
from evaluator.humans.agreement.report import agreement_report, inter_annotator_report
from evaluator.humans.agreement.results import (
    AgreementReport,
    FailureRates,
    GroupAgreement,
    InterAnnotatorReport,
    JudgeAgreement,
    StoreAgreement,
    Unavailable,
)
from evaluator.humans.agreement.stats import AgreementError
from evaluator.humans.agreement.store_correction import corrected_failure_rate
from evaluator.rubrics import Rubric, RubricRegistry, parse_ref
from evaluator.store import Store
from evaluator.store import labels_queries as queries
from evaluator.store.labels_queries import JudgeHumanRow

PAIRING = ("one pair per item: the judge's label against the annotators' majority label "
           "(ties left out)")
RATE_BASIS = ("failure rates are over the latest scored evaluation of each trace; the weighted "
              "rate uses sample_weight (inverse sampling probability), so over-sampled errors and "
              "negative feedback count at their share of all traffic. The corrected rate applies "
              "Rogan-Gladen to the weighted rate, with the judge's sensitivity and specificity "
              "weighted by each labelled item's sample_weight over its selection probability in "
              "its annotation batch stratum (labels export draws by the judge's verdict); its "
              "interval bootstraps the production traces and, per stratum, the labelled items.")


def labels_order(rubric: Rubric) -> list[str]:
    """Best to worst (score-descending), as the rubric file lists them."""
    return sorted(rubric.labels, key=lambda label: -rubric.labels[label])


@dataclass
class LabelledPairs:
    """The judge's label and the humans' consensus for each item of one group."""

    judge_labels: list[str] = field(default_factory=list)
    human_labels: list[str] = field(default_factory=list)
    judge_scores: list[float] = field(default_factory=list)
    human_scores: list[float] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    human_label_rows: int = 0
    ties: int = 0
    off_menu: int = 0
    """Human labels this rubric version does not offer (given for another version)."""


def majority(labels: list[str]) -> str | None:
    """The most common label, or None when two or more labels tie for the most votes."""
    if len(labels) == 1:
        return labels[0]
    if len(labels) == 2:  # the common case, without a Counter
        return labels[0] if labels[0] == labels[1] else None
    counts = Counter(labels).most_common(2)
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def labelled_pairs(rows: list[JudgeHumanRow], rubric: Rubric) -> LabelledPairs:
    """Rows of queries.judge_human_rows (sorted by trace), one consensus pair per item."""
    pairs = LabelledPairs(human_label_rows=len(rows))
    menu = rubric.labels
    for trace_id, group in groupby(rows, key=attrgetter("trace_id")):
        item_rows = [row for row in group if row.human_label in menu]
        if not item_rows:
            continue
        consensus = majority([row.human_label for row in item_rows])
        if consensus is None:
            pairs.ties += 1
            continue
        judge_label, judge_score = item_rows[0].judge_label, item_rows[0].judge_score
        human_scores = [menu[row.human_label] if row.human_score is None else row.human_score
                        for row in item_rows]
        pairs.trace_ids.append(trace_id)
        pairs.judge_labels.append(judge_label)
        pairs.human_labels.append(consensus)
        pairs.judge_scores.append(menu[judge_label] if judge_score is None else judge_score)
        pairs.human_scores.append(sum(human_scores) / len(human_scores))
    pairs.off_menu = sum(row.human_label not in menu for row in rows)
    return pairs


def inter_annotator(store: Store, rubric: Rubric, n_boot: int,
                    seed: int) -> InterAnnotatorReport | Unavailable:
    """Annotators x items agreement over the rubric's labelled items, or a reason it is absent."""
    rows = [row for row in queries.human_labels_for(store, rubric.criterion, rubric.version)
            if row.label in rubric.labels]
    annotators = sorted({row.annotator for row in rows})
    items = sorted({row.trace_id for row in rows})
    if len(annotators) < 2:
        return Unavailable(reason=f"{len(annotators)} annotator(s) labelled {rubric.ref}: "
                           "inter-annotator agreement needs at least two on the same items")
    column = {trace_id: i for i, trace_id in enumerate(items)}
    matrix: list[list[str | None]] = [[None] * len(items) for _ in annotators]
    for row in rows:
        matrix[annotators.index(row.annotator)][column[row.trace_id]] = row.label
    ordinal = len(rubric.labels) > 2
    try:
        return inter_annotator_report(matrix, "ordinal" if ordinal else "nominal",
                                      labels_order(rubric) if ordinal else None, annotators,
                                      n_boot=n_boot, seed=seed)
    except AgreementError as exc:
        return Unavailable(reason=str(exc))


def _human_fails(rubric: Rubric, labels: list[str]) -> list[str]:
    return ["fail" if not rubric.passes(rubric.score_for(label)) else "pass" for label in labels]


def failure_rates(store: Store, rubric: Rubric, judge: str, pairs: LabelledPairs,
                  n_boot: int, seed: int) -> FailureRates:
    """Raw and sample-weighted failure rates in production, and the Rogan-Gladen correction."""
    counts = queries.production_counts(store, rubric.criterion, rubric.version, judge)
    n, weight = counts.n, counts.weight
    corrected, reason = None, None
    if not n or not pairs.judge_labels:
        reason = "no human-labelled items to measure the judge's sensitivity with"
    else:
        try:
            corrected = corrected_failure_rate(
                store, rubric.criterion, rubric.version, judge, pairs.trace_ids,
                [label == "fail" for label in _human_fails(rubric, pairs.human_labels)],
                n_boot=n_boot, seed=seed)
        except AgreementError as exc:
            reason = str(exc)
    return FailureRates(
        n_production=n, n_failed=counts.failed,
        raw_rate=counts.failed / n if n else None,
        weighted_rate=counts.weight_failed / weight if weight else None,
        basis=RATE_BASIS, corrected=corrected, reason=reason)


def judge_vs_humans(store: Store, rubric: Rubric, judge: str, n_boot: int, seed: int,
                    collapse_labels: Mapping[str, str] | None = None
                    ) -> tuple[LabelledPairs, AgreementReport | None, str | None]:
    """The group's labelled pairs and their agreement report, or the reason there is none; the
    label statistics merge labels first when `collapse_labels` says so ({"partial": "refused"})."""
    pairs = labelled_pairs(queries.judge_human_rows(store, rubric.criterion, rubric.version, judge),
                           rubric)
    if not pairs.judge_labels:
        return pairs, None, (
            f"no human label matches a scored evaluation of {rubric.ref} by {judge}: label "
            f"those traces (`evaluator labels export --rubric {rubric.ref}`), then "
            "`evaluator labels import FILE`")
    mapping = collapse_labels or {}
    order = collapse_order(labels_order(rubric), mapping)
    return pairs, agreement_report(
        collapse(pairs.judge_labels, mapping), collapse(pairs.human_labels, mapping), order,
        ordinal=len(order) > 2, judge_scores=pairs.judge_scores, human_scores=pairs.human_scores,
        n_boot=n_boot, seed=seed), None


def group_report(store: Store, rubric: Rubric, judge: str, n_boot: int, seed: int,
                 collapse_labels: Mapping[str, str] | None = None,
                 annotators: InterAnnotatorReport | Unavailable | None = None) -> GroupAgreement:
    """Everything `evaluator agreement` shows for one rubric version and judge (see
    `judge_vs_humans`). `annotators`: the rubric version's inter-annotator agreement when
    already computed (it does not depend on the judge)."""
    pairs, agreement, reason = judge_vs_humans(store, rubric, judge, n_boot, seed, collapse_labels)
    return GroupAgreement(
        rubric=rubric.criterion, rubric_version=rubric.version, judge=judge,
        n=len(pairs.judge_labels), human_labels=pairs.human_label_rows, ties_left_out=pairs.ties,
        off_menu_left_out=pairs.off_menu, pairing=PAIRING, agreement=agreement, reason=reason,
        inter_annotator=(annotators if annotators is not None
                         else inter_annotator(store, rubric, n_boot, seed)),
        failure_rate=failure_rates(store, rubric, judge, pairs, n_boot, seed))


class NoLabelsError(AgreementError):
    """The store holds no human labels yet."""


def _groups(store: Store, registry: RubricRegistry, rubric_ref: str | None,
            judge: str | None) -> tuple[list[tuple[Rubric, str]], list[str]]:
    """Every (rubric version, judge) with scored evaluations, and the rubric versions among
    them that have no rubric file."""
    criterion, version = None, None
    if rubric_ref is not None:
        registry.get(rubric_ref)  # an unknown name or version fails here, with the choices
        criterion, version = parse_ref(rubric_ref)
    if not queries.human_label_count(store):
        raise NoLabelsError(f"no human labels in {store.path}: export a batch to annotate with "
                            "`evaluator labels export --rubric NAME --n 200`, fill in label and "
                            "annotator, then `evaluator labels import FILE`")
    groups, missing = [], []
    for found in queries.rubrics_with_evaluations(store, criterion, judge):
        if version is not None and found.rubric_version != version:
            continue
        ref = f"{found.rubric}@v{found.rubric_version}"
        try:
            groups.append((registry.get(ref), found.judge))
        except RubricError:
            missing.append(ref)
    if not groups and not missing:
        scope = ((f" of {rubric_ref}" if rubric_ref else "")
                 + (f" by judge {judge}" if judge else ""))
        raise AgreementError(f"no scored evaluations{scope} in {store.path}: run `evaluator run`"
                             " first, or check the --rubric and --judge names")
    return groups, missing


def store_agreement(store: Store, registry: RubricRegistry, rubric_ref: str | None = None,
                    judge: str | None = None, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                    collapse_labels: Mapping[str, str] | None = None) -> StoreAgreement:
    """Agreement reports for every (rubric version, judge) with scored evaluations."""
    groups, missing = _groups(store, registry, rubric_ref, judge)
    annotators: dict[str, InterAnnotatorReport | Unavailable] = {}
    reports = []
    for rubric, group_judge in groups:
        if rubric.ref not in annotators:
            annotators[rubric.ref] = inter_annotator(store, rubric, n_boot, seed)
        reports.append(group_report(store, rubric, group_judge, n_boot, seed, collapse_labels,
                                    annotators[rubric.ref]))
    return StoreAgreement(db=str(store.path), groups=reports,
                          collapse=dict(collapse_labels or {}),
                          rubric_versions_without_file=missing)


def store_judge_agreement(store: Store, registry: RubricRegistry, n_boot: int = DEFAULT_N_BOOT,
                          seed: int = 0) -> list[JudgeAgreement]:
    """The judge-vs-humans part of `store_agreement` for every group with a rubric file (the
    same reports), without the failure rates and the annotators' agreement."""
    reports = []
    for rubric, judge in _groups(store, registry, None, None)[0]:
        pairs, agreement, reason = judge_vs_humans(store, rubric, judge, n_boot, seed)
        reports.append(JudgeAgreement(rubric=rubric.criterion, rubric_version=rubric.version,
                                      judge=judge, n=len(pairs.judge_labels),
                                      agreement=agreement, reason=reason))
    return reports
