"""Replay runs never count as production traffic (issue 14.1).

Two stores hold the same production traffic (`evaluator run` over sample traces, human labels,
judge calls); one of them also holds two replays of a dataset of its failures. Every reader of
production numbers must give the same answer on both: text/JSON and HTML report, alerts,
agreement with its corrected rate, datasets build, the cost report and the Prometheus counters.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.records import utcnow
from evaluator.core.rows import JudgeCall
from evaluator.core.settings import PROJECT_ROOT
from evaluator.core.usage import Usage
from evaluator.humans.agreement.from_store import store_agreement
from evaluator.monitoring.alerts import check_alerts
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.worker.metrics import metrics
from tests.support.alert_streams import RecordingSink, config

TRACES = 120
REPLAYS = ("allfail-1", "allfail-2")


def invoke(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def judge_calls(run_id: str | None, cost: float, count: int) -> list[JudgeCall]:
    rows = []
    for _ in range(count):
        row = JudgeCall.new(judge="gpt", model="m", transport="openai", sample=0, attempt=1,
                            status="ok", usage=Usage(100, 10, cost, 50.0), cached=False)
        row.rubric, row.run_id = "hallucination", run_id
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """{"clean": production only, "polluted": the same plus two replays, "datasets": dir}."""
    tmp = tmp_path_factory.mktemp("scope")
    traces = tmp / "traces.jsonl"
    lines = (PROJECT_ROOT / "datasets" / "sample_traces.jsonl").read_text().splitlines()
    traces.write_text("\n".join(lines[:TRACES]) + "\n", encoding="utf-8")
    clean = tmp / "clean.duckdb"
    invoke("run", "--traces", str(traces), "--db", str(clean), "--sample-rate", "1.0",
           "--rubric", "hallucination", "--rubric", "relevance", "--json")
    with Store(clean) as store:
        judged = store.conn.execute(
            "SELECT trace_id, label FROM evaluations WHERE rubric = 'hallucination'"
            " AND status = 'scored' ORDER BY trace_id LIMIT 60").fetchall()
        store.write_batch(judge_calls=judge_calls(None, 0.01, 5))
    labels = tmp / "labels.jsonl"
    labels.write_text("".join(json.dumps({
        "trace_id": trace_id, "rubric": "hallucination", "annotator": "ann",
        "label": {"hallucinated": "factual"}.get(label, "hallucinated") if i % 5 == 0 else label,
    }) + "\n" for i, (trace_id, label) in enumerate(judged)), encoding="utf-8")
    invoke("labels", "import", str(labels), "--db", str(clean))
    polluted = tmp / "polluted.duckdb"
    shutil.copyfile(clean, polluted)
    datasets = tmp / "datasets"
    env = {"EVALUATOR_DATASETS_DIR": str(datasets)}
    invoke("datasets", "build", "--name", "allfail", "--db", str(polluted), env=env)
    for run_id in REPLAYS:
        invoke("replay", "allfail", "--run-id", run_id, "--db", str(polluted), "--json", env=env)
    with Store(polluted) as store:
        store.write_batch(judge_calls=judge_calls(REPLAYS[0], 0.50, 40))
    return {"clean": clean, "polluted": polluted, "datasets": datasets}


def report_json(db: Path, *options: str) -> dict:
    data = json.loads(invoke("report", "--db", str(db), "--json", *options))
    data.pop("db")
    return data


def test_the_report_counts_production_only(stores):
    clean, polluted = report_json(stores["clean"]), report_json(stores["polluted"])
    assert clean["rubrics"] and clean["judge_spend"]["judge"]
    assert polluted == clean
    assert sum(clean["status_counts"].values()) == 2 * TRACES


def test_report_run_shows_that_runs_numbers(stores):
    data = report_json(stores["polluted"], "--run", REPLAYS[0])
    evaluated = sum(rubric["evaluated"] for rubric in data["rubrics"])
    assert evaluated > 0
    assert sum(data["status_counts"].values()) == evaluated, "the run's counts, not production's"
    assert {row["key"]: row["calls"] for row in data["judge_spend"]["judge"]} == {"gpt": 40}
    everything = report_json(stores["polluted"], "--all-runs")
    production = report_json(stores["polluted"])
    other = report_json(stores["polluted"], "--run", REPLAYS[1])
    assert sum(everything["status_counts"].values()) == sum(
        sum(d["status_counts"].values()) for d in (production, data, other))


def cli_error(monkeypatch, capsys, *args: str) -> str:
    """What `evaluator ARGS` prints on stderr, having exited with 2."""
    from evaluator.cli import main

    monkeypatch.setattr("sys.argv", ["evaluator", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_an_unknown_run_is_a_one_line_error(stores, monkeypatch, capsys, tmp_path):
    db = str(stores["polluted"])
    for command in (["report"], ["report", "--json"], ["report", "--html", str(tmp_path / "x")],
                    ["datasets", "build", "--name", "x"]):
        message = cli_error(monkeypatch, capsys, *command, "--db", db, "--run", "no-such-run")
        assert message.startswith("error: no run 'no-such-run'") and message.count("\n") == 1
        assert REPLAYS[1] in message, "names the runs there are"
    assert not (tmp_path / "x").exists()


def test_run_and_all_runs_exclude_each_other(stores, monkeypatch, capsys):
    message = cli_error(monkeypatch, capsys, "report", "--db", str(stores["polluted"]),
                        "--run", REPLAYS[0], "--all-runs")
    assert "--run and --all-runs" in message and message.count("\n") == 1


def html_kpis(db: Path, out: Path, *options: str) -> dict[str, str]:
    invoke("report", "--db", str(db), "--html", str(out), *options)
    html = out.read_text(encoding="utf-8")
    return dict((name, value) for value, name in
                re.findall(r"<div class='kpi'><b>([^<]*)</b><span>([^<]*)</span>", html))


def test_the_html_report_counts_what_the_text_report_counts(stores, tmp_path):
    text = report_json(stores["polluted"])
    kpis = html_kpis(stores["polluted"], tmp_path / "p.html")
    assert kpis == html_kpis(stores["clean"], tmp_path / "c.html")
    assert kpis["evaluations"] == f"{sum(text['status_counts'].values()):,}"
    assert kpis["traces"] == f"{TRACES:,}"
    assert kpis["scored"] == f"{text['status_counts']['scored']:,}"
    run = report_json(stores["polluted"], "--run", REPLAYS[0])
    run_kpis = html_kpis(stores["polluted"], tmp_path / "r.html", "--run", REPLAYS[0])
    assert run_kpis["evaluations"] == f"{sum(run['status_counts'].values()):,}"


def test_alerts_never_fire_on_replay_rows(stores, tmp_path):
    rules = config(
        {"name": "hallucination_rate", "kind": "label_rate", "rubrics": ["hallucination"],
         "labels": ["hallucinated"], "above": 0.01, "window": "1h", "min_samples": 20,
         "priority": "P1"},
        {"name": "refusal_rate", "kind": "label_rate", "rubrics": ["refusal"],
         "labels": ["refused"], "above": 0.01, "window": "1h", "min_samples": 20,
         "priority": "P2"},
        {"name": "judge_cost", "kind": "cost_ratio", "max_ratio": 2.0, "window": "1h",
         "min_samples": 1, "priority": "P3"},
    )
    now = utcnow() + timedelta(seconds=1)
    results = {}
    for name in ("clean", "polluted"):
        db = tmp_path / f"{name}.duckdb"
        shutil.copyfile(stores[name], db)
        report = check_alerts(db, rules, now=now, sinks=[RecordingSink()])
        results[name] = [(r.rule, r.labels, r.state, r.observed, r.n, r.example_trace_ids)
                         for r in report.results]
    assert results["polluted"] == results["clean"]
    assert not [r for r in results["polluted"] if r[0] == "refusal_rate"], \
        "only replays judged refusal: no production evaluations to alert on"
    examples = [trace_id for r in results["polluted"] for trace_id in r[5]]
    assert examples and not [t for t in examples if t.startswith(REPLAYS)]


def failure_rates(db: Path) -> dict:
    registry = RubricRegistry.load(PROJECT_ROOT / "rubrics")
    with Store(db, read_only=True) as store:
        report = store_agreement(store, registry, n_boot=200).to_dict()
    return {(g["rubric"], g["judge"]): g["failure_rate"] for g in report["groups"]}


def test_agreement_and_its_correction_read_production_only(stores):
    clean = failure_rates(stores["clean"])
    assert clean[("hallucination", "offline")]["corrected"] is not None
    assert failure_rates(stores["polluted"]) == clean


def test_a_dataset_is_built_from_production_only(stores, tmp_path):
    built = {}
    for name in ("clean", "polluted"):
        out = tmp_path / name
        invoke("datasets", "build", "--name", "fails", "--db", str(stores[name]),
               env={"EVALUATOR_DATASETS_DIR": str(out)})
        built[name] = (out / "fails.jsonl").read_text(encoding="utf-8")
    assert built["polluted"] == built["clean"] != ""


def test_a_dataset_is_built_from_a_named_run_not_a_replay(stores, tmp_path, monkeypatch, capsys):
    with Store(stores["polluted"], read_only=True) as store:
        (production_run,) = store.runs(kind="run")
    env = {"EVALUATOR_DATASETS_DIR": str(tmp_path)}
    invoke("datasets", "build", "--name", "of-run", "--db", str(stores["polluted"]),
           "--run", production_run.run_id, env=env)
    assert (tmp_path / "of-run.jsonl").read_text(encoding="utf-8") != ""
    message = cli_error(monkeypatch, capsys, "datasets", "build", "--name", "of-replay", "--db",
                        str(stores["polluted"]), "--run", REPLAYS[0])
    assert message.startswith(f"error: run '{REPLAYS[0]}' is a replay") and message.count("\n") == 1


def test_replays_leave_the_prometheus_counters_alone(stores, tmp_path):
    def evaluations_counted() -> float:
        return sum(s.value for family in metrics().registry.collect()
                   if family.name == "evaluator_evaluations" for s in family.samples
                   if s.name.endswith("_total"))

    db = tmp_path / "replayed.duckdb"
    shutil.copyfile(stores["clean"], db)
    before = evaluations_counted()
    invoke("replay", "allfail", "--run-id", "again", "--db", str(db), "--json",
           env={"EVALUATOR_DATASETS_DIR": str(stores["datasets"])})
    assert evaluations_counted() == before
