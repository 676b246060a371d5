"""A batch reaches DuckDB bound as lists when it is small and as an Arrow table when it is big
(evaluator.store.batches): both store the same rows, and a small write never imports pyarrow
(whose first conversion imports pandas wherever it is installed: ~250 ms on every short run)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evaluator.store.batches as batches
from evaluator.core.records import ClaimVerdict, DeadLetter, Evaluation, Trace
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.core.usage import Usage
from evaluator.store import Store

TABLES = {"evaluations": "evaluation_id", "traces": "trace_id", "judge_calls": "call_id",
          "dead_letters": "dead_letter_id", "latest_verdicts": "evaluation_id"}
texts = st.text(max_size=40) | st.none()
naive_or_aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                              timezones=st.sampled_from([None, UTC]))


@st.composite
def records(draw: st.DrawFn) -> dict[str, list]:
    """Evaluations, traces, judge calls and dead letters with NULLs, any text, naive and aware
    times, floats and unknown token counts: what the two ways of binding could differ on."""
    count = draw(st.integers(min_value=1, max_value=6))
    evaluations, traces, calls = [], [], []
    for n in range(count):
        status = draw(st.sampled_from(["scored", "unscored", "error", "skipped"]))
        evaluations.append(Evaluation(
            evaluation_id=f"e{n}", trace_id=f"t{n % 3}", rubric=draw(st.sampled_from(["a", "b"])),
            rubric_version=draw(st.integers(1, 3)), rubric_hash="rh", judge="j", judge_hash="jh",
            status=status, label=draw(texts) if status == "scored" else None,
            score=draw(st.floats(0, 1)) if status == "scored" else None,
            passed=draw(st.booleans() | st.none()), reason=draw(texts), run_id=draw(texts),
            usage=Usage(input_tokens=draw(st.integers(0, 10**9) | st.none())),
            sample_weight=draw(st.floats(0.01, 100)), created_at=draw(naive_or_aware),
            claims=draw(st.none() | st.lists(st.builds(ClaimVerdict, claim=st.text(min_size=1),
                                                        verdict=st.just("supported")), max_size=2))))
        traces.append(StoredTrace(Trace(trace_id=f"t{n}", output=draw(st.text(max_size=200)),
                                        model=draw(texts), start_time=draw(naive_or_aware | st.none())),
                                  "random", draw(st.floats(0.01, 100))))
        calls.append(JudgeCall.new(judge="j", model=draw(texts), transport=None, sample=n,
                                   attempt=1, status="ok",
                                   usage=Usage(latency_ms=draw(st.floats(0, 1e6) | st.none()))))
    dead = [DeadLetter.from_error(draw(st.text(max_size=10)), draw(texts), ValueError(draw(st.text())))]
    return {"evaluations": evaluations, "traces": traces, "judge_calls": calls, "dead_letters": dead}


def _stored(db: Path, written: dict[str, list], small_up_to: int, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(batches, "SMALL_BATCH_ROWS", small_up_to)
    db.unlink(missing_ok=True)
    with Store(db) as store:
        result = store.write_batch(**written)
        return {"result": result, **{table: store.conn.execute(
            f"SELECT * EXCLUDE (received_at) FROM {table} ORDER BY {key}" if table == "traces"
            else f"SELECT * FROM {table} ORDER BY {key}").fetchall() for table, key in TABLES.items()}}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(written=records())
def test_small_and_big_batches_store_the_same_rows(written, tmp_path, monkeypatch):
    as_lists = _stored(tmp_path / "lists.duckdb", written, small_up_to=10**6, monkeypatch=monkeypatch)
    as_arrow = _stored(tmp_path / "arrow.duckdb", written, small_up_to=0, monkeypatch=monkeypatch)
    assert as_lists == as_arrow
    assert len(as_lists["evaluations"]) == len(written["evaluations"])


def test_a_batch_repeating_a_stored_id_skips_it_either_way(tmp_path, monkeypatch):
    first = {"evaluations": [Evaluation(evaluation_id="e1", trace_id="t", rubric="a", rubric_version=1,
                                        rubric_hash="h", judge="j", judge_hash="h", status="skipped")]}
    for small_up_to in (0, 10**6):
        monkeypatch.setattr(batches, "SMALL_BATCH_ROWS", small_up_to)
        db = tmp_path / f"{small_up_to}.duckdb"
        assert Store.write_once(db, **first).evaluations == 1
        assert Store.write_once(db, **first).evaluations == 0


WRITE = """
import sys
from evaluator.core.records import Evaluation
from evaluator.store import Store
evaluations = [Evaluation(evaluation_id=f"e{n}", trace_id="t", rubric="a", rubric_version=1,
                          rubric_hash="h", judge="j", judge_hash="h", status="skipped")
               for n in range(int(sys.argv[2]))]
Store.write_once(sys.argv[1], evaluations)
print("pyarrow" in sys.modules)
"""


@pytest.mark.parametrize(("rows", "imports_pyarrow"), [(1, False), (batches.SMALL_BATCH_ROWS + 1, True)])
def test_only_a_big_write_imports_pyarrow(rows, imports_pyarrow, tmp_path):
    written = subprocess.run([sys.executable, "-c", WRITE, str(tmp_path / "s.duckdb"), str(rows)],
                             capture_output=True, text=True, check=True)
    assert written.stdout.split() == [str(imports_pyarrow)]
