"""Agreement statistics with bootstrap CIs on 100,000 labelled pairs, against looping sklearn/scipy.

Baselines call the reference function once per resample of a (B, n) index matrix, the usual
way to bootstrap them. They are too slow to run B=1000 times here, so each is timed over
fewer resamples in the same run and scaled to B=1000 (the row says how many).
"""

from __future__ import annotations

import time

import numpy as np

from evaluator.humans.agreement import agreement_report, kappa_with_ci

N_PAIRS = 100_000
N_BOOT = 1000
LABELS = np.array(["fail", "partial", "pass"])


def _best_time(call, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _looped_reference(reference, judge: np.ndarray, human: np.ndarray, resamples: int) -> float:
    """Seconds for `reference` over `resamples` index resamples, scaled to N_BOOT resamples."""
    indices = np.random.default_rng(1).integers(0, len(judge), (resamples, len(judge)))
    started = time.perf_counter()
    for index in indices:
        reference(human[index], judge[index])
    return (time.perf_counter() - started) * N_BOOT / resamples


def _row(metric: str, value: float, baseline: str, baseline_value: float, goal: str | None) -> dict:
    return {"benchmark": "agreement", "metric": metric, "value": value, "unit": "s",
            "baseline": baseline, "baseline_value": baseline_value,
            "ratio": value / baseline_value, "goal": goal}


def _labelled_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    human = rng.choice(LABELS, n, p=[0.2, 0.3, 0.5])
    judge = np.where(rng.random(n) < 0.8, human, rng.choice(LABELS, n))
    return judge, human


def run(quick: bool = False) -> list[dict]:
    from scipy import stats
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    repeats, resamples = (1, 5) if quick else (3, 40)
    judge, human = _labelled_pairs(rng, N_PAIRS)
    judge_list, human_list = judge.tolist(), human.tolist()
    kappa_loop = _looped_reference(cohen_kappa_score, judge, human, resamples)
    kappa_baseline = f"sklearn cohen_kappa_score x {N_BOOT} resamples (timed {resamples}, scaled)"
    rows = [
        _row(f"agreement_report, {N_PAIRS:,} pairs, B={N_BOOT}",
             _best_time(lambda: agreement_report(judge_list, human_list, n_boot=N_BOOT), repeats),
             kappa_baseline, kappa_loop, "< 2 s"),
        _row(f"kappa_with_ci, {N_PAIRS:,} pairs, B={N_BOOT}",
             _best_time(lambda: kappa_with_ci(judge_list, human_list, n_boot=N_BOOT), repeats),
             kappa_baseline, kappa_loop, None),
    ]

    # Discrete scores (rubric label-to-score maps, Likert): few distinct pairs, cheap to resample.
    judge_scores = np.clip(rng.integers(1, 6, N_PAIRS) + rng.integers(-1, 2, N_PAIRS), 1, 5)
    judge_scores = judge_scores.astype(float)
    human_scores = np.clip(judge_scores + rng.integers(-1, 2, N_PAIRS), 1, 5)

    def both_correlations(a, b):
        stats.spearmanr(a, b)
        stats.kendalltau(a, b)

    rows.append(_row(
        f"agreement_report + 1-5 scores, {N_PAIRS:,} pairs, B={N_BOOT}",
        _best_time(lambda: agreement_report(judge_list, human_list, judge_scores=judge_scores,
                                            human_scores=human_scores, n_boot=N_BOOT), repeats),
        f"scipy spearmanr + kendalltau x {N_BOOT} resamples (timed {resamples}, scaled)",
        _looped_reference(both_correlations, judge_scores, human_scores, resamples), "< 2 s"))

    # Continuous scores: every pair distinct, O(B * n * log n); the slow case, measured smaller.
    n_continuous = 2_000 if quick else 10_000
    judge_cont = rng.normal(size=n_continuous)
    human_cont = judge_cont + rng.normal(size=n_continuous)
    small_judge, small_human = _labelled_pairs(rng, n_continuous)
    rows.append(_row(
        f"agreement_report + continuous scores, {n_continuous:,} pairs, B={N_BOOT}",
        _best_time(lambda: agreement_report(small_judge.tolist(), small_human.tolist(),
                                            judge_scores=judge_cont, human_scores=human_cont,
                                            n_boot=N_BOOT), 1),
        f"scipy spearmanr + kendalltau x {N_BOOT} resamples (timed {resamples}, scaled)",
        _looped_reference(both_correlations, judge_cont, human_cont, resamples), None))
    return rows


if __name__ == "__main__":
    for result in run():
        print(result)
