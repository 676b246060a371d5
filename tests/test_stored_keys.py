"""StoredKeys: a held writer's batches of new ids skip the scans of the stored ids, and every
batch still stores exactly the rows (and latest verdicts) a write without it stores."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evaluator.worker.embedded
from evaluator.queue.channel import InMemoryChannel
from evaluator.queue.messages import ResultBatch
from evaluator.store import Store
from evaluator.store.stored_keys import CAPACITY, StoredKeys
from evaluator.worker.embedded import HELD_SINK_MAX_ROWS, run_embedded
from evaluator.worker.sink import MAX_ROWS, Sink
from tests.test_embedded_streaming import SAMPLE
from tests.test_latest_verdicts import latest
from tests.test_store import make_eval, make_trace

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def batches() -> list[dict]:
    """A run's writes: new traces, a trace judged again in a later batch (same ids), an
    evaluation repeated inside a batch, a newer verdict for a stored group under a new id."""
    first = dict(traces=[make_trace(1), make_trace(2)],
                 evaluations=[make_eval(1, created_at=T0), make_eval(2, created_at=T0)])
    repeat = dict(traces=[make_trace(2), make_trace(3)],
                  evaluations=[make_eval(2, created_at=T0), make_eval(3, created_at=T0),
                               make_eval(3, created_at=T0)])
    newer = dict(traces=[make_trace(4)],
                 evaluations=[make_eval(4, created_at=T0),
                              make_eval(5, trace_id="trace-1", judge_hash="jh2", label="unfaithful",
                                        passed=False, score=0.0, created_at=T0 + timedelta(1))])
    fresh = dict(traces=[make_trace(6)], evaluations=[make_eval(6, created_at=T0)])
    return [first, repeat, newer, fresh]


def stored(store: Store) -> tuple[list, list, list]:
    conn = store.conn
    return (conn.execute("SELECT * EXCLUDE (received_at) FROM traces ORDER BY trace_id").fetchall(),
            conn.execute("SELECT * FROM evaluations ORDER BY evaluation_id").fetchall(),
            latest(store))


def write_all(path: Path, keys: StoredKeys | None) -> list:
    with Store(path) as store:
        return [store.write_batch(**batch, stored_keys=keys) for batch in batches()]


def test_the_same_rows_and_counts_are_stored_with_stored_keys_as_without(tmp_path: Path):
    plain = write_all(tmp_path / "plain.duckdb", None)
    keyed = write_all(tmp_path / "keyed.duckdb", StoredKeys())
    assert keyed == plain
    assert [w.evaluations for w in keyed] == [2, 1, 2, 1]  # trace 2 judged again: skipped
    assert [w.traces for w in keyed] == [2, 1, 1, 1]
    with Store(tmp_path / "plain.duckdb") as a, Store(tmp_path / "keyed.duckdb") as b:
        assert stored(b) == stored(a)
        assert [row[4] for row in latest(b) if row[0] == "trace-1"] == ["eval-5"]  # the newer one


evaluation_rows = st.builds(
    lambda n, trace, judge, day, label: make_eval(
        n, trace_id=f"trace-{trace}", judge_hash=judge, created_at=T0 + timedelta(days=day),
        **({"label": label} if label else {"label": None, "status": "error", "score": None,
                                           "passed": None})),
    st.integers(0, 7), st.integers(0, 4), st.sampled_from(["jh1", "jh2"]), st.integers(0, 2),
    st.sampled_from(["faithful", "unfaithful", None]))
writes = st.lists(st.tuples(st.lists(st.integers(0, 4).map(make_trace), max_size=3),
                            st.lists(evaluation_rows, max_size=4),
                            st.booleans()),  # written by another writer (without the keys)
                  min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes, st.sampled_from([4, 10, CAPACITY]))
def test_any_writes_store_the_same_rows_through_stored_keys_as_without(steps, capacity):
    """Ids repeated across and inside batches, an evaluation id stored under another trace, newer
    and older verdicts, rows another writer stored between writes, a filter past its capacity."""
    keys = StoredKeys(capacity)
    with tempfile.TemporaryDirectory() as tmp:
        with Store(Path(tmp) / "plain.duckdb") as plain, Store(Path(tmp) / "keyed.duckdb") as keyed:
            for traces, evaluations, other in steps:
                assert (keyed.write_batch(evaluations, traces, stored_keys=None if other else keys)
                        == plain.write_batch(evaluations, traces))
            assert stored(keyed) == stored(plain)


def statements(monkeypatch, store: Store) -> list[str]:
    """The SQL the store's connection runs from now on."""
    seen: list[str] = []

    class Spy:
        def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args):
            seen.append(sql)
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str):
            return getattr(self._conn, name)

    monkeypatch.setattr(store, "_conn", Spy(store.conn))
    return seen


def test_a_batch_of_new_ids_is_inserted_without_scanning_the_stored_ids(tmp_path: Path, monkeypatch):
    keys = StoredKeys()
    with Store(tmp_path / "s.duckdb") as store:
        store.write_batch(traces=[make_trace(1)], evaluations=[make_eval(1)], stored_keys=keys)
        seen = statements(monkeypatch, store)
        store.write_batch(traces=[make_trace(2)], evaluations=[make_eval(2)], stored_keys=keys)
        new_batch = list(seen)
        store.write_batch(traces=[make_trace(1)], evaluations=[make_eval(1)], stored_keys=keys)
    assert new_batch and not any("NOT EXISTS" in sql or "DELETE" in sql for sql in new_batch)
    assert any("NOT EXISTS" in sql for sql in seen[len(new_batch):])  # a stored id: checked


def test_rows_another_writer_stored_between_writes_are_still_skipped(tmp_path: Path):
    path, keys = tmp_path / "s.duckdb", StoredKeys()
    with Store(path) as store:
        store.write_batch(traces=[make_trace(1)], evaluations=[make_eval(1)], stored_keys=keys)
    with Store(path) as other:  # while the first writer had released the file
        other.write_batch(traces=[make_trace(2)], evaluations=[make_eval(2)])
    with Store(path) as store:
        written = store.write_batch(traces=[make_trace(2)], evaluations=[make_eval(2)],
                                    stored_keys=keys)
        assert (written.traces, written.evaluations) == (0, 0)
        assert store.conn.execute("SELECT count(*) FROM evaluations").fetchall() == [(2,)]


def test_past_its_capacity_every_batch_is_checked_by_the_anti_join(tmp_path: Path, monkeypatch):
    keys = StoredKeys(capacity=6)
    with Store(tmp_path / "s.duckdb") as store:
        for n in range(3):  # a trace id and an evaluation id each: 6
            store.write_batch(traces=[make_trace(n)], evaluations=[make_eval(n)], stored_keys=keys)
        assert len(keys) == 6
        again = store.write_batch(traces=[make_trace(1)], evaluations=[make_eval(1)], stored_keys=keys)
        assert (again.traces, again.evaluations) == (0, 0)
        store.write_batch(traces=[make_trace(3)], evaluations=[make_eval(3)], stored_keys=keys)
        assert len(keys) == 0  # past capacity: the filter is not used
        seen = statements(monkeypatch, store)
        fresh = store.write_batch(traces=[make_trace(4)], evaluations=[make_eval(4)], stored_keys=keys)
        repeat = store.write_batch(traces=[make_trace(3)], evaluations=[make_eval(3)], stored_keys=keys)
    assert (fresh.traces, fresh.evaluations, repeat.traces, repeat.evaluations) == (1, 1, 0, 0)
    assert any("NOT EXISTS" in sql for sql in seen)


def test_a_store_larger_than_the_capacity_is_not_read_into_the_filter(tmp_path: Path, monkeypatch):
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.write_batch(traces=[make_trace(n) for n in range(3)],
                          evaluations=[make_eval(n) for n in range(3)])
    keys = StoredKeys(capacity=5)
    with Store(path) as store:
        seen = statements(monkeypatch, store)
        written = store.write_batch(traces=[make_trace(2), make_trace(3)],
                                    evaluations=[make_eval(2), make_eval(3)], stored_keys=keys)
    assert (written.traces, written.evaluations) == (1, 1)
    assert not any("UNION ALL" in sql for sql in seen) and len(keys) == 0


def _write_batch_keys(monkeypatch) -> list:
    """The `stored_keys` of every Store.write_batch from now on."""
    passed: list = []
    original = Store.write_batch

    def spy(self, *args, stored_keys=None, **kwargs):
        passed.append(stored_keys)
        return original(self, *args, stored_keys=stored_keys, **kwargs)

    monkeypatch.setattr(Store, "write_batch", spy)
    return passed


def test_a_holding_sink_keeps_one_stored_keys_across_its_opens_and_a_sink_without_hold_none(
        tmp_path: Path, monkeypatch):
    passed = _write_batch_keys(monkeypatch)
    channel = InMemoryChannel()
    held = Sink(channel, tmp_path / "held.duckdb", max_wait_s=0.05, hold_s=3600.0, poll_ms=10)
    for n in range(2):
        channel.publish(ResultBatch(evaluations=[make_eval(n)], traces=[make_trace(n)]))
        assert held.drain_once() == 2
        held.release()  # opened again for the next batch: the keys stay
    assert len(passed) == 2 and passed[0] is passed[1] is not None and len(passed[0]) == 4
    channel.publish(ResultBatch(evaluations=[make_eval(9)], traces=[make_trace(9)]))
    assert Sink(channel, tmp_path / "plain.duckdb", max_wait_s=0.05, poll_ms=10).drain_once() == 2
    assert len(passed) == 2  # write_once: the service's sink keeps the anti-join


def test_a_run_writes_in_small_batches_only_while_its_sink_holds_the_store(tmp_path: Path, monkeypatch):
    built: list[int] = []
    original = Sink.__init__

    def spy(self, *args, max_rows=MAX_ROWS, **kwargs):
        built.append(max_rows)
        original(self, *args, max_rows=max_rows, **kwargs)

    monkeypatch.setattr(Sink, "__init__", spy)
    one = tmp_path / "one.jsonl"
    one.write_text(SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    run_embedded(one, tmp_path / "held.duckdb", "offline", sample_rate=1.0)
    monkeypatch.setattr(evaluator.worker.embedded, "SINK_HOLD_S", 0.0)
    run_embedded(one, tmp_path / "unheld.duckdb", "offline", sample_rate=1.0)
    assert built == [HELD_SINK_MAX_ROWS, MAX_ROWS] and HELD_SINK_MAX_ROWS < MAX_ROWS
