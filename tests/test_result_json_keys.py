"""The JSON of `evaluator agreement --json` (store and file) and `evaluator report --json`, key by
key and in order: the library returns typed results, and these keys are the contract scripts read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.records import Evaluation
from evaluator.core.settings import PROJECT_ROOT
from evaluator.humans.labels import import_labels
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store

INTERVAL = ["low", "high", "confidence", "method", "n_boot", "n_undefined"]
ESTIMATE = ["value", "ci", "reason"]
AGREEMENT = ["n", "labels", "ordinal", "bootstrap", "kappa", "weighted_kappa", "alpha", "accuracy",
             "macro_f1", "weighted_f1", "mcc", "per_label", "confusion_matrix", "spearman",
             "kendall", "headline", "verdict"]


def evaluation(i: int, rubric: str, label: str, score: float, version: int = 1) -> Evaluation:
    return Evaluation(
        evaluation_id=f"{rubric}{i}", trace_id=f"t{i}", rubric=rubric, rubric_version=version,
        rubric_hash="rh", judge="offline", judge_hash="jh", label=label, score=score,
        passed=score >= 0.5, status="scored", sample_reason="random", sample_weight=1.0)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    """Hallucination labelled by two annotators, refusal (three labels) by one, relevance by
    nobody."""
    tmp = tmp_path_factory.mktemp("keys")
    registry = RubricRegistry.load(PROJECT_ROOT / "rubrics")
    refusal = registry.get("refusal")
    evaluations, labels = [], []
    for i in range(40):
        failed = i % 4 == 0
        evaluations.append(evaluation(i, "hallucination", "hallucinated" if failed else "factual",
                                      0.0 if failed else 1.0))
        for annotator, flip in (("ann", i % 10 == 1), ("bob", i % 6 == 1)):
            labels.append({"trace_id": f"t{i}", "rubric": "hallucination", "annotator": annotator,
                           "label": "hallucinated" if failed != flip else "factual"})
        label = ("refused", "partial", "complied", "complied")[i % 4]
        evaluations.append(evaluation(i, "refusal", label, refusal.score_for(label),
                                      refusal.version))
        labels.append({"trace_id": f"t{i}", "rubric": "refusal", "annotator": "ann",
                       "label": ("refused", "complied", "complied", "complied")[i % 4]})
        evaluations.append(evaluation(i, "relevance", "relevant", 1.0))
    path = tmp / "evaluator.duckdb"
    labels_file = tmp / "labels.jsonl"
    labels_file.write_text("".join(json.dumps(row) + "\n" for row in labels), encoding="utf-8")
    with Store(path) as store:
        store.write_batch(evaluations=evaluations)
        import_labels(labels_file, store, registry)
    return path


def invoke_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def check_agreement_keys(report: dict) -> None:
    assert list(report) == AGREEMENT
    assert list(report["bootstrap"]) == ["n_boot", "seed", "confidence", "method"]
    for name in ("kappa", "accuracy", "macro_f1", "weighted_f1", "mcc"):
        assert list(report[name]) == ESTIMATE, name
        assert list(report[name]["ci"]) == INTERVAL, name
    assert list(report["alpha"]) == ["level", *ESTIMATE]
    assert [list(row) for row in report["per_label"]] == [
        ["label", "support", "precision", "recall", "f1"]] * len(report["labels"])
    assert list(report["confusion_matrix"]) == ["labels", "rows", "columns", "counts"]


def test_store_agreement_json_keys(db: Path):
    data = invoke_json("agreement", "--db", str(db), "--n-boot", "20")
    assert list(data) == ["db", "groups", "collapse", "rubric_versions_without_file"]
    groups = {group["rubric"]: group for group in data["groups"]}
    assert set(groups) == {"hallucination", "refusal", "relevance"}
    for group in groups.values():
        assert list(group) == ["rubric", "rubric_version", "judge", "n", "human_labels",
                               "ties_left_out", "off_menu_left_out", "pairing", "agreement",
                               "reason", "inter_annotator", "failure_rate"]
        assert list(group["failure_rate"]) == ["n_production", "n_failed", "raw_rate",
                                               "weighted_rate", "basis", "corrected", "reason"]
    hallucination, refusal, relevance = (groups[name] for name in
                                         ("hallucination", "refusal", "relevance"))
    check_agreement_keys(hallucination["agreement"])
    assert hallucination["agreement"]["weighted_kappa"] is None
    assert list(refusal["agreement"]["weighted_kappa"]) == ["linear", "quadratic"]
    assert list(hallucination["agreement"]["spearman"]) == ESTIMATE
    inter = hallucination["inter_annotator"]
    assert list(inter) == ["n_annotators", "n_units", "n_pairable_units", "labels", "annotators",
                           "bootstrap", "alpha", "mean_pairwise_kappa", "pairwise_kappa"]
    assert list(inter["mean_pairwise_kappa"]) == [*ESTIMATE, "n_pairs"]
    assert [list(pair) for pair in inter["pairwise_kappa"]] == [
        ["annotators", "n_units", *ESTIMATE]]
    assert list(refusal["inter_annotator"]) == ["value", "reason"]
    corrected = hallucination["failure_rate"]["corrected"]
    assert list(corrected) == ["n_production", "n_labelled", "n_strata", "apparent_rate",
                               "sensitivity", "specificity", "youden_j", "corrected_rate",
                               "clipped", "method", "ci", "strata"]
    assert list(corrected["ci"]) == INTERVAL
    assert [list(row) for row in corrected["strata"]] == [
        ["stratum", "labelled", "exported", "selection_probability"]] * corrected["n_strata"]
    assert relevance["agreement"] is None and relevance["reason"].startswith("no human label")
    assert relevance["failure_rate"]["corrected"] is None


def test_file_agreement_json_keys(tmp_path: Path):
    path = tmp_path / "pairs.csv"
    path.write_text("model,gold\n" + "".join(f"{'ab'[i % 2]},{'ab'[i % 3 % 2]}\n"
                                             for i in range(30)), encoding="utf-8")
    data = invoke_json("agreement", "--file", str(path), "--a", "model", "--b", "gold",
                       "--n-boot", "20")
    assert list(data) == ["file", "a", "b", "rows", "collapse", "rows_missing_either",
                          "unreadable_rows", "roles", "agreement"]
    check_agreement_keys(data["agreement"])
    assert data["agreement"]["confusion_matrix"]["rows"] == "gold"
    assert data["agreement"]["verdict"].startswith("model-gold agreement is")


def test_report_json_keys_have_no_internal_objects(db: Path):
    data = invoke_json("report", "--db", str(db))
    assert list(data) == ["db", "scope", "run_id", "since", "judged_before_since", "status_counts",
                          "dead_letters", "rubrics", "judge_spend", "repeat_agreement",
                          "spend_reconciliation"]
    assert list(data["judge_spend"]) == ["judge", "rubric", "day"]
    assert {row["rubric"] for row in data["rubrics"]} == {"hallucination", "refusal", "relevance"}
