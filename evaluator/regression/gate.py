"""`evaluator gate`: did quality regress from a baseline to a replay run?

One rule decides, per rubric (criterion; versions may differ, that is what a rubric change is
tested with), on the items both sides scored (GATE_RULE): a regression is significantly more
items going from pass to fail than from fail to pass, by McNemar's exact one-sided test (the
binomial test of the discordant pairs against 1/2) at level alpha, or an absolute floor the
user set (--min-pass-rate, --max-regression). Items failing on both sides are known failures,
not regressions. The mean paired score change and its bootstrap interval are shown, and do not
decide. The baseline is another replay run (paired by dataset item id) or a dataset file, whose
`expected_labels` are scored with the run's rubric versions; a run that re-judged the dataset's
own outputs (no --target) against those labels measures the judge, not the application
(JUDGE_AGREEMENT).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evaluator.core.errors import ConfigError, DatasetError, EvaluatorError
from evaluator.humans.agreement.bootstrap import bootstrap_samples, percentile_interval
from evaluator.regression.datasets import DatasetItem, read_dataset, resolve_dataset
from evaluator.regression.replay import REPLAY_KIND
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.store.replay_queries import item_inputs, item_outcomes

if TYPE_CHECKING:
    from evaluator.store import RunRecord, Store

EXIT_PASS, EXIT_REGRESSION, EXIT_UNDECIDED = 0, 1, 2
DEFAULT_MIN_ITEMS = 10
DEFAULT_N_BOOT = 2000

Decision = Literal["pass", "regression", "undecided", "not_compared"]

GATE_RULE = ("regression when more items go from pass to fail than from fail to pass beyond "
             "chance: exact one-sided McNemar test (binomial test of the discordant pairs "
             "against 1/2) with p < alpha; or when a floor set with --min-pass-rate or "
             "--max-regression is broken. The score change is shown, and does not decide.")
JUDGE_AGREEMENT = "judge agreement with expected labels"
NEW_OUTPUTS = "new outputs vs expected labels"
RUN_VS_RUN = "run vs baseline run"


def change_names(comparison: str) -> tuple[str, str, str]:
    """What the pass->fail, fail->pass and fail-on-both-sides items are called in this comparison."""
    if comparison == JUDGE_AGREEMENT:
        return "judge fail, expected pass", "judge pass, expected fail", "both fail"
    return "pass→fail", "fail→pass", "known failures"


class GateUndecidedError(EvaluatorError):
    """The gate cannot compare these runs (unfinished run, unknown baseline); exit 2."""


@dataclass(frozen=True)
class Outcome:
    """One side's verdict on one item for one rubric; passed is None when it was not scored."""

    passed: bool | None
    score: float | None


@dataclass
class Side:
    """Everything one side of the comparison says: rubric -> item id -> outcome."""

    description: str
    outcomes: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    versions: dict[str, set[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, rubric: str, version: int | None, item_id: str, outcome: Outcome) -> None:
        self.outcomes.setdefault(rubric, {})[item_id] = outcome
        if version is not None:
            self.versions.setdefault(rubric, set()).add(version)


@dataclass(frozen=True)
class GateOptions:
    alpha: float = 0.05
    min_pass_rate: float | None = None
    """Fail when the run's pass rate (all items it scored) is below this."""
    max_regression: float | None = None
    """Fail when the pass rate on the shared items dropped by more than this (0.05 = 5 points)."""
    min_items: int = DEFAULT_MIN_ITEMS
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"--alpha must be between 0 and 1, got {self.alpha}")
        for name in ("min_pass_rate", "max_regression"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
        if self.min_items < 1:
            raise ConfigError(f"--min-items must be at least 1, got {self.min_items}")


@dataclass
class RubricGate:
    """The comparison of one rubric, and its decision with the reasons for it."""

    rubric: str
    run_versions: list[int]
    baseline_versions: list[int]
    decision: Decision = "pass"
    reasons: list[str] = field(default_factory=list)
    run_scored: int = 0
    run_unscored: int = 0
    run_pass_rate: float | None = None
    shared: int = 0
    baseline_shared_pass_rate: float | None = None
    run_shared_pass_rate: float | None = None
    regressed: list[str] = field(default_factory=list)
    """Items that passed in the baseline and fail in the run."""
    fixed: list[str] = field(default_factory=list)
    known_failures: list[str] = field(default_factory=list)
    mcnemar_p: float | None = None
    """Exact one-sided McNemar p-value: P(at least this many pass->fail | discordant pairs)."""
    decided_by: str | None = None
    """The statistic and threshold that decided, e.g. 'pass→fail 5, fail→pass 0: exact
    one-sided McNemar p=0.0312 < alpha 0.05'."""
    score_change: float | None = None
    score_interval: tuple[float, float] | None = None


@dataclass
class GateResult:
    run_id: str
    baseline: str
    options: GateOptions
    rubrics: list[RubricGate]
    comparison: str = RUN_VS_RUN
    """RUN_VS_RUN, NEW_OUTPUTS or JUDGE_AGREEMENT (the run re-judged the dataset's outputs)."""
    notes: list[str] = field(default_factory=list)
    previews: dict[str, str] = field(default_factory=dict)
    """item id -> a short view of its input, for the regressed items."""

    @property
    def exit_code(self) -> int:
        decisions = {r.decision for r in self.rubrics}
        if "regression" in decisions:
            return EXIT_REGRESSION
        if "undecided" in decisions or decisions <= {"not_compared"}:
            return EXIT_UNDECIDED
        return EXIT_PASS

    @property
    def verdict(self) -> str:
        return {EXIT_PASS: "pass", EXIT_REGRESSION: "regression",
                EXIT_UNDECIDED: "could not decide"}[self.exit_code]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "exit_code": self.exit_code, "rule": GATE_RULE,
                **asdict(self)}


def mcnemar_one_sided_p(worse: int, better: int) -> float:
    """Exact one-sided McNemar p-value: P(X >= worse), X ~ Binomial(worse + better, 1/2)."""
    n = worse + better
    if n == 0:
        return 1.0
    log_half_n = n * math.log(0.5)
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                        + log_half_n) for i in range(worse, n + 1))
    return min(1.0, tail)


def score_change_interval(changes: Sequence[float], confidence: float, n_boot: int,
                          seed: int) -> tuple[float, float | None, float | None]:
    """(mean paired change, low, high): percentile bootstrap over items, seeded (no interval
    without resamples)."""
    values, counts = np.unique(np.asarray(changes, dtype=float), return_counts=True)
    n = counts.sum()
    samples = bootstrap_samples(lambda rows: rows @ values / n, counts, n_boot,
                                np.random.default_rng(seed))
    interval = percentile_interval(samples, confidence)
    return float(counts @ values / n), interval.low, interval.high


def _rate(passes: Sequence[bool]) -> float | None:
    return sum(passes) / len(passes) if passes else None


def compare_rubric(rubric: str, run: Side, baseline: Side, options: GateOptions,
                   comparison: str = RUN_VS_RUN) -> RubricGate:
    ran = run.outcomes.get(rubric, {})
    base = baseline.outcomes.get(rubric)
    gate = RubricGate(rubric, sorted(run.versions.get(rubric, ())),
                      sorted(baseline.versions.get(rubric, ())))
    scored = [o.passed for o in ran.values() if o.passed is not None]
    gate.run_scored, gate.run_unscored = len(scored), len(ran) - len(scored)
    gate.run_pass_rate = _rate(scored)
    if not base:
        gate.decision = "not_compared"
        gate.reasons.append(f"the baseline has no verdicts for {rubric}")
        gate.decided_by = gate.reasons[0]
        return gate
    pairs = [(item, o, base[item]) for item, o in ran.items()
             if o.passed is not None and item in base and base[item].passed is not None]
    gate.shared = len(pairs)
    for item, now, before in pairs:
        if before.passed and not now.passed:
            gate.regressed.append(item)
        elif not before.passed and now.passed:
            gate.fixed.append(item)
        elif not before.passed:
            gate.known_failures.append(item)
    if gate.shared < options.min_items:
        gate.decision = "undecided"
        gate.reasons.append(f"only {gate.shared} items were scored on both sides (need "
                            f"{options.min_items}): add items, fix the unscored ones, or lower "
                            "--min-items")
        gate.decided_by = gate.reasons[0]
        return gate
    gate.baseline_shared_pass_rate = _rate([bool(b.passed) for _, _, b in pairs])
    gate.run_shared_pass_rate = _rate([bool(o.passed) for _, o, _ in pairs])
    _judge(gate, pairs, options, comparison)
    return gate


def _judge(gate: RubricGate, pairs: list[tuple[str, Outcome, Outcome]],
           options: GateOptions, comparison: str) -> None:
    worse, better = len(gate.regressed), len(gate.fixed)
    gate.mcnemar_p = mcnemar_one_sided_p(worse, better)
    significant = gate.mcnemar_p < options.alpha
    worse_name, better_name, _ = change_names(comparison)
    mcnemar = (f"{worse_name} {worse}, {better_name} {better}: exact one-sided McNemar "
               f"p={gate.mcnemar_p:.3g} {'<' if significant else '>='} alpha {options.alpha:g}")
    if significant:
        gate.reasons.append(mcnemar)
    changes = [o.score - b.score for _, o, b in pairs if o.score is not None and b.score is not None]
    if changes:
        mean, low, high = score_change_interval(changes, 1.0 - options.alpha, options.n_boot,
                                                options.seed)
        gate.score_change = mean
        gate.score_interval = None if low is None or high is None else (low, high)
    # Only called with shared items (min_items >= 1), so every rate below is defined.
    assert gate.run_pass_rate is not None and gate.run_shared_pass_rate is not None
    assert gate.baseline_shared_pass_rate is not None
    if options.min_pass_rate is not None and gate.run_pass_rate < options.min_pass_rate:
        gate.reasons.append(f"pass rate {gate.run_pass_rate:.1%} is below the floor "
                            f"{options.min_pass_rate:.1%}")
    drop = gate.baseline_shared_pass_rate - gate.run_shared_pass_rate
    if options.max_regression is not None and drop > options.max_regression:
        gate.reasons.append(f"pass rate on the shared items dropped by {drop:.1%} (more than "
                            f"{options.max_regression:.1%})")
    gate.decision = "regression" if gate.reasons else "pass"
    gate.decided_by = "; ".join(gate.reasons) or mcnemar


def dataset_side(path: Path, items: Sequence[DatasetItem], registry: RubricRegistry,
                 run_versions: Mapping[str, set[int]]) -> Side:
    """A dataset's expected labels as a baseline, scored with the run's rubric versions."""
    side = Side(f"{path} (expected labels)")
    skipped: dict[str, int] = {}
    for item in items:
        for criterion, label in item.expected_labels.items():
            versions = run_versions.get(criterion)
            if not versions:
                continue
            rubric = registry.get(f"{criterion}@v{max(versions)}")
            if label not in rubric.labels:
                skipped[rubric.ref] = skipped.get(rubric.ref, 0) + 1
                continue
            score = rubric.score_for(label)
            side.add(criterion, rubric.version, item.id, Outcome(rubric.passes(score), score))
    side.notes.extend(f"{count} expected labels are not on the menu of {ref}; left out"
                      for ref, count in sorted(skipped.items()))
    return side


def run_side(store: Store, run_id: str, registry: RubricRegistry) -> Side:
    """A replay run's verdicts. Scores are the label's score on the rubric menu on both sides
    (a judge's finer score has no counterpart in a dataset's expected labels)."""
    side = Side(f"run {run_id}")
    for row in item_outcomes(store, run_id):
        if row.status == "skipped":  # the rubric does not apply to this item
            continue
        rubric = registry.get(f"{row.rubric}@v{row.rubric_version}")
        if rubric.kind == "pairwise":  # a comparison with another run (gate --pairwise)
            continue
        outcome = Outcome(None, None)
        if row.status == "scored" and row.label is not None:
            score = rubric.score_for(row.label)
            outcome = Outcome(rubric.passes(score), score)
        side.add(row.rubric, row.rubric_version, row.item_id, outcome)
    return side


def completed_replay(store: Store, run_id: str, role: str) -> RunRecord:
    run = store.run(run_id)
    if run is None or run.kind != REPLAY_KIND:
        raise GateUndecidedError(f"no replay run {run_id!r} in {store.path} to use as the {role}; "
                                 "`evaluator replay DATASET` prints the run id")
    if run.status != "completed":
        raise GateUndecidedError(f"the {role} run {run_id} is {run.status}: finish it with "
                                 f"`evaluator replay --resume {run_id}` first")
    return run


def _baseline_dataset(store: Store, baseline: str, datasets_dir: Path | None) -> Path | None:
    """The dataset file a baseline names: a path, or (unless a run has that id) a dataset name."""
    if Path(baseline).is_file():
        return Path(baseline)
    if datasets_dir is None or store.run(baseline) is not None:
        return None
    try:
        named = resolve_dataset(baseline, datasets_dir)
    except DatasetError:  # not a dataset name either
        return None
    return named if named.is_file() else None


def evaluate_gate(db: Path, run_id: str, baseline: str | None, registry: RubricRegistry,
                  options: GateOptions, datasets_dir: Path | None = None) -> GateResult:
    """Compare `run_id` with a baseline: a dataset file, a run id, or a dataset name looked up
    as `replay` does (in `datasets_dir`, then the bundled datasets); by default the run's dataset."""
    with Store(db, read_only=True) as store:
        run = completed_replay(store, run_id, "candidate")
        candidate = run_side(store, run_id, registry)
        baseline = baseline or run.params.get("dataset")
        if baseline is None:
            raise GateUndecidedError(f"run {run_id} was not replayed from a dataset (a pytest "
                                     "session's checks): name the run to compare with, --baseline RUN")
        dataset = _baseline_dataset(store, baseline, datasets_dir)
        if dataset is not None:
            reference = dataset_side(dataset, read_dataset(dataset), registry, candidate.versions)
            comparison = NEW_OUTPUTS if run.params.get("target") else JUDGE_AGREEMENT
        elif store.run(baseline) is not None:
            completed_replay(store, baseline, "baseline")
            reference = run_side(store, baseline, registry)
            comparison = RUN_VS_RUN
        else:
            raise GateUndecidedError(f"baseline {baseline!r} is neither a dataset file nor a run "
                                     f"in {db}, nor the name of a dataset"
                                     f"{f' in {datasets_dir} or' if datasets_dir else ''} bundled")
        rubrics = [compare_rubric(name, candidate, reference, options, comparison)
                   for name in sorted(candidate.outcomes)]
        regressed = sorted({item for r in rubrics for item in r.regressed})
        inputs = item_inputs(store, run_id, regressed)
    previews = {item: _preview(DatasetItem.model_validate_json(text).question)
                for item, text in inputs.items()}
    return GateResult(run_id, reference.description, options, rubrics, comparison,
                      reference.notes, previews)


def _preview(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
