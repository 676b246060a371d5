"""The DuckDB store: migrations, idempotent batched writes, summaries, and the one-writer lock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from evaluator.core.errors import StoreError
from evaluator.core.records import DeadLetter, Evaluation, Trace
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.core.usage import USAGE_FIELDS, Usage
from evaluator.store import LATEST_VERSION, MIGRATIONS, Migration, Scope, Store
from evaluator.store.batches import (
    dead_letters_batch,
    evaluations_batch,
    judge_calls_batch,
    staged,
    traces_batch,
)
from evaluator.store.duckdb_store import RUN_WRITER_MEMORY_MB
from evaluator.store.migrations import (
    FRESH_SCHEMA,
    FRESH_SCHEMA_VERSION,
    applied_numbers,
    apply_migrations,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_eval(n: int, **fields) -> Evaluation:
    values = dict(
        evaluation_id=f"eval-{n}", trace_id=f"trace-{n}", rubric="faithfulness", rubric_version=1,
        rubric_hash="rh1", judge="offline", judge_hash="jh1", status="scored", label="faithful",
        score=1.0, passed=True, run_id="run-1",
    )
    values.update(fields)
    return Evaluation(**values)


def make_trace(n: int, weight: float = 1.0) -> StoredTrace:
    trace = Trace(trace_id=f"trace-{n}", input="q?", output="a.", context=["doc"], model="m",
                  provider="p", feedback="negative", finish_reason="stop",
                  start_time=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    return StoredTrace(trace, "random", weight)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "evaluator.duckdb"


# -- migrations ----------------------------------------------------------------------------------

def test_migration_numbers_are_ordered_unique_and_contiguous():
    numbers = [m.number for m in MIGRATIONS]
    assert numbers == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST_VERSION == numbers[-1]
    assert all(m.description.strip() and m.sql.strip() for m in MIGRATIONS)


def test_opening_applies_and_records_every_migration(db):
    with Store(db) as store:
        rows = store.conn.execute(
            "SELECT number, description, applied_at FROM schema_migrations ORDER BY number"
        ).fetchall()
    assert [(n, d) for n, d, _ in rows] == [(m.number, m.description) for m in MIGRATIONS]
    assert all(isinstance(applied_at, datetime) for _, _, applied_at in rows)


def test_a_new_file_has_the_tables_the_migrations_build_one_by_one(tmp_path):
    """A new file is created from FRESH_SCHEMA in one transaction, then the migrations after
    FRESH_SCHEMA_VERSION run; the result is the schema of a file that ran every migration. The
    snapshot itself is checked too (after a new migration, paste the text this prints and
    raise FRESH_SCHEMA_VERSION)."""
    stepwise = duckdb.connect(str(tmp_path / "stepwise.duckdb"))
    for count in range(1, len(MIGRATIONS) + 1):
        apply_migrations(stepwise, "stepwise", MIGRATIONS[:count])
    with Store(tmp_path / "fresh.duckdb") as store:
        assert _schema(store.conn) == _schema(stepwise)
    snapshot = duckdb.connect(str(tmp_path / "snapshot.duckdb"))
    snapshot.execute(FRESH_SCHEMA)
    upto = duckdb.connect(str(tmp_path / "upto.duckdb"))
    for count in range(1, FRESH_SCHEMA_VERSION + 1):
        apply_migrations(upto, "upto", MIGRATIONS[:count])
    expected = "\n".join(sql for name, sql in _schema(upto)[0] if name != "schema_migrations")
    assert _schema(snapshot)[0] == [row for row in _schema(upto)[0] if row[0] != "schema_migrations"], (
        f"FRESH_SCHEMA should be (one table a line here):\n{expected}")


def test_a_new_file_runs_the_migrations_past_the_fresh_schema(tmp_path):
    later = Migration(LATEST_VERSION + 1, "a note", "ALTER TABLE evaluations ADD COLUMN note VARCHAR")
    conn = duckdb.connect(str(tmp_path / "new.duckdb"))
    assert apply_migrations(conn, "new", (*MIGRATIONS, later)) == [*range(1, LATEST_VERSION + 1),
                                                                   LATEST_VERSION + 1]
    assert applied_numbers(conn) == [*range(1, LATEST_VERSION + 2)]
    assert "note" in [row[0] for row in conn.execute("DESCRIBE evaluations").fetchall()]


def _schema(conn: duckdb.DuckDBPyConnection) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Tables (DuckDB's CREATE statements), constraints and the migration ledger."""
    tables = conn.execute("SELECT table_name, sql FROM duckdb_tables() ORDER BY table_name").fetchall()
    constraints = conn.execute(
        "SELECT table_name, constraint_text FROM duckdb_constraints() ORDER BY ALL").fetchall()
    ledger = conn.execute("SELECT number, description FROM schema_migrations ORDER BY number"
                          ).fetchall() if any(name == "schema_migrations" for name, _ in tables) else []
    return tables, constraints, ledger


@pytest.mark.parametrize("start", range(len(MIGRATIONS)))
def test_database_created_at_an_older_migration_upgrades(db, start):
    conn = duckdb.connect(str(db))
    apply_migrations(conn, "test", MIGRATIONS[:start])
    conn.close()
    with Store(db) as store:
        assert applied_numbers(store.conn) == [m.number for m in MIGRATIONS]
        store.write_batch([make_eval(1)])
    with Store(db, read_only=True) as store:
        assert len(store.evaluations()) == 1


def test_a_new_migration_keeps_existing_rows_and_a_newer_file_is_refused(db):
    Store.write_once(db, [make_eval(1)])
    future = (*MIGRATIONS, Migration(LATEST_VERSION + 1, "a note", "ALTER TABLE evaluations ADD COLUMN note VARCHAR"))
    conn = duckdb.connect(str(db))
    assert apply_migrations(conn, "test", future) == [LATEST_VERSION + 1]
    assert conn.execute("SELECT evaluation_id, note FROM evaluations").fetchall() == [("eval-1", None)]
    conn.close()
    for read_only in (False, True):
        with pytest.raises(StoreError, match="newer than this evaluator knows"):
            Store(db, read_only=read_only)


def test_read_only_open_of_an_unmigrated_file_says_how_to_upgrade(db):
    """The way to upgrade adds nothing to the store: `evaluator run` would add the bundled sample
    traces to production traffic."""
    duckdb.connect(str(db)).close()
    with pytest.raises(StoreError, match="open it once read-write") as raised:
        Store(db, read_only=True)
    assert "`evaluator sink`" in str(raised.value) and "e.g. `evaluator run`" not in str(raised.value)


def test_batch_columns_match_the_tables(db):
    batches = (evaluations_batch([make_eval(1)]), traces_batch([make_trace(1)]),
               dead_letters_batch([DeadLetter.from_error("t", "x", ValueError("y"))]))
    with Store(db) as store:
        for batch in batches:
            columns = [r[0] for r in store.conn.execute(f"DESCRIBE {batch.table}").fetchall()]
            assert columns == list(batch.names) == batch.arrow().schema.names
    assert list(batches[0].names) == [name for field in Evaluation.model_fields  # usage stored flat
                                      for name in (USAGE_FIELDS if field == "usage" else (field,))]
    assert list(batches[2].names) == [f for f in DeadLetter.model_fields if f != "MAX_PAYLOAD_CHARS"]


# -- writes --------------------------------------------------------------------------------------

def test_read_write_open_creates_missing_directories(tmp_path):
    with Store(tmp_path / "new" / "dir" / "evaluator.duckdb") as store:
        assert store.dead_letter_count() == 0


def test_reopen_keeps_data(db):
    dead = DeadLetter.from_error("test", {"bad": True}, ValueError("nope"))
    result = Store.write_once(db, [make_eval(1), make_eval(2)], [make_trace(1)], [dead])
    assert (result.evaluations, result.traces, result.dead_letters, result.total) == (2, 1, 1, 4)
    with Store(db) as store:
        assert [e.evaluation_id for e in store.evaluations()] == ["eval-1", "eval-2"]
        assert store.dead_letter_count() == 1
        assert store.traces() == [make_trace(1)]


def test_rewriting_the_same_keys_inserts_nothing(db):
    batch = dict(evaluations=[make_eval(1)], traces=[make_trace(1)],
                 dead_letters=[DeadLetter.from_error("t", "x", ValueError("y"))])
    Store.write_once(db, **batch)
    again = Store.write_once(db, **batch)
    assert again.total == 0
    with Store(db) as store:
        assert store.write_batch(**batch).total == 0
        assert store.status_counts()["scored"] == 1


def test_duplicates_inside_one_batch_keep_the_first(db):
    first, second = make_eval(1, label="faithful"), make_eval(1, label="unfaithful", passed=False)
    traces = [make_trace(1, weight=2.0), make_trace(1, weight=9.0)]
    result = Store.write_once(db, [first, second, make_eval(2)], traces)
    assert (result.evaluations, result.traces) == (2, 1)
    with Store(db, read_only=True) as store:
        assert store.evaluations(trace_id="trace-1") == [first]
        assert store.traces()[0].sample_weight == 2.0


def test_a_failing_batch_writes_nothing(db):
    broken = DeadLetter.model_construct(
        dead_letter_id="d1", source="s", error="e", field=None, payload=None,
        created_at=datetime.now(UTC),
    )
    with Store(db) as store:
        with pytest.raises(StoreError, match="nothing was written"):
            store.write_batch([make_eval(1)], [make_trace(1)], [broken])
        assert store.evaluations() == [] and store.traces() == []
        assert store.dead_letter_count() == 0
        assert store.write_batch([make_eval(1)]).evaluations == 1  # still usable afterwards


def test_read_only_store_refuses_writes(db):
    Store.write_once(db, [make_eval(1)])
    with Store(db, read_only=True) as store, pytest.raises(StoreError, match="read-only"):
        store.write_batch([make_eval(2)])


def test_read_only_on_missing_file_says_to_run_first(db):
    with pytest.raises(StoreError, match="evaluator run"):
        Store(db, read_only=True)
    assert not db.exists()


# -- reads ---------------------------------------------------------------------------------------

def test_evaluations_round_trip_every_field(db):
    full = make_eval(
        1, label="unfaithful", score=0.1 + 0.2, passed=False, reasoning="why\nwith ünïcode ✓",
        reason="judge said so", raw_reply='{"label": "unfaithful"}',
        usage=Usage(2**40, 7, 1e-7, 12.345), attempts=3, cached=True,
        prompt_hash="ph", sample_reason="negative_feedback", sample_weight=0.125, truncated=True,
        created_at=datetime(2025, 6, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
    )
    bare = Evaluation(
        evaluation_id="eval-2", trace_id="trace-2", rubric="relevance", rubric_version=3,
        rubric_hash="rh", judge="j", judge_hash="jh", status="unscored",
    )
    Store.write_once(db, [full, bare])
    with Store(db, read_only=True) as store:
        got = {e.evaluation_id: e for e in store.evaluations()}
    assert got["eval-1"].model_dump() == full.model_dump()
    assert got["eval-2"].model_dump() == bare.model_dump()
    assert got["eval-1"].created_at.utcoffset() == timedelta(0)  # same instant, told in UTC
    assert got["eval-2"].created_at == bare.created_at and got["eval-2"].created_at.tzinfo is not None
    assert got["eval-2"].usage.cost_usd is None and got["eval-2"].usage.input_tokens is None
    assert got["eval-2"].score is None and got["eval-2"].passed is None


def test_evaluation_filters(db):
    base = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [make_eval(i, rubric="relevance" if i % 2 else "faithfulness", run_id=f"run-{i % 3}",
                      created_at=base + timedelta(seconds=i)) for i in range(6)]
    Store.write_once(db, rows)
    with Store(db, read_only=True) as store:
        assert [e.evaluation_id for e in store.evaluations(run_id="run-0")] == ["eval-0", "eval-3"]
        assert [e.evaluation_id for e in store.evaluations(rubric="relevance", limit=2)] == ["eval-1", "eval-3"]
        assert [e.evaluation_id for e in store.evaluations(trace_id="trace-4")] == ["eval-4"]


def test_rubric_summary_numbers(db):
    rows = [
        make_eval(1, label="faithful", score=1.0, passed=True, sample_weight=1.0),
        make_eval(2, label="faithful", score=0.8, passed=True, sample_weight=1.0),
        make_eval(3, label="unfaithful", score=0.0, passed=False, sample_weight=10.0),
        make_eval(4, status="unscored", label=None, score=None, passed=None, sample_weight=5.0),
        make_eval(5, status="error", label=None, score=None, passed=None),
        make_eval(6, status="skipped", label=None, score=None, passed=None),
        make_eval(7, rubric_version=2, status="error", label=None, score=None, passed=None, run_id="run-2"),
    ]
    Store.write_once(db, rows)
    with Store(db, read_only=True) as store:
        v1, v2 = store.rubric_summary()
        only_run_2 = store.rubric_summary(Scope.run("run-2"))
        assert store.status_counts() == {"scored": 3, "unscored": 1, "error": 2, "skipped": 1}
        assert store.status_counts(Scope.run("run-2")) == {
            "scored": 0, "unscored": 0, "error": 1, "skipped": 0}
    assert (v1.rubric, v1.rubric_version, v1.judge) == ("faithfulness", 1, "offline")
    assert (v1.evaluated, v1.scored, v1.passed) == (6, 3, 2)
    assert v1.pass_rate == pytest.approx(2 / 3)
    assert v1.weighted_pass_rate == pytest.approx((1.0 + 1.0) / (1.0 + 1.0 + 10.0))
    assert v1.mean_score == pytest.approx(1.8 / 3)
    assert v1.label_counts == {"faithful": 2, "unfaithful": 1}
    assert (v1.unscored, v1.errors, v1.skipped) == (1, 1, 1)
    assert v2.to_dict() == {
        "rubric": "faithfulness", "rubric_version": 2, "judge": "offline", "evaluated": 1,
        "scored": 0, "passed": 0, "pass_rate": None, "weighted_pass_rate": None,
        "mean_score": None, "label_counts": {}, "unscored": 0, "errors": 1, "skipped": 0,
    }
    assert only_run_2 == [v2]


def test_empty_store_reads(db):
    with Store(db) as store:
        assert store.rubric_summary() == []
        assert store.dead_letter_count() == 0
        assert store.status_counts() == {"scored": 0, "unscored": 0, "error": 0, "skipped": 0}
        assert store.write_batch().total == 0


def test_traces_round_trip_with_their_columns(db):
    Store.write_once(db, traces=[make_trace(1, weight=4.0), make_trace(2)])
    with Store(db, read_only=True) as store:
        assert store.traces(["trace-1"]) == [make_trace(1, weight=4.0)]
        row = store.conn.execute(
            "SELECT model, provider, status, feedback, finish_reason, sample_reason, start_time"
            " FROM traces WHERE trace_id = 'trace-1'"
        ).fetchone()
    assert row[:6] == ("m", "p", "ok", "negative", "stop", "random")
    assert row[6] == datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_runs_are_started_and_finished(db):
    with Store(db) as store:
        store.start_run("r1", "replay", {"dataset": "d.jsonl", "limit": 5})
        assert store.run("r1").status == "running" and store.run("r1").finished_at is None
        with pytest.raises(StoreError, match="already exists"):
            store.start_run("r1", "replay", {})
        store.finish_run("r1", "ok", manifest={"hash": "abc"})
        store.finish_run("r1", "ok", summary={"evaluated": 5})
        with pytest.raises(StoreError, match="start_run first"):
            store.finish_run("nope", "ok")
        run = store.run("r1")
    assert (run.kind, run.status, run.params) == ("replay", "ok", {"dataset": "d.jsonl", "limit": 5})
    assert run.manifest == {"hash": "abc"} and run.summary == {"evaluated": 5}
    assert run.finished_at >= run.started_at


# -- one writer, many readers --------------------------------------------------------------------

def _python(script: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_write_once_releases_the_file(db):
    Store.write_once(db, [make_eval(1)])
    with Store(db, read_only=True, lock_timeout_s=0.5) as store:  # same process, other mode
        assert store.status_counts()["scored"] == 1


def test_open_gives_up_naming_the_file_when_another_process_holds_it(db):
    Store.write_once(db, [make_eval(1)])
    holder = _python(f"""
        import time
        from evaluator.store import Store
        with Store({str(db)!r}):
            print("holding", flush=True)
            time.sleep(30)
    """)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(StoreError, match="another process holds it") as caught:
            Store(db, read_only=True, lock_timeout_s=0.3)
        assert str(db) in str(caught.value)
        assert time.monotonic() - started < 3
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_reports_read_while_a_writer_process_loops(db, tmp_path):
    """Neither starves the other: 20 reads go through while the writer keeps writing, and they
    see its rows arrive. Counted, not timed (the machine may be slow): the writer loops until
    the reader has what it came for."""
    Store.write_once(db, [make_eval(0)])
    stop = tmp_path / "stop"
    writer = _python(f"""
        import pathlib, time
        from evaluator.core.records import Evaluation
        from evaluator.store import Store
        stop, deadline, n, written = pathlib.Path({str(stop)!r}), time.monotonic() + 120, 1, 1
        while not stop.exists() and time.monotonic() < deadline:
            batch = [Evaluation(evaluation_id=f"w-{{n + i}}", trace_id="t", rubric="faithfulness",
                                rubric_version=1, rubric_hash="h", judge="offline", judge_hash="j",
                                status="scored", label="faithful", score=1.0, passed=True)
                     for i in range(200)]
            written += Store.write_once({str(db)!r}, batch).evaluations
            n += 200
        print(written)
    """)
    reads, last = 0, 0
    try:
        while writer.poll() is None and (reads < 20 or last <= 1000):
            with Store(db, read_only=True) as store:
                (summary,) = store.rubric_summary()
            assert summary.evaluated >= last
            last = summary.evaluated
            reads += 1
            time.sleep(0.01)
    finally:
        stop.touch()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert reads >= 20 and last > 1000, "the reads went through while the writer wrote"
    with Store(db, read_only=True) as store:
        assert store.rubric_summary()[0].evaluated == int(out) >= last


def test_threads_of_one_process_opening_a_new_file_migrate_it_once(tmp_path):
    """The sink and the alert schedule of one worker open a fresh file at the same moment:
    DuckDB shares one database between them, so without a process-wide guard both see every
    migration pending and the second fails ("replay_items already exists")."""
    import threading

    for attempt in range(20):
        path = tmp_path / f"fresh-{attempt}.duckdb"
        start = threading.Barrier(4)
        failures: list[BaseException] = []

        def open_store(path: Path = path, start: threading.Barrier = start,
                       failures: list[BaseException] = failures) -> None:
            start.wait()
            try:
                with Store(path):
                    pass
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        with Store(path, read_only=True) as store:
            assert applied_numbers(store.conn) == [m.number for m in MIGRATIONS]


def test_read_only_stores_take_the_read_memory_limit_and_writers_only_when_asked(db, monkeypatch):
    from evaluator.core import read_memory

    Store.write_once(db, [make_eval(1)])
    monkeypatch.setattr(read_memory, "_read_memory_mb", 123)

    def limit(store: Store) -> str:
        return store.conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    with Store(db, read_only=True) as store:
        assert limit(store) == "117.3 MiB"  # 123 MB
    with Store(db, memory_limit_mb=150) as store:
        assert limit(store) == "143.0 MiB"
    with Store(db) as store:
        assert limit(store) not in ("117.3 MiB", "143.0 MiB")


def _fill_in_another_process(db: Path, insert_sql: str) -> None:
    """Run `insert_sql` on the store and checkpoint, in another process: as when the sink
    reopens a big store, the test's own process then loads the key indexes anew (lazily)."""
    fill = textwrap.dedent(f"""
        from evaluator.store import Store
        with Store({str(db)!r}) as store:
            store.conn.execute({insert_sql!r})
            store.checkpoint()
        """)
    subprocess.run([sys.executable, "-c", fill], check=True)


def test_a_write_to_a_big_store_holds_no_key_index_and_keeps_the_writers_limit(db, caplog):
    """DuckDB holds a table's whole key index in memory to insert into it: a writer's memory
    grew with the store (the sink's 64 MB at a million evaluations doubled to 128). The
    tables the sink writes have no key index (migration 12): a write under a small limit
    loads none, keeps the limit, and still skips the ids already stored."""
    _fill_in_another_process(
        db, "INSERT INTO evaluations (evaluation_id, trace_id, rubric, rubric_version,"
            " rubric_hash, judge, judge_hash, status, attempts, cached, sample_weight, truncated,"
            " created_at) SELECT md5(i::VARCHAR), 't' || i, 'faithfulness', 1, 'h', 'offline', 'j',"
            " 'scored', 1, false, 1.0, false, now() FROM range(300000) r(i)")
    stored = [make_eval(n, evaluation_id=hashlib.md5(b"%d" % n).hexdigest()) for n in range(500)]
    new = [make_eval(n, evaluation_id=hashlib.md5(b"new %d" % n).hexdigest()) for n in range(1000)]
    with Store(db, memory_limit_mb=24) as store:  # a 1,000-row batch's own work needs ~20 MB
        written = store.write_batch(evaluations=[*stored, *new])
        limit = store.conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        [(index_bytes,)] = store.conn.execute(
            "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'ART_INDEX'").fetchall()
    assert written.evaluations == 1000
    assert written.new_evaluation_ids == {e.evaluation_id for e in new}
    assert (limit, index_bytes) == ("22.8 MiB", 0)
    assert "memory limit" not in caplog.text


def test_the_runs_writes_of_a_few_thousand_evaluations_fit_its_lower_limit(db, caplog):
    """The embedded run writes under RUN_WRITER_MEMORY_MB (DuckDB caches the blocks a write
    scans up to its limit: the lower limit keeps that cache from growing with the store). A
    batch of 3,000 evaluations, beside 300,000 stored ones and their latest verdicts, fits it:
    the limit is not raised, and the ids stored are still skipped."""
    _fill_in_another_process(
        db, "INSERT INTO evaluations (evaluation_id, trace_id, rubric, rubric_version,"
            " rubric_hash, judge, judge_hash, status, label, attempts, cached, sample_weight,"
            " truncated, created_at) SELECT md5(i::VARCHAR), md5('t' || i // 5), 'r' || i % 5, 1,"
            " 'h', 'offline', 'j', 'scored', 'faithful', 1, false, 1.0, false, now()"
            " FROM range(300000) r(i); INSERT INTO latest_verdicts"
            " SELECT trace_id, rubric, rubric_version, judge, evaluation_id, run_id, label, score,"
            " passed, sample_weight, stability, created_at FROM evaluations")
    stored = [make_eval(n, evaluation_id=hashlib.md5(b"%d" % n).hexdigest()) for n in range(500)]
    new = [make_eval(n, evaluation_id=hashlib.md5(b"new %d" % n).hexdigest(),
                     trace_id=f"new-{n // 5}", rubric=f"r{n % 5}") for n in range(3000)]
    with Store(db, memory_limit_mb=RUN_WRITER_MEMORY_MB) as store:
        written = store.write_batch(evaluations=[*stored, *new])
        limit = store.conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        [(latest,)] = store.conn.execute("SELECT count(*) FROM latest_verdicts").fetchall()
    assert written.new_evaluation_ids == {e.evaluation_id for e in new}
    assert (limit, latest) == ("30.5 MiB", 303000)
    assert "memory limit" not in caplog.text


def test_a_store_with_the_key_indexes_upgrades_keeping_rows_and_deduplication(db):
    """Migration 12 rebuilds traces, evaluations and judge calls without their keys: a store
    made before it keeps its rows, and redelivered rows are still not stored twice."""
    call = JudgeCall.new(judge="offline", model=None, transport=None, sample=0, attempt=1,
                         status="ok")
    batch = dict(evaluations=[make_eval(1), make_eval(2)], traces=[make_trace(1)], judge_calls=[call])
    conn = duckdb.connect(str(db))
    apply_migrations(conn, "test", MIGRATIONS[:11])
    for rows in (evaluations_batch(batch["evaluations"]), traces_batch(batch["traces"]),
                 judge_calls_batch(batch["judge_calls"])):
        with staged(conn, "old_rows", rows) as view:
            conn.execute(f"INSERT INTO {rows.table} ({', '.join(rows.names)}) SELECT * FROM {view}")
    conn.close()
    assert Store.write_once(db, **batch).total == 0
    assert Store.write_once(db, [make_eval(1), make_eval(3)]).evaluations == 1
    with Store(db, read_only=True) as store:
        assert applied_numbers(store.conn) == [m.number for m in MIGRATIONS]
        assert [e.evaluation_id for e in store.evaluations()] == ["eval-1", "eval-2", "eval-3"]
        assert store.traces() == [make_trace(1)]
        assert store.conn.execute("SELECT call_id FROM judge_calls").fetchall() == [(call.call_id,)]
        assert store.conn.execute(
            "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
            " AND table_name IN ('traces', 'evaluations', 'judge_calls')").fetchall() == []


def test_a_write_out_of_memory_keeping_latest_verdicts_raises_the_limit_too(db):
    """The latest verdicts are kept in the writing transaction: out of memory there (a join of
    the batch's groups to a big latest_verdicts) was hidden behind the aborted transaction's
    refusal to unregister the batch, so the writer did not raise its limit and every batch of
    a million-trace run failed."""
    _fill_in_another_process(
        db, "INSERT INTO latest_verdicts (trace_id, rubric, rubric_version, judge, evaluation_id,"
            " run_id, label, score, passed, sample_weight, stability, created_at)"
            " SELECT md5(i::VARCHAR), 'faithfulness', 1, 'offline', sha256(i::VARCHAR), 'r',"
            " 'faithful', 1.0, true, 1.0, NULL, now() FROM range(400000) r(i)")
    with Store(db, memory_limit_mb=16) as store:
        written = store.write_batch(evaluations=[
            make_eval(n, evaluation_id=hashlib.sha256(b"new %d" % n).hexdigest(),
                      trace_id=hashlib.md5(b"%d" % n).hexdigest(), judge="offline")
            for n in range(1000)])
    assert written.evaluations == 1000
