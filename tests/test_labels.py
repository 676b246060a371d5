"""Human labels: import (CSV, JSONL, idempotent, several annotators, line-numbered rejections)
and annotation batch export (every failure, no verdicts, stratified passes, seeded)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import scipy.stats
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from evaluator.cli import cli
from evaluator.core.errors import DatasetError
from evaluator.core.records import Evaluation, Trace
from evaluator.core.rows import StoredTrace
from evaluator.core.settings import PROJECT_ROOT
from evaluator.humans.label_files import csv_safe, csv_unescape
from evaluator.humans.labels import EXPORT_COLUMNS, export_batch, import_labels, label_id_for
from evaluator.rubrics import RubricRegistry, files
from evaluator.store import Store
from evaluator.store.label_batch_queries import BatchItem
from evaluator.store.schema import column_names

REGISTRY = RubricRegistry.load(PROJECT_ROOT / "rubrics")
JUDGE_REASONING = "JUDGE-REASONING-MUST-NOT-LEAK"


def evaluation(trace_id: str, label: str, judge: str = "offline", rubric: str = "hallucination",
               version: int = 1) -> Evaluation:
    passed = REGISTRY.get(f"{rubric}@v{version}").passes(
        REGISTRY.get(f"{rubric}@v{version}").score_for(label))
    return Evaluation(
        evaluation_id=f"{trace_id}-{judge}-{rubric}", trace_id=trace_id, rubric=rubric,
        rubric_version=version, rubric_hash="rh", judge=judge, judge_hash=f"jh-{judge}",
        label=label, score=REGISTRY.get(rubric).score_for(label), passed=passed,
        reasoning=JUDGE_REASONING, status="scored", sample_reason="random", sample_weight=10.0)


def stored_trace(trace_id: str, output: str | None = None) -> StoredTrace:
    trace = Trace(trace_id=trace_id, input=f"question {trace_id}?", context=[f"doc {trace_id}"],
                  output=output or f"answer {trace_id}.")
    return StoredTrace(trace, "random", 10.0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "evaluator.duckdb"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def stored_labels(db: Path) -> list[tuple]:
    with Store(db, read_only=True) as store:
        return store.conn.execute(
            "SELECT trace_id, rubric, rubric_version, label, score, annotator, note, source"
            " FROM human_labels ORDER BY trace_id, annotator").fetchall()


# -- import ----------------------------------------------------------------------------------------

def test_import_csv_and_jsonl(db: Path, tmp_path: Path):
    csv_file = write_csv(tmp_path / "a.csv", ["trace_id", "rubric", "label", "annotator", "note"],
                         [["t1", "hallucination", "factual", "ann", "fine, really"],
                          ["t2", "faithfulness@v1", "mostly_faithful", "ann", ""]])
    jsonl_file = write_jsonl(tmp_path / "b.jsonl", [
        {"item_id": "item-9", "rubric": "refusal", "rubric_version": 1, "score": 0.0,
         "annotator": "bo"},
        {"trace_id": "t1", "rubric": "hallucination", "label": "hallucinated", "score": 0.2,
         "annotator": "bo"},
    ])
    with Store(db) as store:
        first = import_labels(csv_file, store, REGISTRY)
        second = import_labels(jsonl_file, store, REGISTRY)
    assert (first.rows, first.imported, first.rejected) == (2, 2, [])
    assert (second.rows, second.imported, second.rejected) == (2, 2, [])
    assert stored_labels(db) == [
        ("item-9", "refusal", 1, "refused", 0.0, "bo", None, "b.jsonl"),  # label from its score
        ("t1", "hallucination", None, "factual", None, "ann", "fine, really", "a.csv"),
        ("t1", "hallucination", None, "hallucinated", 0.2, "bo", None, "b.jsonl"),
        ("t2", "faithfulness", 1, "mostly_faithful", None, "ann", None, "a.csv"),
    ]
    assert first.without_evaluation == 2  # nothing is judged in this store yet


def test_reimport_is_idempotent_and_changes_need_replace(db: Path, tmp_path: Path):
    rows = [{"trace_id": f"t{i}", "rubric": "hallucination", "label": "factual", "annotator": "a"}
            for i in range(50)]
    path = write_jsonl(tmp_path / "labels.jsonl", rows)
    with Store(db) as store:
        assert import_labels(path, store, REGISTRY).imported == 50
        again = import_labels(path, store, REGISTRY)
        assert (again.imported, again.already_present, again.changed) == (0, 50, [])
        rows[3]["label"] = "hallucinated"
        write_jsonl(path, rows)
        kept = import_labels(path, store, REGISTRY)
        assert (kept.imported, kept.already_present) == (0, 49)
        assert [p.line for p in kept.changed] == [4]
        assert "--replace" in kept.changed[0].reason
        assert store.conn.execute("SELECT label FROM human_labels WHERE trace_id = 't3'"
                                  ).fetchall() == [("factual",)]
        replaced = import_labels(path, store, REGISTRY, replace=True)
        assert (replaced.imported, replaced.already_present, len(replaced.changed)) == (1, 49, 1)
        assert store.conn.execute("SELECT label FROM human_labels WHERE trace_id = 't3'"
                                  ).fetchall() == [("hallucinated",)]
        assert store.conn.execute("SELECT count(*) FROM human_labels").fetchall() == [(50,)]


def test_several_annotators_per_item(db: Path, tmp_path: Path):
    path = write_csv(tmp_path / "l.csv", ["trace_id", "rubric", "label", "annotator"],
                     [["t1", "relevance", label, who] for label, who in
                      (("relevant", "ann"), ("irrelevant", "bo"), ("relevant", "cy"))])
    with Store(db) as store:
        assert import_labels(path, store, REGISTRY).imported == 3
    assert [(row[3], row[5]) for row in stored_labels(db)] == [
        ("relevant", "ann"), ("irrelevant", "bo"), ("relevant", "cy")]
    assert label_id_for("t1", "relevance", "ann") != label_id_for("t1", "relevance", "bo")


def test_bad_rows_are_rejected_with_their_line_and_reason(db: Path, tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "trace_id,rubric,label,score,annotator,note,extra\n"   # line 1
        "t1,hallucination,factual,,ann,\"a note\nover two lines\",x\n"   # lines 2-3: good
        "t2,hallucinaton,factual,,ann,,\n"                     # 4: unknown rubric
        "t3,hallucination,great,,ann,,\n"                      # 5: off the menu
        "t4,hallucination,,,ann,,\n"                           # 6: neither label nor score
        "t5,hallucination,factual,,,,\n"                       # 7: no annotator
        ",hallucination,factual,,ann,,\n"                      # 8: no id
        "t6,hallucination,factual,1.5,ann,,\n"                 # 9: score out of range
        "t7,faithfulness@v9,faithful,,ann,,\n"                 # 10: unknown version
        "t1,hallucination,hallucinated,,ann,,\n"               # 11: duplicate of line 2
        "t8,hallucination,factual,high,ann,,\n"                # 12: score not a number
        "t9,hallucination,factual,,ann,,,,,\n",                # 13: too many cells
        encoding="utf-8")
    with Store(db) as store:
        result = import_labels(path, store, REGISTRY)
    assert (result.rows, result.imported) == (11, 1)
    reasons = {problem.line: problem.reason for problem in result.rejected}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert "unknown rubric 'hallucinaton'" in reasons[4] and "hallucination (v1, v2)" in reasons[4]
    assert "'great' is not on the menu" in reasons[5] and "factual, hallucinated" in reasons[5]
    assert "neither 'label' nor 'score'" in reasons[6]
    assert "'annotator' is missing" in reasons[7]
    assert "'trace_id' (or 'item_id') is missing" in reasons[8]
    assert "outside 0..1" in reasons[9]
    assert "no version 9" in reasons[10]
    assert "duplicate of line 2" in reasons[11]
    assert "must be a number" in reasons[12]
    assert "cells" in reasons[13]
    assert result.ignored_columns == ["extra"]
    assert stored_labels(db)[0][6] == "a note\nover two lines"


def test_jsonl_errors_and_cli_exit_code(db: Path, tmp_path: Path):
    path = tmp_path / "l.jsonl"
    good = {"trace_id": "t1", "rubric": "refusal", "label": "partial", "annotator": "a"}
    bad_label = {**good, "trace_id": "t2", "label": ["partial"]}
    path.write_text(f"{json.dumps(good)}\n\nnot json\n[\"a list\"]\n{json.dumps(bad_label)}\n",
                    encoding="utf-8")
    result = CliRunner().invoke(cli, ["labels", "import", str(path), "--db", str(db)])
    assert result.exit_code == 1, result.output
    assert "4 rows: 1 imported, 0 already present, 0 changed (kept the stored label), 3 rejected" \
        in result.output
    assert "rejected line 3: not valid JSON" in result.output
    assert "rejected line 4: expected a JSON object, got list" in result.output
    assert "rejected line 5: 'label' must be text" in result.output
    again = CliRunner().invoke(cli, ["labels", "import", str(path), "--db", str(db), "--json"])
    data = json.loads(again.output)
    assert (data["imported"], data["already_present"], len(data["rejected"])) == (0, 1, 3)


def test_a_line_nested_past_the_parser_s_depth_is_a_rejected_row(db: Path, tmp_path: Path):
    """Deeply nested JSON (hostile or broken) is one rejected line, in `labels import` and in
    `agreement --file`, not a RecursionError traceback."""
    path = tmp_path / "deep.jsonl"
    good = {"trace_id": "t1", "rubric": "refusal", "label": "partial", "annotator": "a"}
    path.write_text(f"{json.dumps(good)}\n" + '{"a":' * 100_000 + "1" + "}" * 100_000 + "\n",
                    encoding="utf-8")
    result = CliRunner().invoke(cli, ["labels", "import", str(path), "--db", str(db)])
    assert result.exit_code == 1, result.output
    assert "rejected line 2: not valid JSON" in result.output
    assert [row[0] for row in stored_labels(db)] == ["t1"]
    result = CliRunner().invoke(cli, ["agreement", "--file", str(path), "--a", "label", "--b", "label"])
    assert not isinstance(result.exception, RecursionError), result.output
    assert result.exit_code == 0 and "1 unreadable" in result.output, result.output


def test_format_must_be_known(db: Path, tmp_path: Path):
    path = tmp_path / "labels.txt"
    path.write_text("trace_id,rubric,label,annotator\nt1,refusal,partial,a\n", encoding="utf-8")
    with Store(db) as store:
        with pytest.raises(DatasetError, match="--format csv"):
            import_labels(path, store, REGISTRY)
        assert import_labels(path, store, REGISTRY, fmt="csv").imported == 1


# -- export ----------------------------------------------------------------------------------------

@pytest.fixture
def judged_db(db: Path) -> Path:
    """40 traces judged by `offline` (6 fail), 4 of them failed by a second judge only."""
    evaluations, traces = [], []
    for i in range(40):
        trace_id = f"t{i:02d}"
        traces.append(stored_trace(trace_id, output="=HYPERLINK(\"x\")" if i == 0 else None))
        evaluations.append(evaluation(trace_id, "hallucinated" if i < 6 else "factual"))
    for i in range(6, 10):
        evaluations.append(evaluation(f"t{i:02d}", "hallucinated", judge="other"))
    evaluations.append(evaluation("t-orphan", "factual"))  # a judged trace without its text
    with Store(db) as store:
        store.write_batch(evaluations=evaluations, traces=traces)
    return db


def read_batch(prefix: Path) -> tuple[list[dict], list[dict]]:
    with open(prefix.with_name(prefix.name + ".csv"), newline="", encoding="utf-8") as handle:
        csv_rows = list(csv.DictReader(handle))
    jsonl_rows = [json.loads(line) for line in
                  prefix.with_name(prefix.name + ".jsonl").read_text(encoding="utf-8").splitlines()]
    return csv_rows, jsonl_rows


def test_export_has_every_failure_and_no_verdict(judged_db: Path, tmp_path: Path):
    prefix = tmp_path / "out" / "batch"
    with Store(judged_db) as store:
        result = export_batch(store, REGISTRY, "hallucination", 12, prefix, judge="offline")
    csv_rows, jsonl_rows = read_batch(prefix)
    ids = [row["trace_id"] for row in csv_rows]
    assert ids == [row["trace_id"] for row in jsonl_rows]
    assert len(ids) == 12 == result.total
    failures = {f"t{i:02d}" for i in range(6)}
    assert failures <= set(ids)
    assert result.failures == 6 and result.without_trace == 1
    assert list(csv_rows[0]) == list(EXPORT_COLUMNS) == list(jsonl_rows[0])
    text = "".join(prefix.with_name(prefix.name + ext).read_text() for ext in (".csv", ".jsonl"))
    assert JUDGE_REASONING not in text and "passed" not in text
    to_fill = ("label", "score", "annotator", "note")
    assert all(row[name] == "" for row in csv_rows for name in to_fill)
    assert all(row[name] is None for row in jsonl_rows for name in ("label", "score", "annotator"))
    assert ids != sorted(ids), "rows are shuffled, so failures are not recognizable by position"
    first = next(row for row in csv_rows if row["trace_id"] == "t00")
    assert first["output"].startswith("'=HYPERLINK"), "spreadsheets must not run trace text"
    assert next(r for r in jsonl_rows if r["trace_id"] == "t00")["output"].startswith("=HYPERLINK")


def test_export_priorities_disagreements_and_stratified_passes(judged_db: Path, tmp_path: Path):
    with Store(judged_db) as store:
        everything = export_batch(store, REGISTRY, "hallucination", 100, tmp_path / "all")
        small = export_batch(store, REGISTRY, "hallucination", 8, tmp_path / "small")
        export_batch(store, REGISTRY, "hallucination", 8, tmp_path / "again")
        other_seed = export_batch(store, REGISTRY, "hallucination", 20, tmp_path / "s1", seed=1)
        seed0 = export_batch(store, REGISTRY, "hallucination", 20, tmp_path / "s0")
    # Across both judges, a trace that any judge failed counts as a failure (t00..t09).
    assert (everything.failures, everything.disagreements) == (10, 0)
    assert everything.passes == {"factual": 30}
    assert (small.failures, small.disagreements, small.passes) == (8, 0, {})
    assert read_batch(tmp_path / "small") == read_batch(tmp_path / "again")
    assert read_batch(tmp_path / "s0")[0] != read_batch(tmp_path / "s1")[0]
    assert seed0.total == other_seed.total == 20


def test_export_disagreements_before_passes(db: Path, tmp_path: Path):
    evaluations = [evaluation(f"p{i}", "relevant", rubric="relevance") for i in range(10)]
    evaluations += [evaluation(f"m{i}", "mostly_relevant", rubric="relevance") for i in range(3)]
    evaluations += [evaluation(f"d{i}", "relevant", rubric="relevance") for i in range(2)]
    evaluations += [evaluation(f"d{i}", "mostly_relevant", rubric="relevance", judge="b")
                    for i in range(2)]
    evaluations += [evaluation("f0", "irrelevant", rubric="relevance")]
    unstable = evaluation("u0", "relevant", rubric="relevance")
    evaluations += [unstable.model_copy(update={"stability": 2 / 3})]  # its samples disagreed
    traces = [stored_trace(e.trace_id) for e in evaluations]
    with Store(db) as store:
        store.write_batch(evaluations=evaluations, traces=traces)
        result = export_batch(store, REGISTRY, "relevance@v1", 10, tmp_path / "b")
    assert (result.failures, result.disagreements) == (1, 3)
    assert result.passes == {"mostly_relevant": 3, "relevant": 3}, "even across pass labels"
    assert result.available == {"failures": 1, "disagreements": 3, "pass:mostly_relevant": 3,
                                "pass:relevant": 10}
    rows = read_batch(tmp_path / "b")[0]
    assert {row["rubric"] for row in rows} == {"relevance@v1"}
    assert rows[0]["allowed_labels"] == " | ".join(
        ["relevant", "mostly_relevant", "partially_relevant", "irrelevant"])


def test_filled_batch_imports_back(judged_db: Path, tmp_path: Path):
    prefix = tmp_path / "batch"
    runner = CliRunner()
    result = runner.invoke(cli, ["labels", "export", "--rubric", "hallucination", "--n", "5",
                                 "--out", str(prefix), "--db", str(judged_db)])
    assert result.exit_code == 0, result.output
    assert "wrote 5 items" in result.output
    rows, _ = read_batch(prefix)
    for row in rows:
        row.update(label="factual", annotator="ann")
    path = prefix.with_name("filled.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(cli, ["labels", "import", str(path), "--db", str(judged_db)])
    assert result.exit_code == 0, result.output
    assert "5 rows: 5 imported" in result.output and "ignored columns" not in result.output


def test_export_and_build_compile_no_template(judged_db: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    """Neither command renders a prompt: their rubrics are parsed and checked, not compiled (a
    compile is ~90 % of loading a version)."""
    def compiled(rubric):
        raise AssertionError(f"{rubric.ref} was compiled")

    monkeypatch.setattr(files, "_compiled", compiled)
    runner = CliRunner(env={"EVALUATOR_DATASETS_DIR": str(tmp_path / "datasets")})
    for args in (["labels", "export", "--rubric", "hallucination", "--n", "5",
                  "--out", str(tmp_path / "batch")], ["datasets", "build", "--name", "failures"]):
        result = runner.invoke(cli, [*args, "--db", str(judged_db)])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "datasets" / "failures.jsonl").exists()


def test_export_needs_evaluations(db: Path, tmp_path: Path):
    with Store(db) as store:
        with pytest.raises(DatasetError, match="evaluator run --rubric refusal"):
            export_batch(store, REGISTRY, "refusal", 5, tmp_path / "x")


# -- CSV formula escaping (issue 13, low) ----------------------------------------------------------

FORMULA_IDS = ["-1", "-A1", "-cmd:calc/x", "plain-1"]  # ids may start with '-' (the id pattern)


def test_every_exported_csv_cell_is_formula_escaped_and_imports_back(db: Path, tmp_path: Path):
    evaluations = [evaluation(trace_id, "hallucinated" if i % 2 else "factual")
                   for i, trace_id in enumerate(FORMULA_IDS)]
    traces = [stored_trace(trace_id, output="@SUM(A1)") for trace_id in FORMULA_IDS]
    with Store(db) as store:
        store.write_batch(evaluations=evaluations, traces=traces)
    prefix = tmp_path / "batch"
    runner = CliRunner()
    result = runner.invoke(cli, ["labels", "export", "--rubric", "hallucination", "--n", "10",
                                 "--out", str(prefix), "--db", str(db)])
    assert result.exit_code == 0, result.output
    with open(prefix.with_name("batch.csv"), newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert cells and not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    rows, _ = read_batch(prefix)
    for row in rows:
        row.update(label="factual", annotator="=ann", note="-1 for this")
    path = prefix.with_name("filled.csv")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(cli, ["labels", "import", str(path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    stored = stored_labels(db)
    assert {row[0] for row in stored} == set(FORMULA_IDS)
    assert {(row[5], row[6]) for row in stored} == {("=ann", "-1 for this")}


@given(st.text(max_size=20))
def test_csv_escaping_round_trips(text: str):
    escaped = csv_safe(text)
    assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert csv_unescape(escaped) == text


def test_export_records_each_items_stratum_and_selection_probability(judged_db: Path,
                                                                     tmp_path: Path):
    with Store(judged_db) as store:
        result = export_batch(store, REGISTRY, "hallucination", 12, tmp_path / "b",
                              judge="offline")
        rows = store.conn.execute(
            "SELECT batch_id, trace_id, rubric, rubric_version, judge, stratum, stratum_size,"
            " stratum_taken, selection_probability FROM label_batch_items").fetchall()
    csv_rows, _ = read_batch(tmp_path / "b")
    assert sorted(row[1] for row in rows) == sorted(row["trace_id"] for row in csv_rows)
    assert {row[0] for row in rows} == {result.batch_id}
    strata = {row[1]: row[5:] for row in rows}
    assert {t: strata[t] for t in strata if strata[t][0] == "failures"} == {
        f"t{i:02d}": ("failures", 6, 6, 1.0) for i in range(6)}
    passes = [s for s in strata.values() if s[0] == "pass:factual"]
    assert passes == [("pass:factual", 34, 6, pytest.approx(6 / 34))] * 6
    assert result.strata == {
        "failures": {"eligible": 6, "taken": 6, "selection_probability": 1.0},
        "pass:factual": {"eligible": 34, "taken": 6, "selection_probability": 6 / 34}}
    assert {row[2:5] for row in rows} == {("hallucination", None, "offline")}
    text = (tmp_path / "b.csv").read_text() + (tmp_path / "b.jsonl").read_text()
    assert "failures" not in text and "stratum" not in text, "annotators see no verdict"


def test_a_batch_item_has_every_column_of_its_table():
    """Items are recorded as structs of the table's columns (no Arrow table): a column added by
    a migration must be added to BatchItem too."""
    assert BatchItem._fields == tuple(column_names("label_batch_items"))


def test_export_draws_uniformly_within_each_stratum(db: Path, tmp_path: Path):
    """The draw happens in the store (seeded order per stratum): across seeds, every pass is
    taken about equally often, at the selection probability the batch records."""
    evaluations = [evaluation(f"f{i}", "hallucinated") for i in range(4)]
    evaluations += [evaluation(f"p{i:02d}", "factual") for i in range(12)]
    seeds = 30
    taken: dict[str, int] = dict.fromkeys((e.trace_id for e in evaluations[4:]), 0)
    with Store(db) as store:
        store.write_batch(evaluations=evaluations, traces=[stored_trace(e.trace_id)
                                                           for e in evaluations])
        for seed in range(seeds):
            result = export_batch(store, REGISTRY, "hallucination", 8, tmp_path / f"s{seed}",
                                  seed=seed)
            assert result.strata == {
                "failures": {"eligible": 4, "taken": 4, "selection_probability": 1.0},
                "pass:factual": {"eligible": 12, "taken": 4, "selection_probability": 1 / 3}}
            for row in read_batch(tmp_path / f"s{seed}")[0]:
                if row["trace_id"].startswith("p"):
                    taken[row["trace_id"]] += 1
        recorded = store.conn.execute(
            "SELECT stratum, min(selection_probability), max(selection_probability), count(*)"
            " FROM label_batch_items GROUP BY ALL ORDER BY ALL").fetchall()
    assert recorded == [("failures", 1.0, 1.0, 4 * seeds),
                        ("pass:factual", 1 / 3, 1 / 3, 4 * seeds)]
    assert scipy.stats.chisquare(list(taken.values())).pvalue > 0.01
    assert min(taken.values()) > 0
