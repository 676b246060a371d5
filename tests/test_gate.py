"""The CI gate on constructed runs: a true regression fails, noise passes, too few items cannot
be decided; McNemar's exact p-value against scipy; floors, known failures, a dataset file as the
baseline, JUnit/Markdown output and the exit codes of `evaluator gate`."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import pytest
from scipy.stats import binomtest

from evaluator.cli import main
from evaluator.core.records import Evaluation, evaluation_id_for
from evaluator.core.settings import PROJECT_ROOT
from evaluator.regression.datasets import DatasetItem, write_dataset
from evaluator.regression.gate import (
    GATE_RULE,
    JUDGE_AGREEMENT,
    GateOptions,
    GateUndecidedError,
    Outcome,
    Side,
    compare_rubric,
    evaluate_gate,
    mcnemar_one_sided_p,
    score_change_interval,
)
from evaluator.regression.gate_output import gate_junit, gate_markdown, gate_table
from evaluator.regression.replay import REPLAY_KIND, replay_trace_id
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.store import replay_queries as queries

REGISTRY = RubricRegistry.load(PROJECT_ROOT / "rubrics")
PASS, FAIL = "factual", "hallucinated"


def store_run(db: Path, run_id: str, labels: dict[str, str], rubric: str = "hallucination",
              status: str = "completed", dataset: str = "unused.jsonl",
              target: str | None = None) -> None:
    """A replay run whose items got these labels (None: the judge call failed)."""
    found = REGISTRY.get(rubric)
    evaluations = []
    for item_id, label in labels.items():
        trace_id = replay_trace_id(run_id, item_id)
        common = dict(evaluation_id=evaluation_id_for(trace_id, found.content_hash, "offline"),
                      trace_id=trace_id, rubric=rubric, rubric_version=found.version,
                      rubric_hash=found.content_hash, judge="offline", judge_hash="offline",
                      sample_reason="replay", run_id=run_id)
        if label is None:
            evaluations.append(Evaluation(status="error", reason="judge down", **common))
        else:
            score = found.score_for(label)
            evaluations.append(Evaluation(status="scored", label=label, score=score,
                                          passed=found.passes(score), **common))
    item = DatasetItem(id="x", input="Q?", label_source="judge").line()
    with Store(db) as store:
        store.start_run(run_id, REPLAY_KIND, {"dataset": dataset, "target": target})
        queries.add_items(store, run_id, [(i, replay_trace_id(run_id, i), item) for i in labels])
        store.write_batch(evaluations=evaluations)
        queries.mark_done(store, run_id, [queries.ItemDone(i, None, None, None) for i in labels])
        store.finish_run(run_id, status)


def items(n: int) -> list[str]:
    return [f"item-{i:03d}" for i in range(n)]


def flipped(base: dict[str, str], to_fail: int, to_pass: int) -> dict[str, str]:
    """base with the first `to_fail` passes failing and the first `to_pass` failures passing."""
    run = dict(base)
    for item in [i for i, label in base.items() if label == PASS][:to_fail]:
        run[item] = FAIL
    for item in [i for i, label in base.items() if label == FAIL][:to_pass]:
        run[item] = PASS
    return run


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gate.duckdb"


def gate(db: Path, run: str = "new", baseline: str | None = "old", **options):
    return evaluate_gate(db, run, baseline, REGISTRY, GateOptions(**options))


BASE = {item: (FAIL if i % 8 == 0 else PASS) for i, item in enumerate(items(80))}  # 70 pass


@pytest.mark.parametrize(("worse", "better"), [(0, 0), (1, 0), (3, 2), (4, 0), (5, 0), (6, 1),
                                               (10, 10), (18, 1), (0, 25), (40, 17), (400, 350)])
def test_mcnemar_one_sided_matches_scipy_binomtest(worse: int, better: int):
    expected = (binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
                if worse + better else 1.0)
    assert mcnemar_one_sided_p(worse, better) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_a_true_regression_fails(db: Path):
    store_run(db, "old", BASE)
    store_run(db, "new", flipped(BASE, to_fail=18, to_pass=1))
    result = gate(db)
    (hallucination,) = result.rubrics
    assert result.exit_code == 1 and hallucination.decision == "regression"
    assert hallucination.mcnemar_p == pytest.approx(
        binomtest(18, 19, 0.5, alternative="greater").pvalue)
    assert len(hallucination.regressed) == 18 and len(hallucination.fixed) == 1
    assert len(hallucination.known_failures) == 9  # failing in both runs: not regressions
    assert hallucination.shared == 80 and hallucination.score_interval[1] < 0
    assert any("McNemar" in reason for reason in hallucination.reasons)


def test_noise_within_the_tests_power_passes(db: Path):
    store_run(db, "old", BASE)
    store_run(db, "new", flipped(BASE, to_fail=3, to_pass=2))
    result = gate(db)
    (hallucination,) = result.rubrics
    assert result.exit_code == 0 and hallucination.decision == "pass"
    assert hallucination.mcnemar_p == pytest.approx(0.5)  # P(X >= 3), X ~ Binomial(5, 1/2)
    low, high = hallucination.score_interval
    assert low < 0 < high and len(hallucination.regressed) == 3


def test_too_few_shared_items_cannot_be_decided(db: Path):
    store_run(db, "old", {item: PASS for item in items(30)})
    # 30 items but the judge failed on 24 of them: only 6 pairs to compare.
    store_run(db, "new", {item: (FAIL if i < 6 else None) for i, item in enumerate(items(30))})
    result = gate(db)
    assert result.exit_code == 2 and result.rubrics[0].decision == "undecided"
    assert result.rubrics[0].shared == 6 and result.rubrics[0].run_unscored == 24
    assert "only 6 items" in result.rubrics[0].reasons[0]
    assert gate(db, min_items=5).exit_code == 1


def test_items_failing_in_both_runs_are_known_failures_not_regressions(db: Path):
    store_run(db, "old", BASE)
    store_run(db, "new", BASE)
    result = gate(db)
    assert result.exit_code == 0
    assert len(result.rubrics[0].known_failures) == 10 and not result.rubrics[0].regressed


def test_a_score_drop_without_pass_fail_flips_is_shown_but_does_not_decide(db: Path):
    base = {item: "relevant" for item in items(40)}
    run = {item: ("mostly_relevant" if i < 30 else "relevant") for i, item in enumerate(items(40))}
    store_run(db, "old", base, rubric="relevance")
    store_run(db, "new", run, rubric="relevance")
    (relevance,) = gate(db).rubrics
    assert relevance.mcnemar_p == 1.0 and not relevance.regressed  # 0.75 still passes
    assert relevance.decision == "pass", "one rule decides: McNemar on pass/fail, and the floors"
    assert relevance.score_change == pytest.approx(-0.25 * 30 / 40)
    assert relevance.score_interval[1] < 0
    assert gate(db, max_regression=0.0).exit_code == 0  # no item crossed the pass threshold


def test_absolute_floors(db: Path):
    store_run(db, "old", BASE)
    store_run(db, "new", flipped(BASE, to_fail=3, to_pass=2))
    assert gate(db, min_pass_rate=0.85).exit_code == 0  # 69/80 = 86%
    floor = gate(db, min_pass_rate=0.9)
    assert floor.exit_code == 1 and "below the floor 90.0%" in floor.rubrics[0].reasons[0]
    drop = gate(db, max_regression=0.01)  # 1 point down on the shared items
    assert drop.exit_code == 1 and "dropped by 1.2%" in drop.rubrics[0].reasons[0]
    assert gate(db, max_regression=0.02).exit_code == 0


def test_a_dataset_file_is_a_baseline_through_its_expected_labels(db: Path, tmp_path: Path):
    path = tmp_path / "regressions.jsonl"
    write_dataset(path, [DatasetItem(id=item, input=f"Q {item}?", label_source="judge",
                                     expected_labels={"hallucination": label, "tone": "warm"})
                         for item, label in BASE.items()])
    store_run(db, "new", flipped(BASE, to_fail=18, to_pass=0), dataset=str(path))
    by_default = gate(db, baseline=None)  # the run's own dataset
    assert by_default.baseline == f"{path} (expected labels)"
    assert by_default.exit_code == 1 and len(by_default.rubrics[0].regressed) == 18
    store_run(db, "same", BASE, dataset=str(path))
    assert gate(db, run="same", baseline=str(path)).exit_code == 0


def test_rubrics_the_baseline_lacks_are_not_compared(db: Path):
    store_run(db, "old", BASE)
    store_run(db, "new", BASE)
    store_run(db, "new-refusal", {item: "complied" for item in items(20)}, rubric="refusal")
    with Store(db) as store:  # move the refusal verdicts into run "new"
        store.conn.execute("UPDATE evaluations SET run_id = 'new', trace_id = replace(trace_id,"
                           " 'new-refusal/', 'new/') WHERE run_id = 'new-refusal'")
    result = gate(db)
    decisions = {r.rubric: r.decision for r in result.rubrics}
    assert decisions == {"hallucination": "pass", "refusal": "not_compared"}
    assert result.exit_code == 0
    assert gate(db, run="new-refusal").exit_code == 2  # nothing compared at all


def test_unfinished_or_unknown_runs_cannot_be_decided(db: Path):
    store_run(db, "old", BASE)
    store_run(db, "new", BASE, status="interrupted")
    with pytest.raises(GateUndecidedError, match="replay --resume new"):
        gate(db)
    with pytest.raises(GateUndecidedError, match="neither a dataset file nor a run"):
        gate(db, run="old", baseline="no-such-run")


def test_junit_and_markdown(db: Path):
    store_run(db, "old", BASE)
    store_run(db, "new", flipped(BASE, to_fail=18, to_pass=1))
    result = gate(db)
    suite = ET.fromstring(gate_junit(result))
    cases = suite.findall("testcase")
    assert len(cases) == 1 + 18 and suite.get("tests") == "19" and suite.get("failures") == "19"
    assert cases[0].get("name") == "hallucination" and cases[0].find("failure") is not None
    assert {c.get("name") for c in cases[1:]} == {f"hallucination/{i}"
                                                  for i in result.rubrics[0].regressed}
    markdown = gate_markdown(result)
    assert markdown.startswith("## Evaluator gate: regression")
    assert "| hallucination |" in markdown and "Known failures" in markdown
    assert result.rubrics[0].regressed[0] in markdown
    noise = result.rubrics[0]
    noise.decision, noise.reasons = "pass", []
    suite = ET.fromstring(gate_junit(result))
    assert suite.get("failures") == "0" and suite.get("skipped") == "18"


def test_score_change_interval_is_seeded():
    changes = [-1.0] * 5 + [0.0] * 90 + [1.0] * 5
    first = score_change_interval(changes, 0.95, 2000, seed=7)
    assert first == score_change_interval(changes, 0.95, 2000, seed=7)
    assert first[0] == 0.0 and first[1] < 0 < first[2]


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_gate_cli(capsys: pytest.CaptureFixture, db: Path, *args: str) -> CliResult:
    """`evaluator gate` through the entry point (main: its exit codes and error line), in this
    process: a new interpreter per call would only add its start-up time."""
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exited:
        patch.setattr(sys, "argv", ["evaluator", "gate", "--db", str(db), *args])
        main()
    captured = capsys.readouterr()
    return CliResult(exited.value.code, captured.out, captured.err)


def test_gate_cli_exit_codes_and_files(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    store_run(db, "old", BASE)
    store_run(db, "bad", flipped(BASE, to_fail=18, to_pass=1))
    store_run(db, "noisy", flipped(BASE, to_fail=3, to_pass=2))
    store_run(db, "tiny", {item: PASS for item in items(4)})
    junit, markdown = tmp_path / "out" / "junit.xml", tmp_path / "out" / "gate.md"
    failed = run_gate_cli(capsys, db, "--run", "bad", "--baseline", "old", "--junit", str(junit),
                          "--markdown", str(markdown))
    assert failed.returncode == 1, failed.stderr
    assert "gate: regression (exit 1)" in failed.stdout
    assert "exact one-sided McNemar p=" in failed.stdout
    assert ET.parse(junit).getroot().get("failures") == "19"
    assert markdown.read_text().startswith("## Evaluator gate: regression")
    passed = run_gate_cli(capsys, db, "--run", "noisy", "--baseline", "old", "--json")
    assert passed.returncode == 0 and json.loads(passed.stdout)["verdict"] == "pass"
    assert run_gate_cli(capsys, db, "--run", "tiny", "--baseline", "old").returncode == 2
    missing = run_gate_cli(capsys, db, "--run", "nope", "--baseline", "old")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no replay run 'nope'")


def test_the_bundled_example_dataset_passes_its_own_gate(tmp_path: Path):
    """What `make gate` runs: a replay with the offline judge reproduces the expected labels."""
    from evaluator.core.settings import Settings
    from evaluator.regression.replay import start_replay

    dataset = PROJECT_ROOT / "datasets" / "example_regression.jsonl"
    db = tmp_path / "example.duckdb"
    report = start_replay(dataset, db, Settings.from_env(), judge_name="offline", run_id="example")
    assert report.status == "completed" and report.total >= 50
    result = evaluate_gate(db, "example", str(dataset), REGISTRY, GateOptions())
    assert result.exit_code == 0
    assert {r.rubric for r in result.rubrics if r.decision == "pass"} == {
        "faithfulness", "hallucination", "refusal", "relevance"}
    assert all(not r.regressed and not r.fixed for r in result.rubrics)


# -- one rule decides (issue 14.4) -----------------------------------------------------------------

def test_four_regressions_and_no_fix_in_100_items_is_within_noise(db: Path):
    """The issue's case: the verdict said regression next to McNemar p = 0.125 (two-sided)."""
    base = {item: PASS for item in items(100)}
    store_run(db, "old", base)
    store_run(db, "new", flipped(base, to_fail=4, to_pass=0))
    result = gate(db)
    (hallucination,) = result.rubrics
    assert hallucination.mcnemar_p == pytest.approx(0.0625)  # 1/2^4, one-sided
    assert result.exit_code == 0 and hallucination.decision == "pass"
    assert hallucination.decided_by == ("pass→fail 4, fail→pass 0: exact one-sided McNemar "
                                        "p=0.0625 >= alpha 0.05")
    store_run(db, "five", flipped(base, to_fail=5, to_pass=0))  # p = 1/32 < 0.05
    (five,) = gate(db, run="five").rubrics
    assert five.decision == "regression" and five.mcnemar_p == pytest.approx(1 / 32)
    assert five.decided_by == ("pass→fail 5, fail→pass 0: exact one-sided McNemar p=0.0312 "
                               "< alpha 0.05")


def test_the_deciding_statistic_is_in_every_output(db: Path):
    base = {item: PASS for item in items(100)}
    store_run(db, "old", base)
    store_run(db, "new", flipped(base, to_fail=5, to_pass=0))
    result = gate(db)
    decided_by = result.rubrics[0].decided_by
    assert decided_by in gate_markdown(result)
    assert GATE_RULE in gate_markdown(result)
    assert decided_by in ET.fromstring(gate_junit(result)).find("testcase/failure").get("message")
    from rich.console import Console
    console = Console(width=250, record=True)
    console.print(gate_table(result))
    assert decided_by in console.export_text()
    assert result.to_dict()["rule"] == GATE_RULE


def test_false_alarm_rate_is_at_most_alpha_when_items_flip_equally_both_ways():
    """2,000 simulated comparisons where each item flips either way with the same probability:
    the share judged a regression must not exceed alpha (it does not, up to Monte Carlo error)."""
    import numpy as np

    rng = np.random.default_rng(14)
    options = GateOptions(n_boot=50)
    worlds, n_items, alpha = 2000, 100, options.alpha
    discordant = rng.uniform(size=(worlds, n_items)) < rng.uniform(0.01, 0.2, size=(worlds, 1))
    worse = rng.uniform(size=(worlds, n_items)) < 0.5  # a discordant item flips either way
    concordant_pass = rng.uniform(size=(worlds, n_items)) < 0.8
    base_passes = np.where(discordant, worse, concordant_pass)
    run_passes = np.where(discordant, ~worse, concordant_pass)
    regressions = 0
    for w in range(worlds):
        baseline, run = Side("baseline"), Side("run")
        for i in range(n_items):
            baseline.add("r", 1, str(i), Outcome(bool(base_passes[w, i]), float(base_passes[w, i])))
            run.add("r", 1, str(i), Outcome(bool(run_passes[w, i]), float(run_passes[w, i])))
        regressions += compare_rubric("r", run, baseline, options).decision == "regression"
    assert regressions / worlds <= alpha + 2 * (alpha * (1 - alpha) / worlds) ** 0.5


def test_rejudged_outputs_against_expected_labels_measure_the_judge(db: Path, tmp_path: Path):
    """Without --target the outputs are the dataset's own: fail->pass is the judge disagreeing
    with the expected label, not the application getting better."""
    from rich.console import Console

    path = tmp_path / "regressions.jsonl"
    write_dataset(path, [DatasetItem(id=item, input=f"Q {item}?", label_source="judge",
                                     expected_labels={"hallucination": label})
                         for item, label in BASE.items()])
    store_run(db, "rejudged", flipped(BASE, to_fail=0, to_pass=6), dataset=str(path))
    result = gate(db, run="rejudged", baseline=None)
    assert result.comparison == JUDGE_AGREEMENT == "judge agreement with expected labels"
    markdown = gate_markdown(result)
    console = Console(width=250, record=True)
    console.print(gate_table(result))
    for text in (markdown, console.export_text()):
        assert JUDGE_AGREEMENT in text
        assert "fail→pass" not in text and "judge pass, expected fail" in text
    assert result.to_dict()["comparison"] == JUDGE_AGREEMENT
    store_run(db, "regenerated", flipped(BASE, to_fail=0, to_pass=6), dataset=str(path),
              target="app:answer")
    regenerated = gate(db, run="regenerated", baseline=None)
    assert regenerated.comparison == "new outputs vs expected labels"
    assert "fail→pass" in gate_markdown(regenerated)
    store_run(db, "old", BASE)
    assert gate(db, run="regenerated", baseline="old").comparison == "run vs baseline run"
