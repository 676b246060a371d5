"""latest_verdicts (migration 10): each (trace, rubric, rubric version, judge)'s latest scored,
labelled evaluation, kept by the writes and the lake roll, always equal to ranking the stored
evaluations afresh (the readers of agreement, labels export and datasets build rely on it)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from evaluator.core.usage import spread_usage
from evaluator.store import MIGRATIONS, Store, label_batch_queries, labels_queries
from evaluator.store.latest_queries import LATEST_SCORED_RANKED
from evaluator.store.migrations import apply_migrations
from tests.test_lake import DAYS, at, write_day
from tests.test_store import make_eval

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def latest(store: Store) -> list[tuple]:
    return sorted(store.conn.execute("SELECT * FROM latest_verdicts").fetchall())


def ranked(store: Store) -> list[tuple]:
    return sorted(store.conn.execute(LATEST_SCORED_RANKED).fetchall())


def test_a_newer_evaluation_replaces_its_groups_row_and_an_older_one_does_not(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    Store.write_once(db, [make_eval(1, created_at=T0)])
    newer = make_eval(2, trace_id="trace-1", rubric_hash="rh2", label="unfaithful", score=0.0,
                      passed=False, created_at=T0 + timedelta(hours=1))
    older = make_eval(3, trace_id="trace-1", judge_hash="jh2", created_at=T0 - timedelta(hours=1))
    Store.write_once(db, [newer])
    Store.write_once(db, [older])
    with Store(db) as store:
        assert [row[4] for row in latest(store)] == ["eval-2"]
        assert latest(store) == ranked(store)


def test_a_redelivered_evaluation_changes_nothing_even_when_its_copy_differs(tmp_path: Path):
    """A result delivered twice is stored once: the first copy stays, in both tables."""
    db = tmp_path / "s.duckdb"
    first = make_eval(1, created_at=T0)
    Store.write_once(db, [first])
    redelivered = first.model_copy(update={"label": "unfaithful", "passed": False, "score": 0.0,
                                           "created_at": T0 + timedelta(hours=2)})
    assert Store.write_once(db, [redelivered, make_eval(2, created_at=T0)]).evaluations == 1
    with Store(db) as store:
        assert [(row[4], row[6]) for row in latest(store)] == [("eval-1", "faithful"),
                                                               ("eval-2", "faithful")]
        assert latest(store) == ranked(store)


def test_one_batch_with_a_group_twice_keeps_the_newest_and_skips_unscored(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    Store.write_once(db, [
        make_eval(1, created_at=T0),
        make_eval(2, trace_id="trace-1", rubric_hash="rh2", created_at=T0 + timedelta(minutes=1)),
        make_eval(3, trace_id="trace-1", rubric_hash="rh3", status="error", label=None, score=None,
                  passed=None, created_at=T0 + timedelta(minutes=2)),
        make_eval(4, trace_id="trace-1", judge="other", created_at=T0),
    ])
    with Store(db) as store:
        assert [row[4] for row in latest(store)] == ["eval-2", "eval-4"]
        assert latest(store) == ranked(store)


def test_replay_rows_are_kept_apart_under_their_own_trace_ids(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.start_run("replay-1", "replay", {})
        store.write_batch([make_eval(1, run_id=None, created_at=T0),
                           make_eval(2, trace_id="replay-1/item", run_id="replay-1",
                                     created_at=T0 + timedelta(hours=1))])
        assert [(row[0], row[5]) for row in latest(store)] == [("replay-1/item", "replay-1"),
                                                               ("trace-1", None)]


def test_rolling_days_to_the_lake_ranks_the_groups_left_in_duckdb(tmp_path: Path):
    db, lake = tmp_path / "s.duckdb", tmp_path / "lake"
    write_day(db, DAYS[0], 0, 6)
    write_day(db, DAYS[2], 10, 3)
    # trace-1 judged again on the last day by a changed judge config: that row stays latest
    # when the first day leaves DuckDB; the first day's other traces leave the table with it
    Store.write_once(db, [make_eval(1, evaluation_id="again-1", judge_hash="jh2", run_id=None,
                                    created_at=at(DAYS[2]))])
    with Store(db) as store:
        store.roll_to_lake(lake, before=DAYS[1], chunk_rows=4)
        rows = latest(store)
        assert rows == ranked(store)
        assert {row[0] for row in rows} == {"trace-1", "trace-10", "trace-11", "trace-12"}
        assert [row[4] for row in rows if row[0] == "trace-1"] == ["again-1"]


def test_the_migration_ranks_an_existing_store(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    conn = duckdb.connect(str(db))
    apply_migrations(conn, "test", MIGRATIONS[:9])
    conn.close()
    shutil.copy(db, tmp_path / "empty.duckdb")
    with Store(tmp_path / "empty.duckdb") as store:
        columns = [name for name, *_ in store.conn.execute("DESCRIBE evaluations").fetchall()]
    conn = duckdb.connect(str(db))
    for n, created in ((1, T0), (2, T0 + timedelta(hours=1))):
        values = spread_usage(make_eval(n, trace_id="trace-1", rubric_hash=f"rh{n}",
                                        created_at=created).model_dump())
        values["claims"] = None
        conn.execute(f"INSERT INTO evaluations ({', '.join(columns)}) VALUES"
                     f" ({', '.join('?' for _ in columns)})", [values[c] for c in columns])
    conn.close()
    with Store(db) as store:
        assert [row[4] for row in latest(store)] == ["eval-2"]
        assert latest(store) == ranked(store)


def _agreement_reads(store: Store) -> list:
    reads = []
    for rubric in ("faithfulness", "relevance"):
        reads += [labels_queries.judge_human_rows(store, rubric, 1, "offline"),
                  labels_queries.production_counts(store, rubric, 1, "offline"),
                  label_batch_queries.production_verdicts(store, rubric, 1, "offline"),
                  label_batch_queries.design_rows(store, rubric, 1, "offline")]
    return reads


def test_agreement_reads_the_same_from_the_table_and_ranked_over_hot_plus_lake(tmp_path: Path):
    db, lake = tmp_path / "s.duckdb", tmp_path / "lake"
    write_day(db, DAYS[0], 0, 6)
    write_day(db, DAYS[2], 10, 6)
    with Store(db) as store:
        store.start_run("replay-1", "replay", {})
        store.write_batch([make_eval(99, trace_id="replay-1/item", run_id="replay-1",
                                     label="unfaithful", passed=False, score=0.0)])
        store.conn.execute(
            "INSERT INTO human_labels (label_id, trace_id, rubric, rubric_version, label,"
            " annotator, imported_at) SELECT 'l' || i, 'trace-' || i, 'faithfulness', 1,"
            " CASE WHEN i % 3 = 0 THEN 'unfaithful' ELSE 'faithful' END, 'ann', now()"
            " FROM range(0, 16) t(i) UNION ALL SELECT 'r', 'replay-1/item', 'faithfulness', 1,"
            " 'faithful', 'ann', now()")
        before = _agreement_reads(store)
        assert before[0] and before[1].n == 12  # the replay's verdict is not production's
        store.roll_to_lake(lake, before=DAYS[1])
    with Store(db, read_only=True, lake=lake) as store:
        assert store.reads_lake
        assert _agreement_reads(store) == before


def test_agreement_finds_the_same_groups_from_the_table_as_from_every_evaluation(tmp_path: Path):
    """Groups come from latest_verdicts and the scored evaluations without a label (which the
    table leaves out): the same as reading every evaluation, as a Store with a lake does."""
    db, lake = tmp_path / "s.duckdb", tmp_path / "lake"
    write_day(db, DAYS[0], 0, 6)
    write_day(db, DAYS[2], 10, 6)
    with Store(db) as store:
        store.start_run("replay-1", "replay", {})
        store.write_batch([
            make_eval(97, trace_id="trace-11", run_id=None, judge="scorer", label=None, score=0.4,
                      passed=False, created_at=at(DAYS[2])),
            make_eval(98, trace_id="replay-1/item", run_id="replay-1", judge="replayed")])
        groups = labels_queries.rubrics_with_evaluations(store, None, None)
        assert [tuple(group) for group in groups] == [
            ("faithfulness", 1, "offline"), ("faithfulness", 1, "scorer"),
            ("relevance", 1, "offline")]
        assert labels_queries.rubrics_with_evaluations(store, "faithfulness", "scorer") == groups[1:2]
        store.roll_to_lake(lake, before=DAYS[1])
    with Store(db, read_only=True, lake=lake) as store:
        assert store.reads_lake
        assert labels_queries.rubrics_with_evaluations(store, None, None) == groups
