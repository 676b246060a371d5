"""The Parquet lake (issue 20 item 3): hive-partitioned export by day then rubric, idempotent and
merging per partition; rolling old days out of DuckDB only after the lake holds every row; and
readers seeing hot DuckDB plus the lake together, without double counting."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from evaluator.core.errors import StoreError
from evaluator.core.rows import JudgeCall
from evaluator.core.usage import Usage
from evaluator.store import Scope, Store
from evaluator.store import lake as lake_module
from tests.test_store import make_eval, make_trace

DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def write_day(db: Path, day: date, first: int, count: int) -> None:
    evaluations, traces, calls = [], [], []
    for n in range(first, first + count):
        for rubric in ("faithfulness", "relevance"):
            evaluations.append(make_eval(n, evaluation_id=f"eval-{n}-{rubric}", rubric=rubric, run_id=None,
                                         created_at=at(day), score=(n % 2) * 1.0, attempts=1, usage=Usage(cost_usd=0.1),
                                         label="faithful" if n % 2 else "unfaithful", passed=bool(n % 2)))
            calls.append(JudgeCall(call_id=f"call-{n}-{rubric}", judge="offline", model="m", transport=None,
                                   sample=0, attempt=1, status="ok", usage=Usage(cost_usd=0.001), created_at=at(day),
                                   evaluation_id=f"eval-{n}-{rubric}", trace_id=f"trace-{n}", rubric=rubric,
                                   rubric_version=1))
        traces.append(make_trace(n))
    with Store(db) as store:
        store.write_batch(evaluations, traces, judge_calls=calls, received_at=at(day))


@pytest.fixture(scope="module")
def three_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "template.duckdb"
    for index, day in enumerate(DAYS):
        write_day(path, day, index * 10, 10)
    return path


@pytest.fixture
def db(three_days: Path, tmp_path: Path) -> Path:
    """A copy of three days of evaluations, traces and judge calls (10 traces x 2 rubrics a day)."""
    return Path(shutil.copy(three_days, tmp_path / "e.duckdb"))


def files(lake: Path) -> list[str]:
    return sorted(str(p.relative_to(lake)) for p in lake.rglob("*.parquet"))


def summary(db: Path, lake: Path | None = None):
    with Store(db, read_only=True, lake=lake) as store:
        return [s.to_dict() for s in store.rubric_summary(Scope.everything())]


def test_export_is_hive_partitioned_by_day_then_rubric_and_idempotent(db: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with Store(db, read_only=True) as store:
        exported = store.export_to_lake(lake, since=DAYS[1], until=DAYS[2])
    assert [e.day for e in exported] == [DAYS[1]]
    assert exported[0].rows == {"evaluations": 20, "judge_calls": 20, "traces": 10}
    assert files(lake) == [
        "evaluations/day=2026-03-02/rubric=faithfulness/data_0.parquet",
        "evaluations/day=2026-03-02/rubric=relevance/data_0.parquet",
        "judge_calls/day=2026-03-02/rubric=faithfulness/data_0.parquet",
        "judge_calls/day=2026-03-02/rubric=relevance/data_0.parquet",
        "traces/day=2026-03-02/data_0.parquet",
    ]
    with Store(db, read_only=True) as store:
        again = store.export_to_lake(lake, since=DAYS[1], until=DAYS[2])
    assert again[0].rows == exported[0].rows and len(files(lake)) == 5
    # any engine reads it: plain DuckDB over the files, with the partition columns
    rows = duckdb.sql(f"SELECT rubric, day, count(*) FROM read_parquet('{lake}/evaluations/*/*/*.parquet',"
                      " hive_partitioning = true) GROUP BY ALL ORDER BY rubric").fetchall()
    assert rows == [("faithfulness", DAYS[1], 10), ("relevance", DAYS[1], 10)]


def test_roll_moves_old_days_and_readers_see_hot_plus_lake(db: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    before = summary(db)
    with Store(db) as store:
        rolled = store.roll_to_lake(lake, before=DAYS[2])
    assert [r.day for r in rolled] == DAYS[:2]
    with Store(db, read_only=True) as store:
        assert store.conn.execute("SELECT count(*) FROM evaluations").fetchone() == (20,)  # day 3 only
        assert store.conn.execute("SELECT count(*) FROM judge_calls").fetchone() == (20,)
        assert store.conn.execute("SELECT count(*) FROM traces").fetchone() == (10,)
    assert summary(db, lake) == before
    assert summary(db) != before


def test_a_late_row_of_a_rolled_day_is_merged_not_overwritten(db: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[2])
    write_day(db, DAYS[0], 100, 1)  # re-delivered after its day was rolled
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[2])
    with Store(db, read_only=True, lake=lake) as store:
        assert store.conn.execute("SELECT count(*) FROM evaluations").fetchone() == (62,)
        ids = {row[0] for row in store.conn.execute("SELECT evaluation_id FROM evaluations").fetchall()}
    assert {"eval-0-faithfulness", "eval-100-relevance"} <= ids


def test_a_crash_between_export_and_delete_neither_loses_nor_double_counts(db: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    before = summary(db)
    with Store(db) as store:
        lake_module.export_day(store.conn, lake, DAYS[0])  # ... and the process dies here
    assert summary(db, lake) == before  # rows in both places count once
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[1])
    assert summary(db, lake) == before


def test_nothing_is_deleted_when_the_lake_does_not_hold_every_row(db: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lake = tmp_path / "lake"
    monkeypatch.setattr(lake_module, "lake_count", lambda conn, lake, table, day: 0)
    with Store(db) as store, pytest.raises(StoreError, match="nothing was deleted"):
        store.roll_to_lake(lake, before=DAYS[1])
    with Store(db, read_only=True) as store:
        assert store.conn.execute("SELECT count(*) FROM evaluations").fetchone() == (60,)


def test_the_export_command_and_report_read_hot_plus_lake(db: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from evaluator.cli import cli

    lake = tmp_path / "lake"
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "--parquet", str(lake), "--db", str(db), "--until", "2026-03-03"])
    assert result.exit_code == 0, result.output
    assert "2026-03-01: 20 evaluations, 20 judge_calls, 10 traces (5 files)" in result.output
    assert "exported 2 day(s)" in result.output
    before = json.loads(runner.invoke(cli, ["report", "--db", str(db), "--all-runs", "--json"]).output)
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[2])
    monkeypatch.setenv("EVALUATOR_LAKE_DIR", str(lake))
    after = json.loads(runner.invoke(cli, ["report", "--db", str(db), "--all-runs", "--json"]).output)
    assert after["rubrics"] == before["rubrics"] and after["status_counts"] == before["status_counts"]
    monkeypatch.delenv("EVALUATOR_LAKE_DIR")
    hot_only = json.loads(runner.invoke(cli, ["report", "--db", str(db), "--all-runs", "--json"]).output)
    assert hot_only["status_counts"] != before["status_counts"]


def test_the_sink_rolls_days_older_than_hot_days(db: Path, tmp_path: Path) -> None:
    from evaluator.queue.channel import InMemoryChannel
    from evaluator.worker.sink import LakeRetention, Sink

    lake = tmp_path / "lake"
    retention = LakeRetention(lake, hot_days=1, every_s=3600, now=lambda: at(DAYS[2], 9))
    sink = Sink(InMemoryChannel(), db, retention=retention)
    sink.roll_if_due()  # keeps 2026-03-02 (one day back) and 2026-03-03
    with Store(db, read_only=True) as store:
        assert lake_module.hot_days(store.conn) == DAYS[1:]
    retention.now = lambda: at(date(2026, 3, 4), 9)
    sink.roll_if_due()  # not due yet: once an hour
    with Store(db, read_only=True) as store:
        assert lake_module.hot_days(store.conn) == DAYS[1:]
    assert files(lake)[0].startswith("evaluations/day=2026-03-01/")


def test_alert_checks_read_the_lake_on_their_read_write_store(db: Path, tmp_path: Path) -> None:
    """`alerts check` opens the store read-write (it records alerts) with the lake's views."""
    from evaluator.monitoring.alerts import check_alerts, load_alert_config

    lake = tmp_path / "lake"
    config = load_alert_config(Path(__file__).resolve().parent.parent / "alerts.yaml")
    now = at(DAYS[2], 13)
    before = check_alerts(db, config, now=now, sinks=[]).to_dict()
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[2])
    with_lake = check_alerts(db, config, now=now, sinks=[], lake=lake).to_dict()
    hot_only = check_alerts(db, config, now=now, sinks=[]).to_dict()
    assert with_lake["rule_failures"] == [] and with_lake["results"] == before["results"]
    assert hot_only["results"] != before["results"]  # the cost rule's previous day is in the lake


def test_an_unreadable_lake_file_is_a_store_error_naming_the_lake(db: Path, tmp_path: Path) -> None:
    """A damaged Parquet file in the lake: readers fail with a StoreError saying which lake and
    what to do (the CLI prints it as one line), not DuckDB's exception and a traceback."""
    lake = tmp_path / "lake"
    with Store(db, read_only=True) as store:
        store.export_to_lake(lake)
    damaged = lake / "evaluations" / "day=2026-03-01" / "rubric=relevance" / "data_0.parquet"
    damaged.write_bytes(b"not parquet")
    with pytest.raises(StoreError, match="cannot read the Parquet lake") as raised:
        Store(db, read_only=True, lake=lake)
    assert "data_0.parquet" in str(raised.value) and "EVALUATOR_LAKE_DIR" in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def hot_counts(db: Path) -> dict[str, int]:
    with Store(db, read_only=True) as store:
        return {table: store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("evaluations", "judge_calls", "traces")}


def lake_ids(lake: Path, table: str = "evaluations", key: str = "evaluation_id") -> list[str]:
    return sorted(row[0] for row in duckdb.sql(
        f"SELECT {key} FROM read_parquet('{lake}/{table}/**/*.parquet')").fetchall())


def test_a_day_moves_in_chunks_of_the_given_size(db: Path, tmp_path: Path) -> None:
    """Every row of a day has the same created_at here: slices are cut by (time, key)."""
    lake = tmp_path / "lake"
    before = summary(db)
    with Store(db) as store:
        chunks = store.roll_chunks(DAYS[0], rows=3)
        assert [c.table.name for c in chunks].count("evaluations") == 7  # 20 rows: 6 of 3, then 2
        store.export_day_for_roll(lake, DAYS[0])
        deleted = [store.delete_rolled_chunk(lake, chunk) for chunk in chunks]
    assert [d.deleted for d in deleted if d.chunk.table.name == "evaluations"] == [3] * 6 + [2]
    assert all(d.deleted == d.hot for d in deleted)
    assert hot_counts(db) == {"evaluations": 40, "judge_calls": 40, "traces": 20}
    assert len(lake_ids(lake)) == 20 and summary(db, lake) == before


def test_a_crash_between_chunks_resumes_without_loss_or_duplicates(db: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    before = summary(db)
    with Store(db) as store:
        store.export_day_for_roll(lake, DAYS[0])
        for chunk in store.roll_chunks(DAYS[0], rows=4)[:3]:
            store.delete_rolled_chunk(lake, chunk)  # ... and the process dies here
    assert 0 < hot_counts(db)["evaluations"] - 40 < 20  # the day is half deleted
    assert summary(db, lake) == before
    with Store(db) as store:
        [resumed] = store.roll_to_lake(lake, before=DAYS[1], chunk_rows=4)
    assert resumed.rows == {"evaluations": 20, "judge_calls": 20, "traces": 10}
    assert hot_counts(db) == {"evaluations": 40, "judge_calls": 40, "traces": 20}
    ids = lake_ids(lake)
    assert len(ids) == len(set(ids)) == 20
    assert summary(db, lake) == before


def test_a_row_written_after_the_export_is_not_deleted_by_a_chunk(db: Path, tmp_path: Path) -> None:
    """A late result for the day arrives between chunks: it is not in the lake, so it stays in
    DuckDB until the next roll moves it."""
    lake = tmp_path / "lake"
    with Store(db) as store:
        store.export_day_for_roll(lake, DAYS[0])
        chunks = store.roll_chunks(DAYS[0], rows=100)
    write_day(db, DAYS[0], 100, 1)
    with Store(db) as store:
        deleted = [store.delete_rolled_chunk(lake, chunk) for chunk in chunks]
    assert sum(d.hot - d.deleted for d in deleted) == 2 + 2 + 1  # its evaluations, calls, trace
    with Store(db, read_only=True) as store:
        assert {row[0] for row in store.conn.execute("SELECT evaluation_id FROM evaluations WHERE"
                " created_at < '2026-03-02'").fetchall()} == {"eval-100-faithfulness", "eval-100-relevance"}
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[1])
    assert len(lake_ids(lake)) == 22 and hot_counts(db)["evaluations"] == 40


def test_the_sink_writes_a_batch_between_chunks(db: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """While a day moves, each chunk's delete is its own hold of the file: results waiting in
    the channel are stored between chunks, not after the whole day."""
    from evaluator.queue.channel import InMemoryChannel
    from evaluator.queue.messages import ResultBatch
    from evaluator.worker.sink import LakeRetention, Sink

    lake = tmp_path / "lake"
    channel = InMemoryChannel()
    steps: list[str] = []
    delete = Store.delete_rolled_chunk

    def delete_and_receive(store: Store, lake: Path, chunk):
        steps.append("chunk")
        channel.publish(ResultBatch(evaluations=[make_eval(500 + len(steps), run_id=None,
                                                           created_at=at(DAYS[2]))]))
        return delete(store, lake, chunk)

    monkeypatch.setattr(Store, "delete_rolled_chunk", delete_and_receive)
    retention = LakeRetention(lake, hot_days=1, now=lambda: at(DAYS[2], 9), chunk_rows=5)
    sink = Sink(channel, db, retention=retention, on_written=lambda batch, written: steps.append("write"))
    channel.publish(ResultBatch(evaluations=[make_eval(500, run_id=None, created_at=at(DAYS[2]))]))
    sink.roll_if_due()
    assert steps[:4] == ["write", "chunk", "write", "chunk"]
    # 20 evaluations and 20 calls in slices of 5 (the last open-ended, empty), 10 traces
    assert steps == ["write", "chunk"] * (5 + 5 + 3)
    assert 0 < sink.longest_roll_hold_s
    assert hot_counts(db)["evaluations"] == 40 + 13  # day 2 and 3, and what came in meanwhile


def test_the_uncompressed_keys_migration_keeps_every_row_and_key(tmp_path: Path) -> None:
    from evaluator.store.migrations import MIGRATIONS, apply_migrations

    db = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(db))
    rebuild = next(i for i, m in enumerate(MIGRATIONS) if "stored uncompressed" in m.description)
    apply_migrations(conn, str(db), MIGRATIONS[:rebuild])
    conn.close()
    with duckdb.connect(str(db)) as old:  # rows written before the migration
        old.execute("INSERT INTO evaluations (evaluation_id, trace_id, rubric, rubric_version, rubric_hash,"
                    " judge, judge_hash, status, attempts, cached, sample_weight, truncated, created_at,"
                    " stability) SELECT 'e-' || i, 't-' || i, 'relevance', 1, 'h', 'offline', 'j', 'scored',"
                    " 1, false, 1.0, false, TIMESTAMPTZ '2026-03-01 12:00:00+00', 0.5 FROM range(3000) r(i)")
    with Store(db) as store:  # migrates
        written = store.write_batch([make_eval(1, evaluation_id="e-1"), make_eval(2, evaluation_id="e-new")])
        store.checkpoint()
        stored = store.conn.execute("SELECT count(*), count(stability) FROM evaluations").fetchone()
        compression = {row[0] for row in store.conn.execute(
            "SELECT compression FROM pragma_storage_info('evaluations') WHERE column_name = 'evaluation_id'"
            " AND segment_type = 'VARCHAR'").fetchall()}
    assert written.new_evaluation_ids == {"e-new"}  # the primary key came through
    assert stored == (3001, 3000)
    assert compression == {"Uncompressed"}


def test_a_lake_written_before_a_column_was_added_reads_it_as_null(db: Path, tmp_path: Path) -> None:
    """Migrations add columns (evaluations.claims, migration 7): a lake exported before one has
    files without it, and reading or merging them must not fail on the missing column."""
    lake = tmp_path / "lake"
    before = summary(db)
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[2])
    for path in (lake / "evaluations").rglob("*.parquet"):
        duckdb.execute(f"COPY (SELECT * EXCLUDE (claims) FROM read_parquet('{path}')) TO '{path}.old'"
                       " (FORMAT parquet)")
        path.with_name(path.name + ".old").replace(path)
    assert summary(db, lake) == before
    with Store(db, read_only=True, lake=lake) as store:
        assert store.conn.execute("SELECT count(*), count(claims) FROM evaluations").fetchone() == (60, 0)
    write_day(db, DAYS[0], 100, 1)  # a late row: the day is merged with the old files
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[2])
    with Store(db, read_only=True, lake=lake) as store:
        assert store.conn.execute("SELECT count(*) FROM evaluations").fetchone() == (62,)


def test_show_reads_a_trace_that_moved_to_the_lake(db: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from evaluator.cli import cli

    lake = tmp_path / "lake"
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[2])
    runner = CliRunner()
    hot_only = runner.invoke(cli, ["show", "trace-1", "--db", str(db)])
    assert hot_only.exit_code != 0 and "EVALUATOR_LAKE_DIR" in str(hot_only.exception)
    monkeypatch.setenv("EVALUATOR_LAKE_DIR", str(lake))
    shown = runner.invoke(cli, ["show", "trace-1", "--db", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    assert view["trace"]["trace_id"] == "trace-1"
    assert sorted(e["rubric"] for e in view["evaluations"]) == ["faithfulness", "relevance"]
