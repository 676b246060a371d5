"""`evaluator rubrics check`: a candidate rubric version replays a human-labelled golden set
next to the current version; exit 0 pass, 1 fail (kappa drop or label flips), 2 no decision."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score

from evaluator.cli import cli, main
from evaluator.core.errors import DatasetError, RubricError
from evaluator.core.settings import PROJECT_ROOT
from evaluator.core.work import WorkItem
from evaluator.judges.factory import load_judge
from evaluator.regression.promotion import GOLDEN, check_promotion, current_version, read_golden
from evaluator.rubrics import RubricRegistry
from evaluator.worker.pipeline import evaluate_items

GOLDEN_ITEMS = 80
TOLERANCE = 1e-9


@pytest.fixture
def rubrics_dir(tmp_path: Path, monkeypatch) -> Path:
    """A copy of the published rubrics (v1 and their lock) that tests add versions to."""
    directory = tmp_path / "rubrics"
    shutil.copytree(PROJECT_ROOT / "rubrics", directory)
    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR", str(directory))
    return directory


def add_version(rubrics_dir: Path, criterion: str, version: int, *replacements: tuple[str, str]
                ) -> None:
    """Copy v1 as vN, with text replacements applied to the copy."""
    text = (rubrics_dir / criterion / "v1.jinja").read_text(encoding="utf-8")
    text = text.replace("version: 1\n", f"version: {version}\n", 1)
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new, 1)
    (rubrics_dir / criterion / f"v{version}.jinja").write_text(text, encoding="utf-8")


SAME = ("description: >-\n", "description: >-\n  Reworded, same meaning.\n")
INVERTED = [("  factual: 1.0", "  factual: 0.0"), ("  hallucinated: 0.0", "  hallucinated: 1.0")]
SHIFTED = ("  mostly_relevant: 0.75", "  mostly_relevant: 0.6")


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """Sample traces as dataset items, their synthetic truth as the human labels; plus one
    judge-labelled item and one without a hallucination label, which must be left out."""
    items = []
    for line in (PROJECT_ROOT / "datasets/sample_traces.jsonl").read_text().splitlines():
        trace = json.loads(line)
        expected = trace["metadata"]["synthetic_truth"].get("expected")
        if not expected or "hallucination" not in expected or not trace["context"]:
            continue  # the offline judge leaves hallucination without context unscored
        items.append({"id": trace["trace_id"], "input": trace["input"],
                      "context": trace["context"], "output": trace["output"],
                      "expected_labels": expected, "label_source": "human",
                      "metadata": {"system": trace.get("system")}})
        if len(items) == GOLDEN_ITEMS:
            break
    items.append({**items[0], "id": "by-judge", "label_source": "judge"})
    items.append({**items[1], "id": "no-hallucination", "expected_labels": {"refusal": "complied"}})
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["rubrics", "check", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_equivalent_candidate_passes(rubrics_dir: Path, golden: Path):
    add_version(rubrics_dir, "hallucination", 2, SAME)
    code, output = check("hallucination@v2", "--golden", str(golden), "--json")
    data = json.loads(output)
    assert code == 0 == data["exit_code"] and data["decision"] == "pass"
    assert (data["candidate"], data["current"], data["judge"]) == (
        "hallucination@v2", "hallucination@v1", "offline")
    assert data["items"] == data["compared"] == GOLDEN_ITEMS
    assert data["left_out"]["not_human_labelled"] == 1
    assert data["left_out"]["no_expected_label"] == 1
    assert data["flip_rate"] == 0.0 and data["kappa_drop"] == 0.0
    assert data["candidate_kappa"]["value"] == data["current_kappa"]["value"] > 0.4
    assert list(data) == ["candidate", "current", "judge", "golden", "statistic", "max_kappa_drop",
                          "max_flip_rate", "items", "compared", "left_out", "candidate_kappa",
                          "current_kappa", "kappa_drop", "flip_rate", "flipped_items", "decision",
                          "reasons", "exit_code", "warnings"]
    for kappa in (data["candidate_kappa"], data["current_kappa"]):
        assert list(kappa) == ["value", "ci", "reason", "n", "weights", "labels"]
        assert list(kappa["ci"]) == ["low", "high", "confidence", "method", "n_boot", "n_undefined"]


def test_worse_candidate_fails_on_kappa_and_flips(rubrics_dir: Path, golden: Path):
    add_version(rubrics_dir, "hallucination", 2, *INVERTED)
    code, output = check("hallucination@v2", "--golden", str(golden))
    assert code == 1, output
    assert "FAIL: kappa drops by" in output and "of the items change label" in output

    registry = RubricRegistry.load(rubrics_dir)
    candidate, current = registry.get("hallucination@v2"), registry.get("hallucination@v1")
    result = check_promotion(candidate, current, golden, load_judge("offline"), n_boot=0)
    items, _ = read_golden(golden, "hallucination")
    expected = [item.expected_label for item in items]
    judge = load_judge("offline")
    work = [WorkItem(item.trace, GOLDEN) for item in items]
    for rubric, reported in ((candidate, result.candidate_kappa), (current, result.current_kappa)):
        labels = [e.label for e in asyncio.run(evaluate_items(work, [rubric], judge))]
        assert abs(reported.value - cohen_kappa_score(expected, labels)) < TOLERANCE
    assert result.flip_rate == 1.0 and result.kappa_drop > 0.5


def test_flip_limit_alone_can_fail(rubrics_dir: Path, golden: Path):
    add_version(rubrics_dir, "relevance", 2, SHIFTED)
    code, output = check("relevance@v2", "--golden", str(golden), "--json", "--n-boot", "0")
    data = json.loads(output)
    assert code == 0 and data["statistic"] == "quadratic-weighted kappa"
    assert 0 < data["flip_rate"] < 0.10 and data["kappa_drop"] < 0.05
    assert len(data["flipped_items"]) == round(data["flip_rate"] * data["compared"])
    code, output = check("relevance@v2", "--golden", str(golden), "--max-flip-rate", "0.01",
                         "--n-boot", "0")
    assert code == 1 and "change label, more than the allowed 1.0%" in output
    assert "drops" not in output


def test_too_few_items_is_no_decision(rubrics_dir: Path, golden: Path):
    add_version(rubrics_dir, "hallucination", 2, SAME)
    code, output = check("hallucination@v2", "--golden", str(golden), "--min-items", "500")
    assert code == 2
    assert f"NO DECISION: only {GOLDEN_ITEMS} golden items could be compared (need 500)" in output


def test_current_is_the_latest_published_other_version(rubrics_dir: Path):
    for version in (2, 3):
        add_version(rubrics_dir, "relevance", version, SAME)
    registry = RubricRegistry.load(rubrics_dir)
    # Only v1 is in the lock: v2 and v3 are unpublished candidates.
    assert current_version(registry, registry.get("relevance@v3")).version == 1
    lock = rubrics_dir / "rubrics.lock"
    locked = json.loads(lock.read_text())
    locked["relevance@v2"] = registry.get("relevance@v2").content_hash
    lock.write_text(json.dumps(locked))
    assert current_version(registry, registry.get("relevance@v3")).version == 2
    assert current_version(registry, registry.get("relevance@v2")).version == 1
    lock.unlink()
    assert current_version(registry, registry.get("relevance@v2")).version == 3
    with pytest.raises(RubricError, match="pass --against"):
        current_version(RubricRegistry.load(PROJECT_ROOT / "rubrics"),
                        RubricRegistry.load(PROJECT_ROOT / "rubrics").get("relevance@v1"))


def test_against_and_one_line_errors(rubrics_dir: Path, golden: Path, monkeypatch, capsys):
    add_version(rubrics_dir, "hallucination", 2, SAME)
    code, output = check("hallucination@v1", "--golden", str(golden), "--against",
                         "hallucination@v2", "--json", "--n-boot", "0")
    assert code == 0 and json.loads(output)["current"] == "hallucination@v2"
    monkeypatch.setattr(sys, "argv", ["evaluator", "rubrics", "check", "relevance@v1",
                                      "--golden", str(golden)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "no published version of relevance other than relevance@v1" in capsys.readouterr().err


def test_golden_file_errors_name_the_line(tmp_path: Path):
    path = tmp_path / "golden.jsonl"
    path.write_text('{"id": "a", "input": "q", "output": "x", "expected_labels": {}, '
                    '"label_source": "human"}\n\n{"input": "q", "label_source": "human"}\n',
                    encoding="utf-8")
    with pytest.raises(DatasetError, match=r"1 invalid line\(s\): line 3: field 'id'"):
        read_golden(path, "hallucination")
    path.write_text('{"id": "a", "input": "q", "context": "not a list", "label_source": "human",'
                    ' "expected_labels": {"hallucination": "factual"}}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="line 1: field 'context'"):
        read_golden(path, "hallucination")
    with pytest.raises(DatasetError, match="not found"):
        read_golden(tmp_path / "missing.jsonl", "hallucination")
