"""Agreement statistics against scikit-learn, scipy and krippendorff, plus edge cases.

References return NaN (or, for MCC, 0.0) where a statistic is undefined; ours raise
AgreementError there (reports: null plus a reason). The helpers below check both sides.
"""

from __future__ import annotations

import json
import warnings

import krippendorff
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from sklearn import metrics

from evaluator.core.errors import EvaluatorError
from evaluator.humans.agreement import (
    AgreementError,
    agreement_report,
    cohen_kappa,
    confusion_matrix,
    corrected_prevalence,
    f1_average,
    inter_annotator_report,
    kappa_band,
    kappa_with_ci,
    kendall_tau_b,
    krippendorff_alpha,
    matthews_corrcoef,
    per_label_metrics,
    raw_agreement,
    rogan_gladen,
    spearman,
)

TOLERANCE = 1e-9
LABELS = ["fail", "partial", "pass", "skip"]
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def quietly(reference, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(reference(*args, **kwargs))


def assert_same(ours, reference_value: float) -> None:
    """ours() equals the reference, or raises AgreementError where the reference is NaN."""
    if np.isnan(reference_value):
        with pytest.raises(AgreementError, match="undefined"):
            ours()
    else:
        assert ours() == pytest.approx(reference_value, abs=TOLERANCE)


def random_label_pairs(seed: int, n: int, k: int, agreement: float = 0.7):
    rng = np.random.default_rng(seed)
    labels = LABELS[:k]
    human = rng.choice(labels, size=n).tolist()
    judge = [h if rng.random() < agreement else str(rng.choice(labels)) for h in human]
    return judge, human, labels


def check_label_statistics(judge: list, human: list, order: list) -> None:
    matrix = confusion_matrix(judge, human, order)
    assert matrix.labels == order
    reference_matrix = metrics.confusion_matrix(human, judge, labels=order)
    np.testing.assert_array_equal(matrix.counts, reference_matrix)
    assert raw_agreement(judge, human) == pytest.approx(metrics.accuracy_score(human, judge),
                                                        abs=TOLERANCE)
    for weights in (None, "linear", "quadratic"):
        reference = quietly(metrics.cohen_kappa_score, judge, human, labels=order, weights=weights)
        assert_same(lambda weights=weights: cohen_kappa(judge, human, order, weights), reference)
    if len(set(judge)) > 1 and len(set(human)) > 1:
        assert matthews_corrcoef(judge, human) == pytest.approx(
            metrics.matthews_corrcoef(human, judge), abs=TOLERANCE)
    else:  # sklearn reports 0.0 for this 0/0
        with pytest.raises(AgreementError, match="MCC is undefined"):
            matthews_corrcoef(judge, human)
    for average in ("macro", "weighted"):
        assert f1_average(judge, human, average) == pytest.approx(
            quietly(metrics.f1_score, human, judge, average=average), abs=TOLERANCE)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        human, judge, labels=order, average=None, zero_division=np.nan)
    rows = per_label_metrics(judge, human, order)
    for row, p, r, f, s in zip(rows, precision, recall, f1, support, strict=True):
        assert row.support == s
        for name, reference in (("precision", p), ("recall", r), ("f1", f)):
            if np.isnan(reference):
                assert getattr(row, name) is None and row.undefined[name]
            else:
                assert getattr(row, name) == pytest.approx(reference, abs=TOLERANCE)


@pytest.mark.parametrize("seed,n,k", [(0, 1, 2), (1, 7, 2), (2, 50, 3), (3, 400, 4), (4, 3000, 4),
                                      (5, 60, 4)])
def test_label_statistics_match_sklearn_on_random_data(seed, n, k):
    judge, human, order = random_label_pairs(seed, n, k)
    check_label_statistics(judge, human, order)


label_pairs = st.integers(1, 4).flatmap(lambda k: st.lists(
    st.tuples(st.sampled_from(LABELS[:k]), st.sampled_from(LABELS[:k])), min_size=1, max_size=60))


@FAST
@given(label_pairs)
def test_label_statistics_match_sklearn_on_generated_data(pairs):
    judge, human = [j for j, _ in pairs], [h for _, h in pairs]
    check_label_statistics(judge, human, LABELS)


def check_correlations(judge: np.ndarray, human: np.ndarray) -> None:
    rho = quietly(lambda: scipy_stats.spearmanr(judge, human).statistic)
    tau = quietly(lambda: scipy_stats.kendalltau(judge, human).statistic)
    assert_same(lambda: spearman(judge, human), rho)
    assert_same(lambda: kendall_tau_b(judge, human), tau)


@pytest.mark.parametrize("seed,n,levels",
                         [(0, 2, 0), (1, 30, 3), (2, 500, 0), (3, 2000, 5), (4, 20000, 0)])
def test_correlations_match_scipy_on_random_data(seed, n, levels):
    rng = np.random.default_rng(seed)
    human = rng.integers(0, levels, n).astype(float) if levels else rng.normal(size=n)
    judge = human + rng.normal(scale=1.0, size=n)
    check_correlations(np.round(judge) if levels else judge, human)


@FAST
@given(st.lists(st.tuples(st.integers(0, 4) | st.floats(-1e6, 1e6), st.integers(0, 4)), min_size=1,
                max_size=80))
def test_correlations_match_scipy_on_generated_data(pairs):
    check_correlations(np.array([p[0] for p in pairs], dtype=float),
                       np.array([p[1] for p in pairs], dtype=float))


def check_alpha(matrix: np.ndarray) -> None:
    for level in ("nominal", "ordinal", "interval"):
        try:
            reference = quietly(krippendorff.alpha, matrix, level_of_measurement=level)
        except ValueError:  # "more than one value in the domain" / "no pairable unit"
            reference = np.nan
        assert_same(lambda level=level: krippendorff_alpha(matrix, level), reference)


@pytest.mark.parametrize("seed,annotators,units,values,missing",
                         [(0, 2, 10, 3, 0.0), (1, 3, 50, 4, 0.3), (2, 5, 200, 5, 0.5),
                          (3, 2, 6, 2, 0.4)])
def test_alpha_matches_krippendorff_on_random_data(seed, annotators, units, values, missing):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, values + 1, units)
    matrix = np.where(rng.random((annotators, units)) < 0.7, truth,
                      rng.integers(1, values + 1, (annotators, units))).astype(float)
    matrix[rng.random(matrix.shape) < missing] = np.nan
    check_alpha(matrix)


reliability_matrices = st.tuples(st.integers(1, 4), st.integers(1, 25)).flatmap(
    lambda shape: st.lists(st.lists(st.sampled_from([1.0, 2.0, 3.0, 5.0, np.nan]),
                                    min_size=shape[1], max_size=shape[1]),
                           min_size=shape[0], max_size=shape[0]))


@FAST
@given(reliability_matrices)
def test_alpha_matches_krippendorff_on_generated_data(rows):
    matrix = np.array(rows)
    if np.isnan(matrix).all():
        with pytest.raises(AgreementError, match="every value"):
            krippendorff_alpha(matrix)
        return
    check_alpha(matrix)


def test_alpha_takes_labels_with_an_order_and_none_as_missing():
    numeric = np.array([[1, 2, 3, np.nan, 2], [1, 3, 3, 2, np.nan], [2, 2, 3, 1, 2]])
    names = {1.0: "bad", 2.0: "ok", 3.0: "good"}
    labelled = [[None if np.isnan(v) else names[v] for v in row] for row in numeric]
    for level in ("nominal", "ordinal"):
        ours = krippendorff_alpha(labelled, level, labels_order=["bad", "ok", "good"])
        assert ours == pytest.approx(krippendorff.alpha(numeric, level_of_measurement=level),
                                     abs=TOLERANCE)
    with pytest.raises(AgreementError, match="labels_order"):
        krippendorff_alpha(labelled, "ordinal")
    with pytest.raises(AgreementError, match="numeric"):
        krippendorff_alpha(labelled, "interval")


def test_report_matches_the_scalar_functions_and_is_json_ready():
    judge, human, order = random_label_pairs(7, 500, 3)
    scores = {"fail": 0.0, "partial": 0.5, "pass": 1.0}
    judge_scores = [scores[j] + (i % 7) / 100 for i, j in enumerate(judge)]
    human_scores = [scores[h] for h in human]
    report = agreement_report(judge, human, labels_order=order, ordinal=True,
                              judge_scores=judge_scores, human_scores=human_scores,
                              n_boot=200).to_dict()
    json.dumps(report, allow_nan=False)
    assert report["n"] == 500 and report["labels"] == order
    assert report["kappa"]["value"] == pytest.approx(cohen_kappa(judge, human), abs=TOLERANCE)
    for weights in ("linear", "quadratic"):
        assert report["weighted_kappa"][weights]["value"] == pytest.approx(
            cohen_kappa(judge, human, order, weights), abs=TOLERANCE)
    codes = np.array([[order.index(x) for x in judge], [order.index(x) for x in human]],
                     dtype=float)
    assert report["alpha"]["value"] == pytest.approx(
        krippendorff.alpha(codes, level_of_measurement="ordinal"), abs=TOLERANCE)
    assert report["accuracy"]["value"] == pytest.approx(raw_agreement(judge, human), abs=TOLERANCE)
    assert report["macro_f1"]["value"] == pytest.approx(f1_average(judge, human), abs=TOLERANCE)
    assert report["mcc"]["value"] == pytest.approx(matthews_corrcoef(judge, human), abs=TOLERANCE)
    assert report["confusion_matrix"]["counts"] == confusion_matrix(judge, human).counts.tolist()
    assert report["spearman"]["value"] == pytest.approx(spearman(judge_scores, human_scores),
                                                        abs=TOLERANCE)
    assert report["kendall"]["value"] == pytest.approx(kendall_tau_b(judge_scores, human_scores),
                                                       abs=TOLERANCE)
    for row in report["per_label"]:
        assert row["f1"]["value"] == pytest.approx(
            metrics.f1_score(human, judge, labels=[row["label"]], average=None)[0], abs=TOLERANCE)
    assert report["headline"] == "quadratic-weighted kappa"
    assert kappa_band(report["weighted_kappa"]["quadratic"]["value"]) in report["verdict"]


def test_bootstrap_intervals_contain_the_estimate_and_repeat_for_a_seed():
    judge, human, order = random_label_pairs(11, 300, 3)
    first = agreement_report(judge, human, n_boot=500, seed=3)
    assert first == agreement_report(judge, human, n_boot=500, seed=3)
    assert first.kappa.ci != agreement_report(judge, human, n_boot=500, seed=4).kappa.ci
    first = first.to_dict()
    for name in ("kappa", "alpha", "accuracy", "macro_f1", "weighted_f1", "mcc"):
        ci = first[name]["ci"]
        assert ci["low"] <= first[name]["value"] <= ci["high"], name
        assert ci["n_boot"] == 500 and ci["n_undefined"] == 0
    assert kappa_with_ci(judge, human, n_boot=500, seed=3).to_dict()["ci"] == first["kappa"]["ci"]
    assert agreement_report(judge, human, n_boot=0).kappa.ci is None


def test_count_resampling_has_the_spread_of_index_resampling():
    """Multinomial cell counts are the same bootstrap as resampling (B, n) item indices."""
    judge, human, order = random_label_pairs(5, 2000, 3, agreement=0.6)
    ci = kappa_with_ci(judge, human, n_boot=2000, seed=1).to_dict()["ci"]
    rng = np.random.default_rng(2)
    j, h = np.array(judge), np.array(human)
    resamples = rng.integers(0, 2000, (400, 2000))
    index_kappas = [metrics.cohen_kappa_score(h[i], j[i]) for i in resamples]
    low, high = np.quantile(index_kappas, [0.025, 0.975])
    assert (ci["high"] - ci["low"]) == pytest.approx(high - low, rel=0.2)


def test_inter_annotator_report_matches_references():
    rng = np.random.default_rng(8)
    truth = rng.integers(1, 4, 80)
    matrix = np.where(rng.random((3, 80)) < 0.75, truth, rng.integers(1, 4, (3, 80))).astype(float)
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    report = inter_annotator_report(matrix, annotators=["ann", "bob", "cy"], n_boot=300).to_dict()
    json.dumps(report, allow_nan=False)
    reference = krippendorff.alpha(matrix, level_of_measurement="nominal")
    assert report["alpha"]["value"] == pytest.approx(reference, abs=TOLERANCE)
    kappas = []
    for pair in report["pairwise_kappa"]:
        a, b = (["ann", "bob", "cy"].index(name) for name in pair["annotators"])
        both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
        assert pair["n_units"] == both.sum()
        kappas.append(metrics.cohen_kappa_score(matrix[a, both], matrix[b, both]))
        assert pair["value"] == pytest.approx(kappas[-1], abs=TOLERANCE)
    assert report["mean_pairwise_kappa"]["value"] == pytest.approx(np.mean(kappas), abs=TOLERANCE)
    ci = report["alpha"]["ci"]
    assert ci["low"] <= report["alpha"]["value"] <= ci["high"]


def test_rogan_gladen_recovers_a_constructed_prevalence():
    # true failure rate 0.2, sensitivity 0.9, specificity 0.85: flags 0.2*0.9 + 0.8*0.15 = 0.30
    assert rogan_gladen(0.30, 0.9, 0.85) == pytest.approx(0.2, abs=1e-12)
    judge = ["fail"] * 90 + ["pass"] * 10 + ["fail"] * 30 + ["pass"] * 170
    human = ["fail"] * 100 + ["pass"] * 200
    result = corrected_prevalence(3000, 10_000, judge, human, "fail", n_boot=500)
    json.dumps(result.to_dict(), allow_nan=False)
    assert (result.sensitivity, result.specificity) == pytest.approx((0.9, 0.85))
    assert result.corrected_rate == pytest.approx(0.2, abs=1e-12) and not result.clipped
    assert result.ci.low < 0.2 < result.ci.high
    assert rogan_gladen(0.05, 0.9, 0.85) == 0.0  # fewer flags than false positives alone: clipped


def test_rogan_gladen_corrects_a_simulated_judge():
    rng = np.random.default_rng(12)
    def judge_of(truth):
        return np.where(truth, rng.random(truth.size) < 0.8, rng.random(truth.size) < 0.1)
    production_truth = rng.random(200_000) < 0.25
    labelled_truth = rng.random(3000) < 0.3
    to_label = {True: "fail", False: "pass"}
    result = corrected_prevalence(
        int(judge_of(production_truth).sum()), production_truth.size,
        [to_label[x] for x in judge_of(labelled_truth)], [to_label[x] for x in labelled_truth],
        "fail")
    assert abs(result.apparent_rate - 0.25) > 0.02  # the raw rate is biased...
    assert result.corrected_rate == pytest.approx(0.25, abs=0.02)  # ...the corrected one is not
    assert result.ci.low < 0.25 < result.ci.high


def test_rogan_gladen_refuses_a_chance_level_judge():
    with pytest.raises(AgreementError, match="no better than chance"):
        rogan_gladen(0.3, 0.5, 0.5)
    with pytest.raises(AgreementError, match="no better than chance"):
        corrected_prevalence(10, 100, ["fail", "pass", "fail", "pass"],
                             ["fail", "fail", "pass", "pass"], "fail")
    with pytest.raises(AgreementError, match="sensitivity is undefined"):
        corrected_prevalence(10, 100, ["fail", "pass"], ["pass", "pass"], "fail")
    with pytest.raises(AgreementError, match="n_flagged"):
        corrected_prevalence(101, 100, ["fail"], ["fail"], "fail")
    with pytest.raises(AgreementError, match="whole numbers"):
        corrected_prevalence(10.5, 100, ["fail"], ["fail"], "fail")


@pytest.mark.parametrize("call,message", [
    (lambda: cohen_kappa([], []), "no labelled pairs"),
    (lambda: cohen_kappa(["a"], ["a", "b"]), "1 items but human_labels has 2"),
    (lambda: cohen_kappa(["a", None], ["a", "b"]), r"judge_labels\[1\] is missing"),
    (lambda: cohen_kappa(["a", float("nan")], ["a", "b"]), "missing"),
    (lambda: cohen_kappa(["a", "c"], ["a", "b"], labels_order=["a", "b"]), "'c' not in labels_"),
    (lambda: cohen_kappa(["a"], ["a"], labels_order=["a", "a"]), "twice"),
    (lambda: cohen_kappa(["a", 1], ["a", 1]), "cannot be sorted"),
    (lambda: cohen_kappa(["bad", "good"], ["good", "ok"], weights="linear"), "labels_order"),
    (lambda: cohen_kappa(["a"], ["a"], weights="cubic"), "unknown kappa weights"),
    (lambda: cohen_kappa(["a", "a"], ["a", "a"]), "kappa is undefined"),
    (lambda: matthews_corrcoef(["a", "a"], ["a", "b"]), "MCC is undefined"),
    (lambda: spearman([1, 1, 1], [1, 2, 3]), "Spearman's rho is undefined"),
    (lambda: kendall_tau_b([1, 2, 3], [4, 4, 4]), "Kendall's tau-b is undefined"),
    (lambda: spearman([1.0], [2.0]), "undefined"),
    (lambda: spearman([], []), "no scored pairs"),
    (lambda: spearman([1, float("inf")], [1, 2]), r"judge_scores\[1\] is missing or not finite"),
    (lambda: spearman([1, None], [1, 2]), "missing"),
    (lambda: spearman(["x"], [1]), "must be numbers"),
    (lambda: krippendorff_alpha([[None, np.nan], [None, None]]), "every value"),
    (lambda: krippendorff_alpha([[1, 2, 3]]), "no unit has values from two"),
    (lambda: krippendorff_alpha([[2, 2], [2, 2]]), "every comparable value is the same"),
    (lambda: krippendorff_alpha([[1, 2], [1]]), "annotators x units"),
    (lambda: krippendorff_alpha([[], []]), "no units"),
    (lambda: krippendorff_alpha([[1, 2], [1, 2]], "ratio"), "unknown level"),
    (lambda: kappa_band(float("nan")), "finite number"),
    (lambda: kappa_band(1.5), "at most 1"),
    (lambda: agreement_report(["a"], ["a"], n_boot=-1), "n_boot"),
    (lambda: agreement_report(["a"], ["a"], confidence=1.0), "confidence"),
    (lambda: agreement_report(["a"], ["a"], judge_scores=[1.0]), "both judge_scores"),
    (lambda: agreement_report(["a", "b"], ["a", "b"], judge_scores=[1.0], human_scores=[1.0]),
     "aligned"),
    (lambda: agreement_report(["x", "y"], ["y", "x"], ordinal=True), "labels_order"),
    (lambda: inter_annotator_report([[1, 2], [1, 2]], annotators=["only one"]), "annotator names"),
    (lambda: krippendorff_alpha([1, 2, 3]), "annotators x units"),
    (lambda: agreement_report(["a"], ["a"], confidence="high"), "confidence"),
    (lambda: agreement_report([str(i) for i in range(200)], ["0"] * 200), "too large to bootstrap"),
])
def test_bad_or_degenerate_input_raises_a_clear_agreement_error(call, message):
    with pytest.raises(AgreementError, match=message):
        call()
    assert issubclass(AgreementError, EvaluatorError)


def test_one_label_only_is_reported_as_undefined_not_as_a_number():
    report = agreement_report(["pass"] * 20, ["pass"] * 20, labels_order=["fail", "pass"],
                              n_boot=50).to_dict()
    json.dumps(report, allow_nan=False)
    assert report["accuracy"]["value"] == 1.0
    for name in ("kappa", "alpha", "mcc"):
        assert report[name]["value"] is None and report[name]["ci"] is None
        assert report[name]["reason"]
    fail_row = report["per_label"][0]
    assert fail_row["support"] == 0 and fail_row["f1"]["value"] is None
    assert "undefined" in report["verdict"] and "100.0%" in report["verdict"]


def test_full_agreement_and_constant_scores():
    labels = ["fail", "pass", "pass", "fail", "pass"]
    report = agreement_report(labels, labels, judge_scores=[0.1] * 5,
                              human_scores=[0, 1, 1, 0, 1], n_boot=100).to_dict()
    assert report["kappa"]["value"] == 1.0 and report["alpha"]["value"] == 1.0
    assert report["spearman"]["value"] is None and "all equal" in report["spearman"]["reason"]
    assert report["verdict"].startswith("Judge-human agreement is almost perfect")
    assert report["per_label"][0]["precision"]["value"] == 1.0


def test_intervals_count_resamples_where_a_statistic_is_undefined():
    report = agreement_report(["a", "b", "a"], ["a", "b", "a"], n_boot=400, seed=0).to_dict()
    ci = report["kappa"]["ci"]
    assert 0 < ci["n_undefined"] < 400  # resamples holding only one label
    assert ci["low"] == ci["high"] == 1.0


def test_pairwise_kappa_for_annotators_without_shared_units():
    matrix = [[1, 2, None, None], [None, None, 1, 2], [1, 2, 1, 2]]
    report = inter_annotator_report(matrix, n_boot=50).to_dict()
    no_overlap = report["pairwise_kappa"][0]
    assert no_overlap["value"] is None and "no unit in common" in no_overlap["reason"]
    assert report["mean_pairwise_kappa"]["n_pairs"] == 2
    assert report["mean_pairwise_kappa"]["value"] == 1.0


@pytest.mark.parametrize("kappa,band", [
    (-0.1, "poor"), (0.0, "slight"), (0.2, "slight"), (0.21, "fair"), (0.4, "fair"),
    (0.5, "moderate"), (0.61, "substantial"), (0.8, "substantial"), (0.81, "almost perfect"),
    (1.0, "almost perfect"),
])
def test_landis_koch_bands(kappa, band):
    assert kappa_band(kappa) == band


def test_ordinal_report_with_numeric_labels_needs_no_order():
    report = agreement_report([1, 2, 3, 3, 2], [1, 2, 3, 2, 2], ordinal=True, n_boot=0).to_dict()
    assert report["labels"] == [1, 2, 3] and report["alpha"]["level"] == "ordinal"
    assert report["weighted_kappa"]["linear"]["value"] == pytest.approx(
        metrics.cohen_kappa_score([1, 2, 3, 2, 2], [1, 2, 3, 3, 2], weights="linear"))


def test_a_large_report_is_fast_enough_to_run_in_tests():
    judge, human, order = random_label_pairs(1, 100_000, 3)
    report = agreement_report(judge, human, n_boot=1000).to_dict()
    assert report["kappa"]["ci"]["n_undefined"] == 0
