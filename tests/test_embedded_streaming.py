"""The embedded run judges traces in chunks as they are read and hands results to a sink that
keeps the store open across flushes (issue 23 items 1 and 2): the same rows as the pipeline
alone, every sampled trace stored once, the store released when the run ends."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import threading
from pathlib import Path

import pytest

import evaluator.worker.embedded
from evaluator.core.errors import ResultsNotStoredError, StoreError
from evaluator.core.settings import DEFAULTS
from evaluator.ingest.files import collect_work
from evaluator.judges.factory import load_judge
from evaluator.judges.runtime import JudgeRuntime
from evaluator.queue.channel import InMemoryChannel
from evaluator.queue.messages import ResultBatch
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.policy import SamplingPolicy
from evaluator.store import Store
from evaluator.store.duckdb_store import RUN_WRITER_MEMORY_MB, WRITER_MEMORY_MB
from evaluator.worker.embedded import run_embedded
from evaluator.worker.pipeline import evaluate_items
from evaluator.worker.sink import Sink

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> Path:
    """130 sample traces: more than a few chunks of 20, and a last chunk that is not full."""
    path = tmp_path_factory.mktemp("streaming") / "t.jsonl"
    with open(SAMPLE, encoding="utf-8") as lines:
        path.write_text("".join(itertools.islice(lines, 130)), encoding="utf-8")
    return path


def test_a_streamed_run_stores_what_the_pipeline_alone_gives_for_every_trace(tmp_path, traces):
    db = tmp_path / "run.duckdb"
    report = run_embedded(traces, db, "offline", sample_rate=1.0, batch_size=20, concurrent_chunks=3)
    registry = RubricRegistry.load(DEFAULTS.rubrics_dir)
    work = collect_work(traces, SamplingPolicy(1.0), settings=DEFAULTS)
    judge = load_judge("offline", DEFAULTS.judges_dir, JudgeRuntime())
    expected = asyncio.run(evaluate_items(work.items, registry.latest(), judge, report.run_id))
    with Store(db, read_only=True) as store:
        stored = store.evaluations(run_id=report.run_id)
        stored_traces = store.traces()

    def key(e):
        return (e.evaluation_id, e.status, e.label, e.score, e.prompt_hash, e.sample_reason,
                e.sample_weight, e.reason)

    assert report.sampled == 130 and len(stored_traces) == 130
    assert len(stored) == 130 * len(registry.latest()) == report.evaluations
    assert sorted(map(key, stored)) == sorted(map(key, expected))


def test_a_failing_judging_loop_fails_the_run_instead_of_hanging(tmp_path, traces, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("the judge exploded")

    monkeypatch.setattr(evaluator.worker.embedded, "process_items", broken)
    db = tmp_path / "broken.duckdb"
    with pytest.raises(RuntimeError, match="judge exploded"):
        run_embedded(traces, db, "offline", sample_rate=1.0, batch_size=5, concurrent_chunks=1)
    with Store(db, read_only=True) as store:  # released: a reader gets in
        assert [run.status for run in store.runs()] == ["failed"]


def _batch_with_a_dead_letter(n: int) -> ResultBatch:
    from evaluator.core.records import DeadLetter

    return ResultBatch(dead_letters=[DeadLetter(dead_letter_id=f"d{n}", source="test",
                                                payload=json.dumps({"n": n}), error="bad")])


def test_a_holding_sink_keeps_the_store_open_across_flushes_and_releases_it(tmp_path):
    channel, db = InMemoryChannel(), tmp_path / "held.duckdb"
    sink = Sink(channel, db, max_wait_s=0.05, hold_s=3600.0, poll_ms=10)
    for n in range(2):
        channel.publish(_batch_with_a_dead_letter(n))
        assert sink.drain_once() == 1
    with pytest.raises(StoreError, match="locked"):  # held by the sink between flushes
        Store(db, read_only=True, lock_timeout_s=0.05)
    sink.release()
    with Store(db, read_only=True) as store:
        assert store.dead_letter_count() == 2


def _memory_limits_of_opened_stores(monkeypatch) -> list[int | None]:
    """The `memory_limit_mb` of every Store opened from now on, in order."""
    opened: list[int | None] = []
    original = Store.__init__

    def spy(self, *args, memory_limit_mb=None, **kwargs):
        opened.append(memory_limit_mb)
        original(self, *args, memory_limit_mb=memory_limit_mb, **kwargs)

    monkeypatch.setattr(Store, "__init__", spy)
    return opened


def test_the_sink_writes_with_duckdb_memory_capped(tmp_path, monkeypatch):
    """Unbounded, DuckDB's memory for a writer grows with the table (primary-key indexes, row
    groups rewritten at a checkpoint); the sink's store is opened with WRITER_MEMORY_MB."""
    channel, db = InMemoryChannel(), tmp_path / "capped.duckdb"
    sink = Sink(channel, db, max_wait_s=0.05, hold_s=3600.0, poll_ms=10)
    channel.publish(_batch_with_a_dead_letter(0))
    assert sink.drain_once() == 1
    assert sink._store is not None
    [(limit,)] = sink._store.conn.execute("SELECT current_setting('memory_limit')").fetchall()
    sink.release()
    assert limit == "61.0 MiB"  # DuckDB's MB is 1000^2 bytes
    opened = _memory_limits_of_opened_stores(monkeypatch)
    channel.publish(_batch_with_a_dead_letter(1))
    assert Sink(channel, db, max_wait_s=0.05, poll_ms=10).drain_once() == 1
    assert opened == [64], "write_once (the service sink's) is capped too"


def test_a_stopped_sink_on_a_closed_channel_writes_what_is_left_without_waiting_to_poll(tmp_path):
    """The embedded run closes its channel once everything is judged: the sink's reads stop
    waiting (here they would wait an hour each) and what was published is written."""
    channel, stop = InMemoryChannel(), threading.Event()
    for n in range(2):
        channel.publish(_batch_with_a_dead_letter(n))
    stop.set()
    channel.close()
    channel.publish(_batch_with_a_dead_letter(2))  # still taken after close
    sink = Sink(channel, tmp_path / "closed.duckdb", max_wait_s=3600.0, hold_s=3600.0,
                poll_ms=3_600_000)
    sink.run(stop)
    assert channel.read(max_entries=10, block_ms=3_600_000) == []
    with Store(tmp_path / "closed.duckdb", read_only=True) as store:
        assert store.dead_letter_count() == 3


def test_a_runs_writes_are_capped_at_the_runs_lower_limit(tmp_path, traces, monkeypatch):
    """Every store the run writes results with (its first open, the sink's reopens after each
    hold) takes RUN_WRITER_MEMORY_MB, not the service sink's WRITER_MEMORY_MB."""
    opened = _memory_limits_of_opened_stores(monkeypatch)
    monkeypatch.setattr(evaluator.worker.embedded, "SINK_HOLD_S", 0.0)  # reopen for each flush
    report = run_embedded(traces, tmp_path / "run.duckdb", "offline", sample_rate=1.0)
    assert report.evaluations > 0
    *writes, summary = opened  # the last open writes the run's summary, after the sink
    assert len(writes) > 1 and set(writes) == {RUN_WRITER_MEMORY_MB} != {WRITER_MEMORY_MB}
    assert summary is None


def test_a_sink_without_hold_closes_the_store_after_each_flush(tmp_path):
    channel, db = InMemoryChannel(), tmp_path / "open-close.duckdb"
    sink = Sink(channel, db, max_wait_s=0.05, poll_ms=10)
    channel.publish(_batch_with_a_dead_letter(0))
    assert sink.drain_once() == 1
    with Store(db, read_only=True, lock_timeout_s=0.05) as store:
        assert store.dead_letter_count() == 1


def test_traces_stream_in_through_a_named_pipe(tmp_path, traces):
    """A producer writes traces into a FIFO while the run reads them: no file on disk."""
    import os
    import threading

    fifo = tmp_path / "traces.fifo"
    os.mkfifo(fifo)

    def produce() -> None:
        with open(fifo, "w", encoding="utf-8") as pipe:
            pipe.write(traces.read_text(encoding="utf-8"))

    producer = threading.Thread(target=produce)
    producer.start()
    report = run_embedded(fifo, tmp_path / "run.duckdb", "offline", sample_rate=1.0)
    producer.join()
    assert (report.traces_read, report.sampled) == (130, 130)


def _failing_writes(monkeypatch) -> None:
    """A store whose batch writes fail (a full disk): opening it and marking runs still work."""
    def full_disk(self, *args, **kwargs):
        raise StoreError(f"writing a batch to {self.path} failed, nothing was written: disk full")

    monkeypatch.setattr(Store, "write_batch", full_disk)


def test_a_sink_that_cannot_write_when_stopping_says_what_it_did_not_store(tmp_path, monkeypatch):
    _failing_writes(monkeypatch)
    channel, stop = InMemoryChannel(), threading.Event()
    for n in range(3):
        channel.publish(_batch_with_a_dead_letter(n))
    stop.set()
    sink = Sink(channel, tmp_path / "full.duckdb", hold_s=1.0, poll_ms=10)
    sink.run(stop, retry_delay_s=0.0)
    assert sink.unstored is not None
    assert len(sink.unstored.batch.dead_letters) + channel.depth() == 3
    assert "disk full" in sink.unstored.reason


def test_a_run_whose_results_cannot_be_stored_fails_and_says_how_many(tmp_path, traces, monkeypatch):
    small = tmp_path / "five.jsonl"
    small.write_text("".join(traces.read_text(encoding="utf-8").splitlines(True)[:5]), encoding="utf-8")
    _failing_writes(monkeypatch)
    db = tmp_path / "full.duckdb"
    with pytest.raises(ResultsNotStoredError) as raised:
        run_embedded(small, db, "offline", sample_rate=1.0, batch_size=2)
    message = str(raised.value)
    rubrics = len(RubricRegistry.load(DEFAULTS.rubrics_dir).latest())
    assert f"{5 * rubrics} evaluations of 5 sampled traces" in message and "disk full" in message
    with Store(db, read_only=True) as store:
        [run] = store.runs()
    assert run.status == "failed" and "disk full" in run.summary["error"]


def test_a_store_that_stays_unwritable_fails_the_run_instead_of_hanging(tmp_path, traces, monkeypatch):
    """More results than the reader lets wait for the sink (MAX_WAITING_RESULTS): the sink gives
    up after its patience instead of retrying while the reader waits for it forever."""
    _failing_writes(monkeypatch)
    monkeypatch.setattr(evaluator.worker.embedded, "SINK_PATIENCE_S", 0.3)
    db = tmp_path / "full.duckdb"
    with pytest.raises(ResultsNotStoredError, match="disk full"):
        run_embedded(SAMPLE, db, "offline", sample_rate=1.0, batch_size=1, concurrent_chunks=4)
    with Store(db, read_only=True) as store:
        assert [run.status for run in store.runs()] == ["failed"]


def test_a_run_opens_its_store_once(tmp_path, traces, monkeypatch):
    """Each open of a DuckDB file is a connect and each close a checkpoint: a run opens the file
    once, its sink writes with that store and hands it back for the run's summary."""
    opened: list[Path] = []
    original = Store.__init__

    def counting(self, path, *args, **kwargs):
        opened.append(Path(path))
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(Store, "__init__", counting)
    db = tmp_path / "once.duckdb"
    small = tmp_path / "three.jsonl"
    small.write_text("".join(traces.read_text(encoding="utf-8").splitlines(True)[:3]), encoding="utf-8")
    report = run_embedded(small, db, "offline", sample_rate=1.0)
    assert opened == [db]
    monkeypatch.setattr(Store, "__init__", original)
    with Store(db, read_only=True) as store:
        assert store.run(report.run_id).status == "completed"
        assert len(store.evaluations(run_id=report.run_id)) == report.evaluations > 0


def test_a_sink_keeping_its_store_hands_it_over_when_it_stops(tmp_path):
    channel, stop, db = InMemoryChannel(), threading.Event(), tmp_path / "kept.duckdb"
    given = Store(db)
    sink = Sink(channel, db, max_wait_s=0.05, hold_s=3600.0, poll_ms=10, store=given,
                keep_store=True)
    channel.publish(_batch_with_a_dead_letter(0))
    stop.set()
    sink.run(stop, retry_delay_s=0.0)
    kept = sink.take_store()
    assert kept is given and sink.take_store() is None
    assert kept.dead_letter_count() == 1, "written with the store it was given, still open"
    kept.close()


def test_a_sink_that_gives_up_closes_the_store_it_was_to_keep(tmp_path, monkeypatch):
    _failing_writes(monkeypatch)
    channel, stop, db = InMemoryChannel(), threading.Event(), tmp_path / "full.duckdb"
    sink = Sink(channel, db, hold_s=1.0, poll_ms=10, store=Store(db), keep_store=True)
    channel.publish(_batch_with_a_dead_letter(0))
    stop.set()
    sink.run(stop, retry_delay_s=0.0)
    assert sink.unstored is not None and sink.take_store() is None
    with Store(db, read_only=True, lock_timeout_s=0.5) as store:  # not left open
        assert store.dead_letter_count() == 0


def test_a_run_stopped_by_a_bad_argument_leaves_no_new_store(tmp_path, traces):
    """The store opens while the rubrics load; a run that stops there removes the file it made
    (and keeps one that was there)."""
    from evaluator.core.errors import EvaluatorError

    db = tmp_path / "new.duckdb"
    with pytest.raises(EvaluatorError):
        run_embedded(traces, db, "offline", rubric_refs=["no_such_rubric"])
    assert not db.exists() and not (tmp_path / "new.duckdb.wal").exists()
    Store(db).close()
    with pytest.raises(EvaluatorError):
        run_embedded(traces, db, "offline", rubric_refs=["no_such_rubric"])
    with Store(db, read_only=True) as store:
        assert store.runs() == []


def test_a_run_compiles_the_versions_it_uses_and_still_stops_on_a_broken_one(tmp_path, traces):
    """Issue 23 item 2: a run compiles only the rubric versions it judges with. An older version
    whose system block fails to render does not stop it; the same fault in a version it uses
    stops it before any work, and a syntax error in any version stops it, naming file and line."""
    from evaluator.core.errors import RubricError
    from evaluator.core.settings import Settings

    rubrics = tmp_path / "rubrics"
    shutil.copytree(DEFAULTS.rubrics_dir, rubrics)
    old, used = rubrics / "faithfulness" / "v1.jinja", rubrics / "faithfulness" / "v2.jinja"
    front = old.read_text(encoding="utf-8").split("{% block system %}")[0]
    old.write_text(front + "{% block system %}{{ output }}{% endblock %}{% block user %}y{% endblock %}",
                   encoding="utf-8")
    settings = Settings(rubrics_dir=rubrics)
    report = run_embedded(traces, tmp_path / "ok.duckdb", "offline", sample_rate=1.0, settings=settings)
    with Store(tmp_path / "ok.duckdb", read_only=True) as store:
        stored = store.evaluations(run_id=report.run_id)
    assert {e.rubric_version for e in stored if e.rubric == "faithfulness"} == {2}
    assert len(stored) == 130 * len(RubricRegistry.load(DEFAULTS.rubrics_dir).latest())

    used.write_text(used.read_text(encoding="utf-8").split("{% block system %}")[0]
                    + "{% block system %}{{ output }}{% endblock %}{% block user %}y{% endblock %}",
                    encoding="utf-8")
    with pytest.raises(RubricError, match=r"faithfulness/v2.jinja.*system block failed to render"):
        run_embedded(traces, tmp_path / "used.duckdb", "offline", sample_rate=1.0, settings=settings)
    assert not (tmp_path / "used.duckdb").exists()  # stopped before any work

    old.write_text(front + "{% block system %}x{% endblock %}{% block user %}{% if x %}{% endblock %}",
                   encoding="utf-8")
    with pytest.raises(RubricError, match=r"faithfulness/v1.jinja, line \d+: template syntax error"):
        run_embedded(traces, tmp_path / "syntax.duckdb", "offline", sample_rate=1.0, settings=settings)
