"""The example plugin, installed as a package (`make install` does it; this test installs it
when missing) and found through its entry points: each of its four extension points in use."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DISTRIBUTION = "evaluator-plugin-example"


@pytest.fixture(scope="module", autouse=True)
def installed():
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(HERE)],
                       check=True, timeout=300)
        importlib.invalidate_caches()
    from evaluator.commands.plugins import registries

    for registry in registries():
        registry.reload()


def test_every_entry_point_loads(monkeypatch, capsys):
    from evaluator.cli import main

    monkeypatch.setattr(sys, "argv", ["evaluator", "plugins", "--json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    ours = {(p["group"], p["name"]): p for p in json.loads(capsys.readouterr().out)
            if p["origin"].startswith(DISTRIBUTION)}
    assert set(ours) == {("evaluator.scorers", "reading_ease"), ("evaluator.embedders", "char_trigrams"),
                         ("evaluator.judges", "keyword"), ("evaluator.alert_sinks", "markdown_file")}
    assert all(p["problem"] is None for p in ours.values())


def test_its_scorer_embedder_and_judge_kind_score_a_run(tmp_path, monkeypatch, capsys):
    from evaluator.cli import main
    from evaluator.store import Store

    rubrics = tmp_path / "rubrics"
    for criterion, body in {
        "readable": "kind: reading_ease\nparams: {min_score: 50}\n",
        "close_to_reference": ("kind: semantic_similarity\nparams: {embedder: char_trigrams, threshold: 0.6}\n"
                               "required_inputs: [output, expected]\n"),
    }.items():
        (rubrics / criterion).mkdir(parents=True)
        (rubrics / criterion / "v1.yaml").write_text(
            f"criterion: {criterion}\nversion: 1\ndescription: example\n{body}", encoding="utf-8")
    bundled = HERE.parent.parent / "rubrics" / "refusal" / "v1.jinja"
    (rubrics / "refusal").mkdir()
    (rubrics / "refusal" / "v1.jinja").write_bytes(bundled.read_bytes())
    judges = tmp_path / "judges"
    judges.mkdir()
    (judges / "words.yaml").write_text("name: words\nkind: keyword\nparams: {fail_words: [sorry]}\n")
    traces = tmp_path / "traces.jsonl"
    traces.write_text(
        json.dumps({"trace_id": "plain", "input": "Hi?", "output": "The cat sat on the mat. It was warm.",
                    "expected": "The cat sat on a mat and it was warm."}) + "\n"
        + json.dumps({"trace_id": "dense", "input": "Hi?", "output": "Sorry: incomprehensibility "
                      "characteristically necessitates institutionalization.", "expected": "No."}) + "\n")
    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR", str(rubrics))
    monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(judges))
    db = tmp_path / "run.duckdb"
    monkeypatch.setattr(sys, "argv", ["evaluator", "run", "--traces", str(traces), "--judge", "words",
                                      "--sample-rate", "1", "--db", str(db)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0, capsys.readouterr().err
    with Store(db, read_only=True) as store:
        rows = {(e.trace_id, e.rubric): e for e in store.evaluations()}
    assert (rows[("plain", "readable")].label, rows[("dense", "readable")].label) == ("pass", "fail")
    assert rows[("plain", "close_to_reference")].label == "pass"
    assert rows[("dense", "close_to_reference")].label == "fail"
    assert rows[("plain", "close_to_reference")].judge == "code:semantic_similarity"
    assert (rows[("plain", "refusal")].label, rows[("dense", "refusal")].label) == ("complied", "refused")
    assert rows[("dense", "refusal")].judge == "words"


def test_its_alert_sink_receives_notifications(tmp_path):
    from evaluator.monitoring.alerts.rules import load_alert_config
    from evaluator.monitoring.alerts.sinks import Notification, build_sinks, deliver

    out = tmp_path / "alerts.md"
    config = tmp_path / "alerts.yaml"
    config.write_text(json.dumps({"sinks": [{"kind": "markdown_file", "path": str(out)}]}))
    sinks = build_sinks(load_alert_config(config).sinks)
    notification = Notification("firing", "a-1", "hallucination_rate", {}, "P1", "5m", 0.02, (0.01, 0.03),
                                0.005, 400, ("t-1",), "hallucination rate 2% > 0.5%", datetime.now(UTC))
    assert deliver(sinks, [notification]) == []
    assert out.read_text() == "- **firing** [P1] FIRING hallucination rate 2% > 0.5% | examples: t-1\n"
