"""`evaluator agreement` end to end: `evaluator run`, import human labels, read the statistics
back through the CLI and check them against scikit-learn and krippendorff."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from evaluator.cli import cli, main
from evaluator.core.records import Evaluation
from evaluator.core.settings import PROJECT_ROOT
from evaluator.humans.agreement import rogan_gladen
from evaluator.humans.agreement.from_store import majority, store_agreement
from evaluator.humans.labels import import_labels
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store

TOLERANCE = 1e-9
TRACES = 240
FLIP_EVERY = 4
"""The human disagrees with the judge on every 4th judged trace (deterministic)."""
HALLUCINATION = RubricRegistry.load(PROJECT_ROOT / "rubrics").get("hallucination").ref
"""The version `evaluator run` judges with (the latest)."""
OPPOSITE = {"factual": "hallucinated", "hallucinated": "factual", "relevant": "partially_relevant",
            "mostly_relevant": "irrelevant", "partially_relevant": "relevant",
            "irrelevant": "mostly_relevant"}
RELEVANCE_ORDER = ["relevant", "mostly_relevant", "partially_relevant", "irrelevant"]


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def judged_once(tmp_path_factory) -> Path:
    """`evaluator run` over the first TRACES sample traces, every one sampled."""
    tmp = tmp_path_factory.mktemp("agreement")
    traces = tmp / "traces.jsonl"
    lines = (PROJECT_ROOT / "datasets" / "sample_traces.jsonl").read_text().splitlines()
    traces.write_text("\n".join(lines[:TRACES]) + "\n", encoding="utf-8")
    db = tmp / "evaluator.duckdb"
    invoke("run", "--traces", str(traces), "--db", str(db), "--sample-rate", "1.0",
           "--rubric", "hallucination", "--rubric", "relevance", "--json")
    return db


@pytest.fixture
def run_db(judged_once: Path, tmp_path: Path) -> Path:
    """A private copy of the judged store, so each test imports its own labels."""
    db = tmp_path / "evaluator.duckdb"
    shutil.copyfile(judged_once, db)
    return db


def judged(db: Path, rubric: str) -> list[tuple[str, str]]:
    with Store(db, read_only=True) as store:
        return store.conn.execute(
            "SELECT trace_id, label FROM evaluations WHERE status = 'scored' AND rubric = ?"
            " ORDER BY trace_id", [rubric]).fetchall()


def human_label(index: int, judge_label: str) -> str:
    return OPPOSITE[judge_label] if index % FLIP_EVERY == 0 else judge_label


def write_labels(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def groups_by_rubric(output: str) -> dict[str, dict]:
    return {group["rubric"]: group for group in json.loads(output)["groups"]}


def test_no_labels_says_how_to_import_them(run_db: Path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["evaluator", "agreement", "--db", str(run_db)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: no human labels in ") and message.count("\n") == 1
    assert "evaluator labels export" in message and "evaluator labels import FILE" in message


def import_ann_labels(db: Path, tmp_path: Path) -> None:
    """Annotator "ann" labels every judged trace, disagreeing with the judge every FLIP_EVERY."""
    rows = [{"trace_id": trace_id, "rubric": "hallucination", "label": human_label(i, label),
             "annotator": "ann"} for i, (trace_id, label) in enumerate(judged(db, "hallucination"))]
    rows += [{"trace_id": trace_id, "rubric": "relevance@v1", "label": human_label(i, label),
              "annotator": "ann"} for i, (trace_id, label) in enumerate(judged(db, "relevance"))]
    labels_file = write_labels(tmp_path / "labels.jsonl", rows)
    assert "0 rejected" in invoke("labels", "import", str(labels_file), "--db", str(db))


def test_end_to_end_kappa_matches_sklearn(run_db: Path, tmp_path: Path):
    hallucination = judged(run_db, "hallucination")
    relevance = judged(run_db, "relevance")
    import_ann_labels(run_db, tmp_path)
    groups = groups_by_rubric(invoke("agreement", "--json", "--db", str(run_db),
                                     "--n-boot", "200"))
    judge_labels = [label for _, label in hallucination]
    human_labels = [human_label(i, label) for i, label in enumerate(judge_labels)]
    report = groups["hallucination"]["agreement"]
    assert groups["hallucination"]["n"] == len(hallucination) > 150
    assert abs(report["kappa"]["value"] - cohen_kappa_score(human_labels, judge_labels)) < TOLERANCE
    assert report["kappa"]["ci"]["low"] < report["kappa"]["value"] < report["kappa"]["ci"]["high"]
    assert report["accuracy"]["value"] == pytest.approx(1 - 1 / FLIP_EVERY, abs=0.01)
    order = ["factual", "hallucinated"]
    assert report["confusion_matrix"]["counts"] == confusion_matrix(
        human_labels, judge_labels, labels=order).tolist()
    assert report["verdict"].startswith("Judge-human agreement is ")

    judge_relevance = [label for _, label in relevance]
    human_relevance = [human_label(i, label) for i, label in enumerate(judge_relevance)]
    ordinal = groups["relevance"]["agreement"]
    assert ordinal["ordinal"] and ordinal["labels"] == RELEVANCE_ORDER
    expected = cohen_kappa_score(human_relevance, judge_relevance, labels=RELEVANCE_ORDER,
                                 weights="quadratic")
    assert abs(ordinal["weighted_kappa"]["quadratic"]["value"] - expected) < TOLERANCE
    assert abs(ordinal["kappa"]["value"] - cohen_kappa_score(human_relevance, judge_relevance)
               ) < TOLERANCE


def test_agreement_does_not_compile_the_rubrics(run_db: Path, tmp_path: Path, monkeypatch):
    """Agreement reads the rubrics' labels and scores: a template that would not compile (a
    version nobody judged with) does not stop it."""
    from tests.support.rubric_files import rubrics_with_a_system_block_that_does_not_render

    import_ann_labels(run_db, tmp_path)
    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR",
                       str(rubrics_with_a_system_block_that_does_not_render(tmp_path)))
    groups = groups_by_rubric(invoke("agreement", "--json", "--db", str(run_db), "--n-boot", "20"))
    assert groups["relevance"]["agreement"]["kappa"]["value"] is not None


def test_corrected_failure_rate_next_to_the_raw_one(run_db: Path, tmp_path: Path):
    import_ann_labels(run_db, tmp_path)
    groups = groups_by_rubric(invoke("agreement", "--json", "--db", str(run_db), "--rubric",
                                     "hallucination", "--judge", "offline", "--n-boot", "200"))
    rates = groups["hallucination"]["failure_rate"]
    hallucination = judged(run_db, "hallucination")
    judge_fail = [label == "hallucinated" for _, label in hallucination]
    human_fail = [human_label(i, label) == "hallucinated"
                  for i, (_, label) in enumerate(hallucination)]
    assert rates["n_production"] == len(hallucination)
    assert rates["raw_rate"] == pytest.approx(sum(judge_fail) / len(judge_fail), abs=TOLERANCE)
    assert rates["weighted_rate"] == pytest.approx(rates["raw_rate"], abs=TOLERANCE)  # rate 1.0
    sensitivity = sum(j and h for j, h in zip(judge_fail, human_fail, strict=True)) / sum(human_fail)
    specificity = sum(not j and not h for j, h in zip(judge_fail, human_fail, strict=True)) / (
        len(human_fail) - sum(human_fail))
    corrected = rates["corrected"]
    assert corrected["sensitivity"] == pytest.approx(sensitivity, abs=TOLERANCE)
    assert corrected["specificity"] == pytest.approx(specificity, abs=TOLERANCE)
    assert corrected["corrected_rate"] == pytest.approx(
        rogan_gladen(rates["weighted_rate"], sensitivity, specificity), abs=TOLERANCE)
    assert corrected["ci"]["low"] <= corrected["corrected_rate"] <= corrected["ci"]["high"]


def test_several_annotators_majority_and_inter_annotator_alpha(run_db: Path, tmp_path: Path):
    import_ann_labels(run_db, tmp_path)
    hallucination = judged(run_db, "hallucination")[:60]
    votes = {}
    rows = []
    for i, (trace_id, label) in enumerate(hallucination):
        other = OPPOSITE[label]
        # bo agrees with ann (the judge, mostly), cy disagrees on every 3rd item, di on every 5th
        labels = {"bo": label, "cy": other if i % 3 == 0 else label,
                  "di": other if i % 5 == 0 else label}
        if i % 7 == 0:
            labels = {"bo": label, "cy": other}  # a 1-1 tie: left out of the pairs
        votes[trace_id] = labels
        rows += [{"trace_id": trace_id, "rubric": "hallucination", "label": value,
                  "annotator": who} for who, value in labels.items()]
    invoke("labels", "import", str(write_labels(tmp_path / "more.jsonl", rows)),
           "--db", str(run_db))
    group = groups_by_rubric(invoke("agreement", "--json", "--db", str(run_db), "--rubric",
                                    HALLUCINATION, "--n-boot", "0"))["hallucination"]

    all_votes = {trace_id: {"ann": human_label(i, label)} for i, (trace_id, label)
                 in enumerate(judged(run_db, "hallucination"))}
    for trace_id, labels in votes.items():
        all_votes[trace_id].update(labels)
    judge = dict(judged(run_db, "hallucination"))
    consensus = {t: majority(list(v.values())) for t, v in all_votes.items()}
    kept = sorted(t for t, label in consensus.items() if label is not None)
    assert group["ties_left_out"] == len(all_votes) - len(kept) > 0
    assert group["n"] == len(kept)
    assert abs(group["agreement"]["kappa"]["value"] - cohen_kappa_score(
        [consensus[t] for t in kept], [judge[t] for t in kept])) < TOLERANCE

    annotators = ["ann", "bo", "cy", "di"]
    items = sorted(all_votes)
    code = {"factual": 0, "hallucinated": 1}
    matrix = np.array([[code[all_votes[t][a]] if a in all_votes[t] else np.nan for t in items]
                       for a in annotators], dtype=float)
    inter = group["inter_annotator"]
    assert inter["annotators"] == annotators
    assert abs(inter["alpha"]["value"] - krippendorff.alpha(
        reliability_data=matrix, level_of_measurement="nominal")) < TOLERANCE


def test_text_output_has_table_verdict_and_correction(run_db: Path, tmp_path: Path):
    import_ann_labels(run_db, tmp_path)
    output = invoke("agreement", "--db", str(run_db), "--n-boot", "100")
    assert "Judge vs human labels" in output
    assert f"{HALLUCINATION} x offline: Judge-human agreement is" in output
    assert "failure rate: raw" in output and "Rogan-Gladen" in output
    assert "human \\ judge" in output


def test_unknown_rubric_is_a_one_line_error(run_db: Path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["evaluator", "agreement", "--db", str(run_db),
                                      "--rubric", "halucination"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "unknown rubric 'halucination'" in capsys.readouterr().err


# -- --file mode -----------------------------------------------------------------------------------

def test_file_mode_two_columns_match_sklearn(tmp_path: Path):
    rng = np.random.default_rng(7)
    a = rng.choice(["yes", "no", "maybe"], size=300).tolist()
    b = [x if rng.random() < 0.7 else rng.choice(["yes", "no", "maybe"]) for x in a]
    path = tmp_path / "pairs.csv"
    lines = ["id,model,gold"] + [f"{i},{x},{y}" for i, (x, y) in enumerate(zip(a, b, strict=True))]
    lines += ["300,yes,", "301,,no"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = json.loads(invoke("agreement", "--file", str(path), "--a", "model", "--b", "gold",
                             "--json", "--n-boot", "100"))
    assert data["rows"] == 302 and data["rows_missing_either"] == 2
    report = data["agreement"]
    assert report["n"] == 300 and not report["ordinal"]
    assert abs(report["kappa"]["value"] - cohen_kappa_score(b, a)) < TOLERANCE
    assert (report["confusion_matrix"]["rows"], report["confusion_matrix"]["columns"]) == (
        "gold", "model"), "the roles used, not judge and human"
    assert report["verdict"].startswith("model-gold agreement is")
    text = invoke("agreement", "--file", str(path), "--a", "model", "--b", "gold")
    assert "model-gold agreement is" in text and "gold \\ model" in text


def test_collapse_compares_binary_labels_with_a_three_label_rubric(tmp_path: Path):
    """Humans said refused / complied; the judge also says partial. --collapse partial=refused."""
    judge = ["refused"] * 30 + ["partial"] * 30 + ["complied"] * 40
    human = ["refused"] * 30 + ["refused"] * 25 + ["complied"] * 5 + ["complied"] * 40
    path = write_labels(tmp_path / "refusals.jsonl",
                        [{"judge": j, "human": h} for j, h in zip(judge, human, strict=True)])
    plain = json.loads(invoke("agreement", "--file", str(path), "--a", "judge", "--b", "human",
                              "--json", "--n-boot", "0"))["agreement"]
    collapsed = json.loads(invoke("agreement", "--file", str(path), "--a", "judge", "--b",
                                  "human", "--collapse", "partial=refused", "--json",
                                  "--n-boot", "0"))
    report = collapsed["agreement"]
    merged = ["refused" if label == "partial" else label for label in judge]
    assert report["labels"] == ["complied", "refused"]
    assert report["kappa"]["value"] == pytest.approx(cohen_kappa_score(human, merged))
    assert report["kappa"]["value"] > plain["kappa"]["value"] + 0.3
    assert collapsed["collapse"] == {"partial": "refused"}
    for bad in ("partial", "=refused", "partial=refused=x"):
        result = CliRunner().invoke(cli, ["agreement", "--file", str(path), "--a", "judge",
                                          "--b", "human", "--collapse", bad])
        assert result.exit_code == 2 and "--collapse" in result.output


def test_file_mode_numeric_ratings_are_ordinal(tmp_path: Path):
    rows = [{"r1": x, "r2": min(5, x + (i % 3 == 0))} for i, x in enumerate([1, 2, 3, 4, 5] * 20)]
    path = write_labels(tmp_path / "ratings.jsonl", rows)
    report = json.loads(invoke("agreement", "--file", str(path), "--a", "r1", "--b", "r2",
                               "--json", "--n-boot", "0"))["agreement"]
    assert report["ordinal"] and report["labels"] == [1, 2, 3, 4, 5]
    expected = cohen_kappa_score([r["r2"] for r in rows], [r["r1"] for r in rows],
                                 weights="quadratic")
    assert abs(report["weighted_kappa"]["quadratic"]["value"] - expected) < TOLERANCE


def test_file_mode_errors(tmp_path: Path):
    path = tmp_path / "pairs.csv"
    path.write_text("x,y\n1,2\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["agreement", "--file", str(path), "--a", "x", "--b", "z"])
    assert "no column 'z'; the file has x, y" in str(result.exception)
    result = runner.invoke(cli, ["agreement", "--file", str(path), "--a", "x"])
    assert result.exit_code == 2 and "--file needs --a COLUMN and --b COLUMN" in result.output
    result = runner.invoke(cli, ["agreement", "--a", "x", "--b", "y"])
    assert result.exit_code == 2 and "go with --file" in result.output


def test_weighted_failure_rate_uses_sample_weights(tmp_path: Path):
    """Always-evaluated traces (weight 1) fail more than randomly sampled ones (weight 10):
    the weighted rate and the Kish effective sample size say so."""
    registry = RubricRegistry.load(PROJECT_ROOT / "rubrics")
    evaluations, labels = [], []
    for i in range(100):
        always = i < 20
        label = "hallucinated" if (i % 2 == 0 if always else i % 10 == 0) else "factual"
        evaluations.append(Evaluation(
            evaluation_id=f"e{i}", trace_id=f"t{i}", rubric="hallucination", rubric_version=1,
            rubric_hash="rh", judge="offline", judge_hash="jh", label=label,
            score=1.0 if label == "factual" else 0.0, passed=label == "factual",
            status="scored", sample_reason="error" if always else "random",
            sample_weight=1.0 if always else 10.0))
        labels.append({"trace_id": f"t{i}", "rubric": "hallucination", "annotator": "ann",
                       "label": "hallucinated" if label == "hallucinated" or i % 25 == 1
                       else "factual"})
    db = tmp_path / "evaluator.duckdb"
    with Store(db) as store:
        store.write_batch(evaluations=evaluations)
        import_labels(write_labels(tmp_path / "l.jsonl", labels), store, registry)
        data = store_agreement(store, registry, "hallucination", n_boot=100).to_dict()
    rates = data["groups"][0]["failure_rate"]
    weights = np.array([e.sample_weight for e in evaluations])
    failed = np.array([not e.passed for e in evaluations])
    assert rates["raw_rate"] == pytest.approx(failed.mean(), abs=TOLERANCE)
    assert rates["weighted_rate"] == pytest.approx(
        (weights * failed).sum() / weights.sum(), abs=TOLERANCE)
    assert rates["weighted_rate"] < rates["raw_rate"]
    corrected = rates["corrected"]
    human = np.array([row["label"] == "hallucinated" for row in labels])
    # Every trace is labelled: each label stands for its trace's sample_weight traces.
    assert corrected["sensitivity"] == pytest.approx(
        (weights * failed * human).sum() / (weights * human).sum())
    assert corrected["sensitivity"] < 1.0 == corrected["specificity"]
    assert corrected["corrected_rate"] == pytest.approx(rogan_gladen(
        rates["weighted_rate"], corrected["sensitivity"], corrected["specificity"]))


def test_corrected_rate_of_a_batch_drawn_by_the_judges_verdict_is_unbiased(tmp_path: Path):
    """Issue 14.3: `labels export` takes every judge failure and a share of the passes; the
    labels must be weighted by how they were drawn. 1,000 traces: the judge fails 100 (80 truly
    fail), passes 900 (45 truly fail), so 12.5% truly fail. Counting the labelled items as a
    random sample gives sensitivity 80/102.5 and a corrected rate near 7.5%."""
    from evaluator.core.records import Trace
    from evaluator.core.rows import StoredTrace
    from evaluator.humans.labels import export_batch

    registry = RubricRegistry.load(PROJECT_ROOT / "rubrics")
    evaluations, traces, truly_fails = [], [], set()
    for i in range(1000):
        trace_id = f"t{i:04d}"
        judge_fails = i < 100
        if (judge_fails and i < 80) or (not judge_fails and i % 20 == 0):
            truly_fails.add(trace_id)
        label = "hallucinated" if judge_fails else "factual"
        evaluations.append(Evaluation(
            evaluation_id=f"e{i}", trace_id=trace_id, rubric="hallucination", rubric_version=1,
            rubric_hash="rh", judge="offline", judge_hash="jh", label=label,
            score=0.0 if judge_fails else 1.0, passed=not judge_fails, status="scored",
            sample_reason="random", sample_weight=1.0))
        traces.append(StoredTrace(Trace(trace_id=trace_id, input="q?", output="a."), "random", 1.0))
    db = tmp_path / "evaluator.duckdb"
    with Store(db) as store:
        store.write_batch(evaluations=evaluations, traces=traces)
        batch = export_batch(store, registry, "hallucination", 550, tmp_path / "batch")
    assert (batch.failures, batch.passes) == (100, {"factual": 450})
    rows = [json.loads(line) for line in (tmp_path / "batch.jsonl").read_text().splitlines()]
    passes_seen = 0
    labels = []
    for row in rows:  # annotators label every judge failure and skip a third of the passes
        if int(row["trace_id"][1:]) >= 100:
            passes_seen += 1
            if passes_seen % 3 == 0:
                continue
        labels.append({"trace_id": row["trace_id"], "rubric": "hallucination", "annotator": "a",
                       "label": "hallucinated" if row["trace_id"] in truly_fails else "factual"})
    with Store(db) as store:
        import_labels(write_labels(tmp_path / "l.jsonl", labels), store, registry)
        data = store_agreement(store, registry, "hallucination", n_boot=500).to_dict()
    corrected = data["groups"][0]["failure_rate"]["corrected"]
    assert corrected["corrected_rate"] == pytest.approx(0.125, abs=0.02)
    assert corrected["ci"]["low"] <= 0.125 <= corrected["ci"]["high"]
    assert corrected["sensitivity"] == pytest.approx(80 / 125, abs=0.06)
    strata = {s["stratum"].split("/")[1]: s for s in corrected["strata"]}
    assert strata["failures"]["selection_probability"] == 1.0
    assert strata["pass:factual"]["labelled"] == 300
    assert strata["pass:factual"]["selection_probability"] == pytest.approx(300 / 900)


def test_collapse_in_store_mode(tmp_path: Path):
    registry = RubricRegistry.load(PROJECT_ROOT / "rubrics")
    rubric = registry.get("refusal")
    judge = ["refused"] * 10 + ["partial"] * 10 + ["complied"] * 20
    human = ["refused"] * 18 + ["complied"] * 22
    evaluations = [Evaluation(
        evaluation_id=f"e{i}", trace_id=f"t{i}", rubric="refusal", rubric_version=rubric.version,
        rubric_hash="rh", judge="offline", judge_hash="jh", label=label,
        score=rubric.score_for(label), passed=rubric.passes(rubric.score_for(label)),
        status="scored", sample_reason="random", sample_weight=1.0)
        for i, label in enumerate(judge)]
    labels = [{"trace_id": f"t{i}", "rubric": "refusal", "annotator": "a", "label": label}
              for i, label in enumerate(human)]
    with Store(tmp_path / "e.duckdb") as store:
        store.write_batch(evaluations=evaluations)
        import_labels(write_labels(tmp_path / "l.jsonl", labels), store, registry)
        data = store_agreement(store, registry, "refusal", n_boot=0,
                               collapse_labels={"partial": "refused"}).to_dict()
    report = data["groups"][0]["agreement"]
    merged = ["refused" if label == "partial" else label for label in judge]
    assert set(report["labels"]) == {"complied", "refused"} and not report["ordinal"]
    assert report["kappa"]["value"] == pytest.approx(cohen_kappa_score(human, merged))
