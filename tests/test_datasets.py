"""Regression datasets: build from stored failures (dedup, append, manifest hash, label sources,
PII), line-numbered validation, and the `evaluator datasets` commands."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from evaluator.core.errors import ConfigError, DatasetError
from evaluator.core.records import Evaluation, Trace, evaluation_id_for, utcnow
from evaluator.core.rows import StoredTrace
from evaluator.core.settings import PROJECT_ROOT
from evaluator.core.since import parse_since
from evaluator.humans.labels import import_labels
from evaluator.pii import PiiConfig, PiiMasker
from evaluator.regression.dataset_build import BuildOptions, build_dataset
from evaluator.regression.datasets import check_dataset, content_hash, read_dataset, read_manifest
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.store.scope import Scope

REGISTRY = RubricRegistry.load(PROJECT_ROOT / "rubrics")


def verdict(trace_id: str, rubric: str, label: str, judge: str = "offline",
            days_ago: float = 0.0) -> Evaluation:
    found = REGISTRY.get(rubric)
    score = found.score_for(label)
    return Evaluation(
        evaluation_id=evaluation_id_for(trace_id, found.content_hash, judge), trace_id=trace_id,
        rubric=rubric, rubric_version=found.version, rubric_hash=found.content_hash, judge=judge,
        judge_hash=judge, label=label, score=score, passed=found.passes(score), status="scored",
        sample_reason="random", sample_weight=10.0, created_at=utcnow() - timedelta(days=days_ago))


def trace(trace_id: str, question: str, output: str = "Plan A includes 10 GB.") -> StoredTrace:
    return StoredTrace(Trace(trace_id=trace_id, input=question, context=["Plan A includes 10 GB."],
                             output=output, system="Answer from the context."), "random", 10.0)


def store_traces(db: Path, rows: list[tuple[StoredTrace, list[Evaluation]]]) -> None:
    Store.write_once(db, traces=[t for t, _ in rows], evaluations=[e for _, es in rows for e in es])


def options(db: Path, **changes) -> BuildOptions:
    return BuildOptions(**{"name": "regressions", "db": db, **changes})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "evaluator.duckdb"
    store_traces(path, [
        (trace("t1", "What does plan A include?"),
         [verdict("t1", "hallucination", "hallucinated"), verdict("t1", "relevance", "relevant")]),
        (trace("t2", "What does plan A include?", "Plan A includes 99 GB."),  # same input as t1
         [verdict("t2", "hallucination", "hallucinated")]),
        (trace("t3", "Is plan B cheaper?"), [verdict("t3", "relevance", "irrelevant", days_ago=10)]),
        (trace("t4", "How do I reset my password?"),
         [verdict("t4", "hallucination", "factual"), verdict("t4", "relevance", "relevant")]),
    ])
    return path


def test_failures_become_items_deduplicated_by_input(db: Path, tmp_path: Path):
    result = build_dataset(options(db), tmp_path, REGISTRY)
    items = read_dataset(result.path)
    assert result.candidates == 3 and result.added == 2 and result.duplicates == 1
    assert [item.metadata["source_trace_id"] for item in items] == ["t3", "t1"]  # oldest first
    first = items[1]
    assert first.input == "What does plan A include?" and first.output == "Plan A includes 10 GB."
    assert first.context == ["Plan A includes 10 GB."]
    assert first.expected_labels == {"hallucination": "hallucinated", "relevance": "relevant"}
    assert first.label_source == "judge"
    assert first.metadata["failed"] == ["hallucination"] and first.metadata["judge"] == "offline"
    assert first.metadata["system"] == "Answer from the context."
    assert first.id == first.input_hash[:16]


def test_manifest_hash_is_the_file_hash_and_records_the_build(db: Path, tmp_path: Path):
    result = build_dataset(options(db, rubric="hallucination", label_source="judge"), tmp_path,
                           REGISTRY)
    manifest = read_manifest(result.path)
    assert manifest == result.manifest
    assert manifest.content_hash == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert manifest.content_hash == content_hash(read_dataset(result.path))
    assert manifest.version == 1 and manifest.item_count == 1 and manifest.name == "regressions"
    assert manifest.built_from == {"db": str(db), "rubric": "hallucination", "since": None,
                                   "label_source": "judge", "limit": None,
                                   "scope": {"kind": "production", "run_id": None}}
    again = build_dataset(options(db, rubric="hallucination", label_source="judge"), tmp_path,
                          REGISTRY)
    assert again.added == 0 and again.manifest.version == 1  # nothing new: same version
    assert check_dataset(result.path).ok


def test_rebuild_appends_new_items_and_never_drops_earlier_ones(db: Path, tmp_path: Path):
    first = build_dataset(options(db), tmp_path, REGISTRY)
    before = first.path.read_text(encoding="utf-8")
    other_db = tmp_path / "other.duckdb"  # t1 and t3 are not in this store at all
    store_traces(other_db, [(trace("t9", "Can I export my data?"),
                             [verdict("t9", "refusal", "refused")])])
    second = build_dataset(options(other_db), tmp_path, REGISTRY)
    after = second.path.read_text(encoding="utf-8")
    assert after.startswith(before) and second.kept == 2 and second.added == 1
    assert [i.metadata["source_trace_id"] for i in read_dataset(second.path)] == ["t3", "t1", "t9"]
    manifest = second.manifest
    assert manifest.version == 2 and manifest.item_count == 3
    assert [(h.version, h.added) for h in manifest.history] == [(1, 2), (2, 1)]
    assert manifest.built_from["db"] == str(other_db)


def test_limit_caps_new_items_and_says_how_many_were_left_out(db: Path, tmp_path: Path):
    result = build_dataset(options(db, limit=1), tmp_path, REGISTRY)
    assert result.added == 1 and result.left_out == 1
    assert result.manifest.history[-1].left_out == 1
    rest = build_dataset(options(db, limit=1), tmp_path, REGISTRY)
    assert rest.added == 1 and rest.left_out == 0 and rest.manifest.item_count == 2


def test_limit_reads_and_masks_only_the_items_it_adds(tmp_path: Path, monkeypatch):
    """Selection, order and dedup run in the store: a build stops at its limit without masking
    the rest, and still counts what it left out. Inputs masked at ingest carry their hash, so an
    input the dataset already has is a duplicate there too, read or not."""
    db = tmp_path / "many.duckdb"
    masker = PiiMasker(PiiConfig())
    rows = []
    for i, question in enumerate(["Q0?", "Q1?", "Q0?", "Q2?", "Q3?", "Q1?", "Q4?"]):
        stored = trace(f"m{i}", question)
        stored = StoredTrace(masker.mask_trace(stored.trace), "random", 10.0)  # as at ingest
        rows.append((stored, [verdict(f"m{i}", "hallucination", "hallucinated",
                                      days_ago=10 - i)]))
    store_traces(db, rows)
    first = build_dataset(options(db, limit=2), tmp_path, REGISTRY)
    assert [i.metadata["source_trace_id"] for i in read_dataset(first.path)] == ["m0", "m1"]
    assert (first.candidates, first.added, first.duplicates, first.left_out) == (7, 2, 2, 3)

    masked = []
    original = PiiMasker.mask_trace
    monkeypatch.setattr(PiiMasker, "mask_trace",
                        lambda self, t: masked.append(t.trace_id) or original(self, t))
    second = build_dataset(options(db, limit=1), tmp_path, REGISTRY)
    assert masked == ["m3"], "Q0 and Q1 are in the dataset: the store skips them unread"
    assert (second.candidates, second.added, second.duplicates, second.left_out) == (7, 1, 4, 2)


def test_pages_continue_after_the_last_candidate_read(tmp_path: Path, monkeypatch):
    """A build reads new candidates a page at a time, each page after the last trace read
    (oldest failure, then trace id): failures judged at the same moment are neither skipped
    nor read twice at a page's edge, and the order is the one a single page gives."""
    from evaluator.regression import dataset_build

    db = tmp_path / "pages.duckdb"
    at = utcnow() - timedelta(days=1)
    rows = []
    for i in range(7):  # t0..t6, the last four failing at one moment; t5 repeats t0's input
        stored = trace(f"t{i}", f"Question {0 if i == 5 else i}?")
        found = verdict(f"t{i}", "hallucination", "hallucinated")
        rows.append((stored, [found.model_copy(
            update={"created_at": at + timedelta(seconds=min(i, 3))})]))
    store_traces(db, rows)
    whole = build_dataset(options(db, name="whole"), tmp_path, REGISTRY)
    monkeypatch.setattr(dataset_build, "PAGE", 2)
    paged = build_dataset(options(db, name="paged"), tmp_path, REGISTRY)
    ids = [item.metadata["source_trace_id"] for item in read_dataset(paged.path)]
    assert ids == ["t0", "t1", "t2", "t3", "t4", "t6"]
    assert ids == [item.metadata["source_trace_id"] for item in read_dataset(whole.path)]
    assert (paged.candidates, paged.added, paged.duplicates) == (7, 6, 1)


def test_rubric_and_since_filters(db: Path, tmp_path: Path):
    relevance = build_dataset(options(db, name="rel", rubric="relevance@v1"), tmp_path, REGISTRY)
    assert [i.metadata["source_trace_id"] for i in read_dataset(relevance.path)] == ["t3"]
    recent = build_dataset(options(db, name="recent", since="7d"), tmp_path, REGISTRY)
    assert [i.metadata["source_trace_id"] for i in read_dataset(recent.path)] == ["t1"]
    nothing = build_dataset(options(db, name="none", rubric="refusal"), tmp_path, REGISTRY)
    assert nothing.manifest is None and not nothing.path.exists() and nothing.notes
    with pytest.raises(ConfigError, match="duration"):
        parse_since("last week")
    assert parse_since("2026-01-31").tzinfo is not None


def test_human_labels_confirm_override_and_mark_items(db: Path, tmp_path: Path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(row) + "\n" for row in [
        {"trace_id": "t1", "rubric": "hallucination", "label": "factual", "annotator": "ann"},
        {"trace_id": "t4", "rubric": "relevance", "label": "irrelevant", "annotator": "ann"},
        {"trace_id": "t4", "rubric": "relevance", "label": "irrelevant", "annotator": "bob"},
        {"trace_id": "t4", "rubric": "relevance", "label": "relevant", "annotator": "cy"},
    ]), encoding="utf-8")
    with Store(db) as store:
        assert import_labels(labels, store, REGISTRY).imported == 4
    both = read_dataset(build_dataset(options(db, name="both"), tmp_path, REGISTRY).path)
    by_trace = {item.metadata["source_trace_id"]: item for item in both}
    # t1's judge failure was overruled by a person; t2 (same input) now stands for it.
    assert set(by_trace) == {"t2", "t3", "t4"}
    assert by_trace["t4"].label_source == "human"  # majority of annotators: irrelevant
    assert by_trace["t4"].expected_labels == {"hallucination": "factual", "relevance": "irrelevant"}
    assert by_trace["t4"].metadata["human_labeled"] == ["relevance"]
    assert by_trace["t3"].label_source == "judge"
    human = read_dataset(build_dataset(options(db, name="human", label_source="human"),
                                       tmp_path, REGISTRY).path)
    assert [(i.metadata["source_trace_id"], i.expected_labels) for i in human] == [
        ("t4", {"relevance": "irrelevant"})]
    judge = read_dataset(build_dataset(options(db, name="judge", label_source="judge"),
                                       tmp_path, REGISTRY).path)
    assert {i.metadata["source_trace_id"] for i in judge} == {"t1", "t3"}


def test_human_ties_go_to_the_latest_import_and_a_given_score_decides(db: Path, tmp_path: Path):
    """People's verdict on a (trace, rubric): the label most annotators gave, a tie going to the
    latest import; its own score, when given, decides pass or fail against that rubric
    version's threshold (else the label's score on the rubric)."""
    def imported(*rows: dict) -> None:
        path = tmp_path / "labels.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        with Store(db) as store:
            import_labels(path, store, REGISTRY)

    def built(name: str) -> dict[str, tuple]:
        result = build_dataset(options(db, name=name), tmp_path, REGISTRY)
        return {i.metadata["source_trace_id"]: (i.label_source, i.expected_labels)
                for i in read_dataset(result.path)}

    imported({"trace_id": "t4", "rubric": "relevance", "label": "irrelevant", "annotator": "ann"},
             {"trace_id": "t3", "rubric": "relevance@v1", "label": "irrelevant", "score": 0.9,
              "annotator": "ann"})
    imported({"trace_id": "t4", "rubric": "relevance", "label": "relevant", "annotator": "bob"})
    first = built("tie")
    assert "t4" not in first, "one against one: the latest import (relevant) stands"
    assert "t3" not in first, "people's own score 0.9 passes, whatever the label"
    assert set(first) == {"t1"}
    imported({"trace_id": "t4", "rubric": "relevance", "label": "irrelevant", "annotator": "cy"})
    assert built("majority")["t4"] == ("human", {"hallucination": "factual",
                                                 "relevance": "irrelevant"})


def test_items_are_pii_masked(tmp_path: Path):
    db = tmp_path / "pii.duckdb"
    leaked = trace("p1", "Email me at jane.doe@example.com please",
                   "Sure, I wrote to jane.doe@example.com and +1 415 555 0100.")
    store_traces(db, [(leaked, [verdict("p1", "hallucination", "hallucinated")])])
    text = build_dataset(options(db), tmp_path, REGISTRY).path.read_text(encoding="utf-8")
    assert "jane.doe@example.com" not in text and "555 0100" not in text
    assert "<EMAIL_1>" in text


def test_latest_verdicts_give_the_builds_that_ranking_the_evaluations_gives(tmp_path: Path,
                                                                          monkeypatch):
    """Without the lake, production and all-runs builds read each pair's newest verdict from
    latest_verdicts (one row per rubric version and judge) instead of ranking every evaluation:
    the same items, counts and order, whatever version or judge is newest, at equal times too."""
    from evaluator.store import failure_queries

    db = tmp_path / "mixed.duckdb"
    now = utcnow()

    def at(found: Evaluation, days_ago: float, run_id: str | None = None) -> Evaluation:
        return found.model_copy(update={"created_at": now - timedelta(days=days_ago),
                                        "run_id": run_id})

    with Store(db) as store:
        store.start_run("nightly", "run", {})
        store.start_run("replayed", "replay", {})
    store_traces(db, [
        # a newer pass by another judge hides an older failure
        (trace("p1", "Q1?"), [at(verdict("p1", "hallucination@v1", "hallucinated", "a"), 3),
                              at(verdict("p1", "hallucination@v1", "factual", "b"), 1)]),
        # a newer version fails after the older one passed
        (trace("p2", "Q2?"), [at(verdict("p2", "hallucination@v1", "factual"), 3),
                              at(verdict("p2", "hallucination@v2", "hallucinated"), 1)]),
        # two judges fail: the newer failure is the pair's
        (trace("p3", "Q3?"), [at(verdict("p3", "relevance", "irrelevant", "a"), 2),
                              at(verdict("p3", "relevance", "irrelevant", "b"), 0.5),
                              at(verdict("p3", "hallucination", "factual"), 0.2)]),
        # a pass and a failure at the same moment: the larger evaluation id is the newer
        (trace("p4", "Q4?"), [at(verdict("p4", "hallucination", "hallucinated", "a"), 2),
                              at(verdict("p4", "hallucination", "factual", "b"), 2),
                              at(verdict("p4", "faithfulness", "unfaithful", "c"), 2),
                              at(verdict("p4", "faithfulness", "faithful", "d"), 2)]),
        # an `evaluator run` fails what the worker passed earlier (both production traffic)
        (trace("p5", "Q5?"), [at(verdict("p5", "faithfulness", "faithful"), 2),
                              at(verdict("p5", "faithfulness", "unfaithful", "b"), 1, "nightly")]),
        (trace("p6", "Q2?"), [at(verdict("p6", "hallucination@v1", "hallucinated"), 4)]),
        (trace("p7", "Q7?"), [at(verdict("p7", "refusal", "refused"), 5),
                              at(verdict("p7", "relevance", "irrelevant", "b"), 6, "nightly")]),
    ])
    Store.write_once(db, evaluations=[at(verdict("replayed/x", "hallucination", "hallucinated"), 1,
                                         "replayed")])
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"trace_id": "p7", "rubric": "refusal", "label": "complied",
                                  "annotator": "ann"}) + "\n", encoding="utf-8")
    with Store(db) as store:
        import_labels(labels, store, REGISTRY)

    def built(ranked: bool, name: str, **changes) -> tuple:
        monkeypatch.setattr(failure_queries, "_ranks_evaluations", lambda store, scope: ranked)
        result = build_dataset(options(db, name=f"{name}-{ranked}", **changes), tmp_path, REGISTRY)
        items = read_dataset(result.path) if result.path.exists() else []
        return ([(i.metadata["source_trace_id"], i.expected_labels, i.label_source) for i in items],
                result.candidates, result.duplicates, result.left_out)

    for name, changes in {
        "all": {}, "judge": {"label_source": "judge"}, "human": {"label_source": "human"},
        "v1": {"rubric": "hallucination@v1"}, "any": {"rubric": "hallucination"},
        "recent": {"since": "36h"}, "runs": {"scope": Scope.everything()},
        "nightly": {"scope": Scope.run("nightly")}, "limit": {"limit": 1},
    }.items():
        assert built(True, name, **changes) == built(False, name, **changes), name
    # p1: hidden by a newer pass; p2 repeats p6's older input
    assert [row[0] for row in built(False, "check")[0]] == ["p7", "p6", "p4", "p5", "p3"]


def test_a_build_never_overwrites_a_dataset_it_cannot_read(db: Path, tmp_path: Path):
    path = tmp_path / "regressions.jsonl"
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="never overwrites"):
        build_dataset(options(db), tmp_path, REGISTRY)
    assert path.read_text(encoding="utf-8") == "{not json\n"


GOOD = {"id": "a", "input": "Q?", "output": "A.", "expected_labels": {"relevance": "relevant"},
        "label_source": "human"}


def test_validate_lists_every_bad_line_with_its_number(tmp_path: Path):
    path = tmp_path / "hand.jsonl"
    lines = [
        json.dumps(GOOD),
        "{broken",
        json.dumps({**GOOD, "id": "b", "label_source": "crowd"}),
        "",
        json.dumps({**GOOD}),
        json.dumps({**GOOD, "id": "c", "expected_labels": {"relevance": "great"}}),
        json.dumps({**GOOD, "id": "d", "expected_labels": {"tone": "warm"}}),
        json.dumps({**GOOD, "id": "e", "input": [{"role": "user", "content": "Hi"}], "extra": 1}),
        json.dumps({**GOOD, "id": "f", "input": ""}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    check = check_dataset(path, REGISTRY)
    problems = {error.line: error.message for error in check.errors}
    assert set(problems) == {2, 3, 5, 6, 7, 8, 9}
    assert problems[2] == "not valid JSON"
    assert "label_source" in problems[3]
    assert problems[5] == "duplicate id 'a' (first on line 1)"
    assert "'great' is not a label of relevance@v1" in problems[6]
    assert "no rubric named 'tone'" in problems[7]
    assert "extra" in problems[8] and "input" in problems[9]
    with pytest.raises(DatasetError, match="5 invalid line"):  # labels need the rubrics
        read_dataset(path)


def test_validate_flags_a_manifest_that_no_longer_matches(db: Path, tmp_path: Path):
    path = build_dataset(options(db), tmp_path, REGISTRY).path
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(GOOD) + "\n")
    check = check_dataset(path, REGISTRY)
    assert not check.errors and "does not match" in check.manifest_problem and not check.ok


def evaluator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluator", *args], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=120)


def test_datasets_commands(db: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EVALUATOR_DATASETS_DIR", str(tmp_path))  # the subprocesses inherit it
    built = evaluator("datasets", "build", "--name", "cli", "--db", str(db), "--limit", "1")
    assert built.returncode == 0, built.stderr
    assert "1 new items added" in built.stdout and "1 left out by --limit" in built.stdout
    listed = evaluator("datasets", "list")
    assert "cli" in listed.stdout and listed.returncode == 0
    shown = evaluator("datasets", "show", "cli")
    assert "version 1, 1 items" in shown.stdout and "label sources: judge 1" in shown.stdout
    assert evaluator("datasets", "validate", "cli").returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n{oops\n", encoding="utf-8")
    invalid = evaluator("datasets", "validate", str(bad))
    assert invalid.returncode == 2
    assert f"{bad}:2: not valid JSON" in invalid.stdout
    assert invalid.stderr.strip().count("\n") == 0 and "1 problem(s)" in invalid.stderr


def test_a_utf8_byte_order_mark_does_not_make_the_first_item_invalid(tmp_path: Path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "input": "q", "output": "o", "label_source": "human"}\r\n')
    check = check_dataset(path)
    assert check.ok and [item.id for item in check.items] == ["a"], check.errors
