"""Replay: re-judging stored outputs, regenerating them with a callable or an OpenAI-compatible
target (a local server), target failures, bounded concurrency, Ctrl-C and --resume, and
zero judge calls when an unchanged dataset is replayed with a deterministic judge."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from evaluator.core.errors import ConfigError
from evaluator.core.settings import Settings
from evaluator.regression.datasets import DatasetItem, content_hash, write_dataset
from evaluator.regression.replay import replay_trace_id, resume_replay, start_replay
from evaluator.regression.replay_writer import ReplayWriter
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.store.replay_queries import item_counts
from tests.support.openai_server import OpenAIServer

RUBRICS = 5
JUDGED_RUBRICS = RUBRICS - 1
"""Every rubric but correctness judges the items (they carry no reference answer)."""


def make_items(n: int) -> list[DatasetItem]:
    items = []
    for i in range(n):
        question = f"What does plan {i} include?"
        items.append(DatasetItem(
            id=f"item-{i:03d}",
            input=question if i % 3 else [{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello!"},
                                          {"role": "user", "content": question}],
            context=[f"Plan {i} includes {i} GB of storage."] if i % 5 else [],
            output=f"Plan {i} includes {i} GB of storage.",
            expected_labels={"hallucination": "factual"}, label_source="judge",
            metadata={"source_trace_id": f"trace-{i}", "system": "Answer from the context."}))
    return items


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "regressions.jsonl"
    write_dataset(path, make_items(12))
    return path


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env()


def app_module(tmp_path: Path, monkeypatch, source: str) -> str:
    """Write the app under test as an importable module; returns its name."""
    name = f"replay_app_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def rows(db: Path, sql: str, *params) -> list[tuple]:
    with Store(db, read_only=True) as store:
        return store.conn.execute(sql, list(params)).fetchall()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_replay_rejudges_stored_outputs_and_records_a_manifest(dataset: Path, tmp_path: Path,
                                                                monkeypatch, settings: Settings):
    app = tmp_path / "app"  # the app under test's checkout, where replay runs
    app.mkdir()
    git(app, "init", "-q")
    (app / "app.py").write_text("VERSION = 1\n")
    git(app, "add", "app.py")
    git(app, "commit", "-qm", "app")
    monkeypatch.chdir(app)
    db = tmp_path / "replay.duckdb"
    report = start_replay(dataset, db, settings, judge_name="offline", run_id="r1")
    assert report.status == "completed" and report.total == report.done == 12
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations(run_id="r1")
        run = store.run("r1")
    assert len(evaluations) == 12 * RUBRICS
    assert {e.trace_id for e in evaluations} == {replay_trace_id("r1", f"item-{i:03d}")
                                                 for i in range(12)}
    skipped = [e for e in evaluations if e.status == "skipped"]
    assert Counter(e.rubric for e in skipped) == {"faithfulness": 3,  # no context
                                                  "correctness": 12}  # no reference answer
    assert run.kind == "replay" and run.status == "completed"
    manifest = run.manifest
    assert manifest["git"] == {"commit": git(app, "rev-parse", "HEAD"), "dirty": False}
    assert manifest["judge"]["name"] == "offline" and manifest["judge"]["hash"]
    assert set(manifest["rubrics"]) == {rubric.ref for rubric in RubricRegistry.load(
        Settings.from_env().rubrics_dir).latest()}
    assert manifest["dataset"]["content_hash"] == content_hash(make_items(12))
    assert manifest["dataset"]["version"] == 1 and manifest["target"] is None
    assert rows(db, "SELECT count(*) FROM replay_items WHERE status = 'done' AND output IS NULL"
                ) == [(12,)]
    (app / "app.py").write_text("VERSION = 2\n")
    start_replay(dataset, db, settings, ["refusal"], "offline", run_id="r2")
    with Store(db, read_only=True) as store:
        assert store.run("r2").manifest["git"]["dirty"] is True


CALLABLE_APP = """
def answer(question):
    text = question if isinstance(question, str) else question[-1]["content"]
    if "plan 4 " in text:
        raise RuntimeError("the app crashed")
    if "plan 7 " in text:
        return {"output": "Plan 7 includes 70 GB.", "context": ["Plan 7 includes 70 GB."]}
    return "I'm sorry, I can't help with that."
"""


def test_replay_with_a_callable_target_judges_the_new_outputs(dataset: Path, tmp_path: Path,
                                                              monkeypatch, settings: Settings):
    module = app_module(tmp_path, monkeypatch, CALLABLE_APP)
    db = tmp_path / "replay.duckdb"
    report = start_replay(dataset, db, settings, ["refusal", "faithfulness"], "offline",
                          target=f"{module}:answer", run_id="r1")
    assert report.status == "completed" and report.target_errors == 1
    outputs = dict(rows(db, "SELECT item_id, output FROM replay_items WHERE run_id = 'r1'"))
    assert outputs["item-000"] == "I'm sorry, I can't help with that."
    assert outputs["item-007"] == "Plan 7 includes 70 GB." and outputs["item-004"] is None
    with Store(db, read_only=True) as store:
        refusals = {e.trace_id.split("/")[1]: e for e in store.evaluations(run_id="r1",
                                                                          rubric="refusal")}
        faithful = store.evaluations(trace_id="r1/item-007", rubric="faithfulness")[0]
    assert refusals["item-000"].label == "refused" and refusals["item-007"].label == "complied"
    crashed = refusals["item-004"]
    assert crashed.status == "error" and "the app crashed" in crashed.reason
    assert faithful.label == "faithful"  # judged against the context the app returned


def test_replay_with_an_openai_compatible_target(dataset: Path, tmp_path: Path,
                                                 settings: Settings):
    db = tmp_path / "replay.duckdb"
    with OpenAIServer(latency_ms=30) as server:
        report = start_replay(dataset, db, settings, ["relevance"], "offline",
                              target=f"openai:app-under-test@{server.base_url}", concurrency=3,
                              run_id="r1")
        stats = server.stats
    assert report.status == "completed" and report.target_errors == 0
    assert stats.total == 12 and stats.by_status == {200: 12}
    assert stats.max_in_flight <= 3  # --concurrency bounds the items in flight
    outputs = [o for (o,) in rows(db, "SELECT output FROM replay_items")]
    assert all(o.startswith("Reasoning: ") and o.endswith("Label: pass") for o in outputs)
    assert rows(db, "SELECT count(*) FROM evaluations WHERE run_id = 'r1' AND status = 'scored'"
                ) == [(12,)]


def test_bad_target_specs_say_how_to_fix_them(dataset: Path, tmp_path: Path, settings: Settings):
    db = tmp_path / "replay.duckdb"
    for spec, message in (("no_colon", "module:function"), ("no_such_module_x:f", "cannot import"),
                          ("os:no_such_function", "has no"),
                          ("openai:model@not-a-url", "openai:MODEL@BASE_URL")):
        with pytest.raises(ConfigError, match=message):
            start_replay(dataset, db, settings, target=spec)


INTERRUPTING_APP = """
import asyncio, signal
CALLS = []

async def answer(question):
    CALLS.append(question)
    if len(CALLS) == 7:
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C does
    await asyncio.sleep(0.005)
    return "Plan 1 includes 1 GB of storage."
"""


def test_ctrl_c_leaves_a_resumable_run_and_resume_does_only_the_rest(
        dataset: Path, tmp_path: Path, monkeypatch, settings: Settings):
    module = app_module(tmp_path, monkeypatch, INTERRUPTING_APP)
    db = tmp_path / "replay.duckdb"
    first = start_replay(dataset, db, settings, ["hallucination"], "offline",
                         target=f"{module}:answer", concurrency=2, run_id="r1")
    assert first.status == "interrupted" and 0 < first.done < 12
    with Store(db, read_only=True) as store:
        assert store.run("r1").status == "interrupted"
        assert len(store.evaluations(run_id="r1")) == first.done
    calls_before = len(sys.modules[module].CALLS)
    second = resume_replay("r1", db, settings)
    assert second.status == "completed" and second.done == 12
    assert second.done_this_session == 12 - first.done
    assert len(sys.modules[module].CALLS) - calls_before == 12 - first.done
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations(run_id="r1")
        assert store.run("r1").status == "completed"
        assert item_counts(store, "r1").done == 12
    assert len(evaluations) == 12 == len({e.trace_id for e in evaluations})
    with pytest.raises(ConfigError, match="already complete"):
        resume_replay("r1", db, settings)


SLOW_APP = """
import pathlib, time

def answer(question):
    pathlib.Path("started").touch()
    time.sleep(0.1)
    return "Plan 1 includes 1 GB of storage."
"""


def test_cli_ctrl_c_exits_130_with_the_resume_command(dataset: Path, tmp_path: Path):
    (tmp_path / "slow_app.py").write_text(SLOW_APP, encoding="utf-8")
    db = tmp_path / "cli.duckdb"
    command = [sys.executable, "-m", "evaluator", "replay", str(dataset), "--db", str(db),
               "--judge", "offline", "--target", "slow_app:answer", "--concurrency", "1",
               "--run-id", "cli-run"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.25)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"evaluator replay --resume cli-run --db {db}" in stderr
    resumed = subprocess.run([sys.executable, "-m", "evaluator", "replay", "--resume", "cli-run",
                              "--db", str(db)], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "12/12 items" in resumed.stdout


@pytest.fixture
def llm_settings(tmp_path: Path, monkeypatch):
    def make(server: OpenAIServer) -> Settings:
        judges = tmp_path / "judges"
        judges.mkdir(exist_ok=True)
        (judges / "local-test.yaml").write_text(
            f"kind: litellm\nmodel: openai/judge-test\napi_base: {server.base_url}\n"
            "api_key_env: EVALUATOR_TEST_JUDGE_KEY\nparams: {temperature: 0}\n"
            "limits: {max_in_flight: 16, timeout_s: 5, max_attempts: 2}\n", encoding="utf-8")
        monkeypatch.setenv("EVALUATOR_TEST_JUDGE_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(judges))
        return Settings.from_env(judges_dir=judges)
    return make


def test_resume_refuses_a_judge_that_changed(dataset: Path, tmp_path: Path, llm_settings):
    db = tmp_path / "replay.duckdb"
    with OpenAIServer() as server:
        settings = llm_settings(server)
        start_replay(dataset, db, settings, ["relevance"], "local-test", run_id="r1")
        with Store(db) as store:
            store.conn.execute("UPDATE runs SET status = 'interrupted'")
        config = settings.judges_dir / "local-test.yaml"
        config.write_text(config.read_text().replace("temperature: 0", "temperature: 0.7"))
        with pytest.raises(ConfigError, match="judge of replay r1 changed"):
            resume_replay("r1", db, settings)


def test_unchanged_replay_makes_zero_judge_calls(dataset: Path, tmp_path: Path, llm_settings,
                                                 monkeypatch):
    monkeypatch.setenv("EVALUATOR_JUDGE_CACHE", str(tmp_path / "judge-cache.sqlite"))
    db = tmp_path / "replay.duckdb"
    with OpenAIServer() as server:
        settings = llm_settings(server)
        first = start_replay(dataset, db, settings, judge_name="local-test", run_id="first")
        calls = server.stats.total
        assert calls == first.judge_calls == 12 * JUDGED_RUBRICS - 3  # faithfulness skips 3 items
        assert sum(s.scored for s in first.summaries) == calls
        # Each replay builds its judges' runtime from settings: only the cache file carries over.
        second = start_replay(dataset, db, settings, judge_name="local-test", run_id="second")
        assert second.status == "completed"
        assert server.stats.total == calls  # not one new HTTP request
        assert second.judge_calls == 0 and second.cached == calls
    with Store(db, read_only=True) as store:
        labels = {run: sorted((e.trace_id.split("/")[1], e.rubric, e.label)
                              for e in store.evaluations(run_id=run)) for run in ("first", "second")}
    assert labels["first"] == labels["second"]
    with Store(db, read_only=True) as store:
        ledger = dict(store.conn.execute(
            "SELECT run_id, count(*) FROM judge_calls GROUP BY run_id").fetchall())
    assert ledger["first"] == calls  # every HTTP call of a replay is in the cost ledger


def test_concurrency_must_be_positive(dataset: Path, tmp_path: Path, settings: Settings):
    with pytest.raises(ConfigError, match="concurrency"):
        start_replay(dataset, tmp_path / "x.duckdb", settings, concurrency=0)
    assert not os.path.exists(tmp_path / "x.duckdb")


PII_APP = """
def answer(question):
    return {"output": "Sure: write to jane.doe@example.com, SSN 123-45-6789.",
            "context": ["Customer card 4111 1111 1111 1111 on file."]}
"""
RAW_PII = ("jane.doe@example.com", "123-45-6789", "4111 1111 1111 1111")


@pytest.mark.parametrize("judge_sees", ["masked", "raw"])
def test_target_outputs_are_masked_like_any_trace(dataset: Path, tmp_path: Path, monkeypatch,
                                                  settings: Settings, judge_sees: str):
    import evaluator.regression.replay as replay

    monkeypatch.setenv("EVALUATOR_PII_JUDGE_SEES", judge_sees)
    judged: list[str] = []
    real_evaluate = replay.evaluate_batch

    async def spy(items, *args, **kwargs):  # what the judge is given
        judged.extend(item.trace.model_dump_json() for item in items)
        return await real_evaluate(items, *args, **kwargs)

    monkeypatch.setattr(replay, "evaluate_batch", spy)
    module = app_module(tmp_path, monkeypatch, PII_APP)
    db = tmp_path / "replay.duckdb"
    report = start_replay(dataset, db, Settings.from_env(), ["faithfulness"], "offline",
                          target=f"{module}:answer", run_id="r1")
    assert report.status == "completed" and len(judged) == 12
    stored = [o for (o,) in rows(db, "SELECT output FROM replay_items WHERE run_id = 'r1'")]
    assert len(stored) == 12 and all("<EMAIL_1>" in o for o in stored)
    with Store(db, read_only=True) as store:
        text = " ".join(str(row) for table in ("replay_items", "evaluations")
                        for row in store.conn.execute(f"SELECT * FROM {table}").fetchall())
    assert not [value for value in RAW_PII if value in text]
    sent = " ".join(judged)
    if judge_sees == "masked":
        assert not [value for value in RAW_PII if value in sent]
    else:
        assert all(value in sent for value in RAW_PII)


def test_an_unjudgeable_target_output_is_stored_masked(dataset: Path, tmp_path: Path, monkeypatch,
                                                       settings: Settings):
    module = app_module(tmp_path, monkeypatch,
                        'def answer(question):\n    return "mail jane.doe@example.com \\ud800"\n')
    db = tmp_path / "replay.duckdb"
    start_replay(dataset, db, settings, ["refusal"], "offline", target=f"{module}:answer",
                 run_id="r1")
    stored = rows(db, "SELECT output, target_error FROM replay_items WHERE run_id = 'r1'")
    assert len(stored) == 12
    for output, error in stored:
        assert "jane.doe@example.com" not in output and "<EMAIL_1>" in output, output
        assert error.startswith("cannot judge the output") and "jane.doe" not in error
    reasons = rows(db, "SELECT DISTINCT status, reason FROM evaluations WHERE run_id = 'r1'")
    assert [status for status, _ in reasons] == ["error"]
    assert "jane.doe@example.com" not in reasons[0][1]


def test_a_target_error_is_stored_masked(dataset: Path, tmp_path: Path, monkeypatch,
                                         settings: Settings):
    module = app_module(tmp_path, monkeypatch, 'def answer(question):\n'
                        '    raise RuntimeError("no account for jane.doe@example.com")\n')
    db = tmp_path / "replay.duckdb"
    report = start_replay(dataset, db, settings, ["refusal"], "offline", target=f"{module}:answer",
                          run_id="r1")
    assert report.target_errors == 12
    stored = rows(db, "SELECT target_error FROM replay_items UNION ALL SELECT reason FROM evaluations")
    assert len(stored) == 24
    assert all("no account for <EMAIL_1>" in text for (text,) in stored), stored[0]



def test_batches_are_stored_off_the_event_loop(dataset: Path, tmp_path: Path, monkeypatch,
                                               settings: Settings):
    """A DuckDB write (open, insert, close: 50-200 ms) on the event loop held every judge call
    in flight; every write runs in a thread."""
    from evaluator.regression import replay

    monkeypatch.setattr(replay, "BATCH_ITEMS", 3)
    on_loop: list[bool] = []
    write = ReplayWriter._store_results

    def recording(writer, store, results):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return write(writer, store, results)

    monkeypatch.setattr(ReplayWriter, "_store_results", recording)
    report = start_replay(dataset, tmp_path / "replay.duckdb", settings, ["hallucination"],
                          "offline", concurrency=2)
    assert report.status == "completed" and report.done == 12
    assert len(on_loop) >= 2 and not any(on_loop)
    assert len(rows(tmp_path / "replay.duckdb", "select evaluation_id from evaluations")) == 12


def test_the_collector_skips_what_outlives_the_run_only_while_it_runs(
        dataset: Path, tmp_path: Path, monkeypatch, settings: Settings):
    """Issue 23.4: a full collection walked every object of the process (~0.1 s pauses that
    held every call in flight); during a replay what existed before it is frozen, after it
    (completed or not) the collector is as it was."""
    import gc

    frozen: list[int] = []
    write = ReplayWriter._store_results

    def recording(writer, store, results):
        frozen.append(gc.get_freeze_count())
        return write(writer, store, results)

    monkeypatch.setattr(ReplayWriter, "_store_results", recording)
    report = start_replay(dataset, tmp_path / "replay.duckdb", settings, ["hallucination"],
                          "offline", concurrency=2)
    assert report.status == "completed"
    assert frozen and all(count > 0 for count in frozen)
    assert gc.get_freeze_count() == 0

    def failing(writer, store, results):
        raise OSError("disk full")

    monkeypatch.setattr(ReplayWriter, "_store_results", failing)
    with pytest.raises(OSError):
        start_replay(dataset, tmp_path / "again.duckdb", settings, ["hallucination"], "offline")
    assert gc.get_freeze_count() == 0


def test_the_last_writes_go_to_a_file_opened_while_the_last_items_are_in_flight(
        dataset: Path, tmp_path: Path, monkeypatch, settings: Settings):
    """Issue 23.4: opening the file and writing after the last item took 0.27-0.76 s of a
    640-item replay at 64 in flight (load 5); once every item has started, the file is opened
    and what is done is stored while the last items are judged."""
    import threading

    from evaluator.regression import replay, replay_writer

    opened = threading.Event()

    class Watched(Store):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.set()

    monkeypatch.setattr(replay_writer, "Store", Watched)
    judge = replay.evaluate_batch
    open_before_the_last_verdict: list[bool] = []

    async def last_item_waits(items, *args, **kwargs):
        if items[0].trace.trace_id.endswith("/item-011"):
            open_before_the_last_verdict.append(await asyncio.to_thread(opened.wait, 5))
        return await judge(items, *args, **kwargs)

    monkeypatch.setattr(replay, "evaluate_batch", last_item_waits)
    db = tmp_path / "replay.duckdb"
    report = start_replay(dataset, db, settings, ["hallucination"], "offline", concurrency=2,
                          run_id="r1")
    assert open_before_the_last_verdict == [True]
    assert report.status == "completed" and report.done == 12
    assert rows(db, "SELECT count(*) FROM evaluations WHERE run_id = 'r1'") == [(12,)]
    assert rows(db, "SELECT count(*) FROM replay_items WHERE run_id = 'r1' AND status = 'done'"
                ) == [(12,)]


def test_a_file_that_cannot_be_opened_for_the_last_writes_fails_the_replay(
        dataset: Path, tmp_path: Path, monkeypatch, settings: Settings):
    from evaluator.core.errors import StoreError
    from evaluator.regression import replay_writer

    def locked(*args, **kwargs):
        raise StoreError("the store is locked by another process")

    monkeypatch.setattr(replay_writer, "Store", locked)
    db = tmp_path / "replay.duckdb"
    with pytest.raises(StoreError, match="locked"):
        start_replay(dataset, db, settings, ["hallucination"], "offline", run_id="r1")
    assert rows(db, "SELECT status FROM runs WHERE run_id = 'r1'") == [("failed",)]
