"""The judge-corrected failure rate with a stratified annotation batch (issue 14.3).

Simulated worlds with a known true failure rate: traffic where errored requests fail more often
and are always sampled (weight 1) while the rest are sampled at 10% (weight 10); a judge with
known sensitivity and specificity; an annotation batch drawn as `labels export` draws it (judge
failures and judge passes sampled at different rates). Over 200 worlds the 95% interval must
cover the truth at least 93% of the time and the estimate must be unbiased within Monte Carlo
error. Weighted sensitivity and specificity are checked against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import recall_score

from evaluator.humans.agreement import AgreementError, rogan_gladen
from evaluator.humans.agreement.design_correction import design_corrected_rate

WORLDS = 200


def world(rng: np.random.Generator, n_traffic: int = 20_000, error_share: float = 0.1,
          fail_if_error: float = 0.4, fail_otherwise: float = 0.09, sensitivity: float = 0.85,
          specificity: float = 0.9, sample_rate: float = 0.1, n_fails: int = 150,
          n_passes: int = 150) -> dict:
    """One world: the true rate of all traffic, the judged sample, a stratified labelled batch."""
    errored = rng.random(n_traffic) < error_share
    truth = rng.random(n_traffic) < np.where(errored, fail_if_error, fail_otherwise)
    judge = np.where(truth, rng.random(n_traffic) < sensitivity,
                     rng.random(n_traffic) >= specificity)
    sampled = errored | (rng.random(n_traffic) < sample_rate)
    weight = np.where(errored, 1.0, 1.0 / sample_rate)[sampled]
    judged, true_fail = judge[sampled], truth[sampled]
    strata = {"judge fail": np.flatnonzero(judged), "judge pass": np.flatnonzero(~judged)}
    chosen, probability, names = [], [], []
    for (name, ids), take in zip(strata.items(), (n_fails, n_passes), strict=True):
        picked = rng.permutation(ids)[:take]
        chosen.append(picked)
        probability.append(np.full(len(picked), len(picked) / len(ids)))
        names += [name] * len(picked)
    chosen_ids, pi = np.concatenate(chosen), np.concatenate(probability)
    return {"truth": truth.mean(), "weights": weight, "fails": judged,
            "judge": judged[chosen_ids], "human": true_fail[chosen_ids],
            "item_weights": weight[chosen_ids] / pi, "naive_weights": np.ones(len(chosen_ids)),
            "strata": names}


def simulate(n_boot: int = 400, seed: int = 14, weights_key: str = "item_weights", **options):
    rng = np.random.default_rng(seed)
    truths, estimates, covered = [], [], 0
    for _ in range(WORLDS):
        w = world(rng, **options)
        result = design_corrected_rate(w["weights"], w["fails"], w["judge"], w["human"],
                                       w[weights_key], w["strata"], n_boot=n_boot,
                                       seed=int(rng.integers(2**31))).to_dict()
        truths.append(w["truth"])
        estimates.append(result["corrected_rate"])
        if result["ci"] is not None:
            covered += result["ci"]["low"] <= w["truth"] <= result["ci"]["high"]
    errors = np.array(estimates) - np.array(truths)
    return covered / WORLDS, errors.mean(), errors.std(ddof=1) / np.sqrt(WORLDS)


@pytest.mark.parametrize("options", [
    {},
    {"n_fails": 60, "n_passes": 60},
    {"sensitivity": 0.7, "specificity": 0.95, "n_passes": 100},
], ids=["150+150 labelled", "60+60 labelled", "weaker judge"])
def test_interval_covers_the_truth_and_the_estimate_is_unbiased(options):
    coverage, bias, standard_error = simulate(**options)
    assert coverage >= 0.93
    assert abs(bias) <= 3 * standard_error


def test_ignoring_how_the_batch_was_drawn_is_biased():
    """What `agreement` did before: each labelled item counted once, as if drawn at random."""
    _, bias, standard_error = simulate(n_boot=0, weights_key="naive_weights")
    assert abs(bias) > 10 * standard_error


def test_weighted_sensitivity_and_specificity_match_scikit_learn():
    rng = np.random.default_rng(3)
    w = world(rng)
    result = design_corrected_rate(w["weights"], w["fails"], w["judge"], w["human"],
                                   w["item_weights"], w["strata"], n_boot=0).to_dict()
    assert result["sensitivity"] == pytest.approx(recall_score(
        w["human"], w["judge"], sample_weight=w["item_weights"]))
    assert result["specificity"] == pytest.approx(recall_score(
        w["human"], w["judge"], pos_label=False, sample_weight=w["item_weights"]))
    apparent = (w["weights"] * w["fails"]).sum() / w["weights"].sum()
    assert result["apparent_rate"] == pytest.approx(apparent)
    assert result["corrected_rate"] == pytest.approx(
        rogan_gladen(apparent, result["sensitivity"], result["specificity"]))


def test_one_stratum_of_unit_weights_is_plain_rogan_gladen():
    judge = [True] * 90 + [False] * 10 + [True] * 30 + [False] * 170
    human = [True] * 100 + [False] * 200
    result = design_corrected_rate(np.ones(10), [True] * 3 + [False] * 7, judge, human,
                                   np.ones(300), ["all"] * 300, n_boot=200).to_dict()
    assert (result["sensitivity"], result["specificity"]) == pytest.approx((0.9, 0.85))
    assert result["corrected_rate"] == pytest.approx(rogan_gladen(0.3, 0.9, 0.85))
    assert result["ci"]["low"] <= result["corrected_rate"] <= result["ci"]["high"]


def test_undefined_corrections_are_refused_with_a_reason():
    with pytest.raises(AgreementError, match="sensitivity is undefined"):
        design_corrected_rate([1.0], [True], [True, False], [False, False], [1.0, 1.0],
                              ["s", "s"])
    with pytest.raises(AgreementError, match="no better than chance"):
        design_corrected_rate([1.0], [True], [True, False, True, False],
                              [True, True, False, False], [1.0] * 4, ["s"] * 4)
    with pytest.raises(AgreementError, match="positive finite"):
        design_corrected_rate([1.0], [True], [True, False], [True, False], [1.0, 0.0],
                              ["s", "s"])


def test_production_counted_by_weight_and_verdict_gives_the_same_result():
    """A store passes its production traces counted by (weight, verdict): the same estimate,
    interval and counts as one entry per trace."""
    w = world(np.random.default_rng(3))
    weights, fails = np.asarray(w["weights"]), np.asarray(w["fails"])
    cells, counts = np.unique(np.column_stack([weights, fails]), axis=0, return_counts=True)
    labelled = (w["judge"], w["human"], w["item_weights"], w["strata"])
    each = design_corrected_rate(weights, fails, *labelled, n_boot=300, seed=5).to_dict()
    counted = design_corrected_rate(cells[:, 0], cells[:, 1].astype(bool), *labelled,
                                    n_boot=300, seed=5, production_counts=counts).to_dict()
    for key in ("apparent_rate", "sensitivity", "specificity", "corrected_rate"):
        assert counted[key] == pytest.approx(each[key], rel=1e-12)
    for key in ("low", "high"):
        assert counted["ci"][key] == pytest.approx(each["ci"][key], rel=1e-12)
    assert {**counted, "apparent_rate": 0, "corrected_rate": 0, "ci": 0} == {
        **each, "apparent_rate": 0, "corrected_rate": 0, "ci": 0}
    assert counted["n_production"] == len(weights)
    with pytest.raises(AgreementError, match="production_counts"):
        design_corrected_rate([1.0, 2.0], [True, False], [True, False], [True, False],
                              [1.0, 1.0], ["s", "s"], production_counts=[1, 0])
