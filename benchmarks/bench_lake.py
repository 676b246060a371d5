"""The Parquet lake: export rate, the DuckDB file held flat under a week of traffic, and reading
hot DuckDB plus the lake against the same rows all in DuckDB.

A simulated week: every day, one day of evaluations (four rubrics), their traces and their
judge-call ledger rows are written in sink-sized batches. With retention (EVALUATOR_HOT_DAYS=1)
the sink's roll runs at each day's start and moves what is older to the lake; without it,
everything stays in DuckDB (the baseline). The file's size is read after a checkpoint.

Moving one day, before and after, on the same rows: the previous roll (keys compressed as
DuckDB chooses, the whole day deleted in one transaction that holds the file throughout) against
the sink's roll (keys stored uncompressed, migration 9; the day deleted in chunks, the file
opened for each step), with its rate and the longest single hold of the file.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from evaluator.core.records import Evaluation, Trace
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.core.usage import Usage
from evaluator.queue.channel import InMemoryChannel
from evaluator.store import Scope, Store
from evaluator.store import lake as lake_queries
from evaluator.store.migrations import MIGRATIONS, apply_migrations
from evaluator.worker.sink import LakeRetention, Sink

RUBRICS = ("hallucination", "faithfulness", "relevance", "refusal")
DAYS = 7
HOT_DAYS = 1
BATCH = 20_000


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None):
    ratio = value / baseline_value if baseline_value else None
    return {"benchmark": "lake", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def _day_rows(day: date, traces_per_day: int, start: int):
    """One day: traces, four evaluations and four judge calls each, realistic widths."""
    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    traces, evaluations, calls = [], [], []
    for i in range(start, start + traces_per_day):
        trace_id = f"{i:032x}"
        traces.append(StoredTrace(Trace(trace_id=trace_id, span_id=f"{i:016x}", input="How far is the Moon?",
                                        context=["The Moon orbits Earth at about 384,400 km."] * 2,
                                        output="About 384,400 km.", model="gpt-4o-mini", provider="openai"),
                                  "random", 10.0))
        for rubric in RUBRICS:
            evaluation_id = f"{trace_id}-{rubric}"
            evaluations.append(Evaluation(
                evaluation_id=evaluation_id, trace_id=trace_id, rubric=rubric, rubric_version=1,
                rubric_hash="r" * 64, judge="openai/gpt-4o-mini", judge_hash="j" * 64,
                label="pass" if i % 5 else "fail", score=1.0 if i % 5 else 0.0, passed=bool(i % 5),
                reasoning="The answer is supported by the second document. " * 4, status="scored",
                raw_reply='{"reasoning": "...", "label": "pass"}', usage=Usage(850, 120, 0.00021, 840.0),
                attempts=1, prompt_hash="p" * 64,
                sample_reason="random", sample_weight=10.0, created_at=moment))
            calls.append(JudgeCall(call_id=f"call-{evaluation_id}", judge="openai/gpt-4o-mini",
                                   model="gpt-4o-mini", transport="openai", sample=0, attempt=1,
                                   status="ok", usage=Usage(850, 120, 0.00021, 840.0), created_at=moment,
                                   evaluation_id=evaluation_id, trace_id=trace_id, rubric=rubric, rubric_version=1))
    return traces, evaluations, calls, moment


def _size_mb(path: Path) -> float:
    with Store(path) as store:
        store.checkpoint()
    return path.stat().st_size / 2**20


def _week(directory: Path, traces_per_day: int, lake: Path | None) -> dict:
    db = directory / ("with-lake.duckdb" if lake else "hot-only.duckdb")
    first = date(2026, 3, 1)
    sizes, export_rows, export_s = [], 0, 0.0
    for index in range(DAYS):
        day = first + timedelta(days=index)
        if lake is not None:  # the sink's roll at the start of the day
            started = time.perf_counter()
            with Store(db) as store:
                rolled = store.roll_to_lake(lake, before=day - timedelta(days=HOT_DAYS))
            export_s += time.perf_counter() - started
            export_rows += sum(sum(r.rows.values()) for r in rolled)
        traces, evaluations, calls, moment = _day_rows(day, traces_per_day, index * traces_per_day)
        step = BATCH // len(RUBRICS)
        for start in range(0, len(traces), step):
            with Store(db) as store:
                store.write_batch(evaluations[start * 4:(start + step) * 4], traces[start:start + step],
                                  judge_calls=calls[start * 4:(start + step) * 4], received_at=moment)
        sizes.append(_size_mb(db))
    return {"db": db, "sizes": sizes, "export_rows": export_rows, "export_s": export_s}


def _query_ms(db: Path, lake: Path | None, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        with Store(db, read_only=True, lake=lake) as store:
            store.rubric_summary(Scope.everything())
        best = min(best, time.perf_counter() - started)
    return best * 1000


BEFORE_UNCOMPRESSED_KEYS = next(i for i, m in enumerate(MIGRATIONS) if "stored uncompressed" in m.description)
"""How many migrations the previous roll's schema had (keys compressed as DuckDB chooses)."""


def _previous_roll(hot_only: Path, directory: Path, day: date) -> tuple[int, float]:
    """The roll as it was: the same rows in a file of the schema before keys were stored
    uncompressed, the day exported, then deleted in one transaction. Returns (rows moved,
    seconds: all of it one hold of the file)."""
    db = directory / "previous.duckdb"
    conn = duckdb.connect(str(db))
    try:
        conn.execute("SET TimeZone = 'UTC'")
        apply_migrations(conn, str(db), MIGRATIONS[:BEFORE_UNCOMPRESSED_KEYS])
        conn.execute(f"ATTACH '{hot_only}' AS source (READ_ONLY)")
        for table in lake_queries.LAKE_TABLES:
            conn.execute(f"INSERT INTO main.{table.name} SELECT * FROM source.{table.name}")
        conn.execute("DETACH source")
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        exported = lake_queries.export_day(conn, directory / "previous-lake", day)
        conn.begin()
        for table in lake_queries.LAKE_TABLES:
            conn.execute(f"DELETE FROM main.{table.name} WHERE CAST(timezone('UTC', {table.day_column})"
                         " AS DATE) = $day", {"day": day})
        conn.commit()
        conn.execute("CHECKPOINT")
        return sum(exported.rows.values()), time.perf_counter() - started
    finally:
        conn.close()


def _sink_roll(hot_only: Path, directory: Path, day: date) -> tuple[int, float, float]:
    """The sink's roll of the same day (chunks, the file opened per step). Returns (rows moved,
    seconds, the longest hold of the file in seconds)."""
    db = Path(shutil.copy(hot_only, directory / "chunked.duckdb"))
    lake = directory / "chunked-lake"
    retention = LakeRetention(lake, hot_days=0, now=lambda: datetime(day.year, day.month, day.day,
                                                                      tzinfo=UTC) + timedelta(days=1))
    sink = Sink(InMemoryChannel(), db, retention=retention)
    started = time.perf_counter()
    sink.roll_if_due()
    elapsed = time.perf_counter() - started
    with Store(db) as store:
        if store.days_to_roll(day + timedelta(days=1)):
            raise RuntimeError(f"the sink's roll left rows of {day} in DuckDB")
    moved = sum(lake_queries.lake_count(duckdb.connect(), lake, table, day) for table in lake_queries.LAKE_TABLES)
    return moved, elapsed, sink.longest_roll_hold_s


def run(quick: bool = False) -> list[dict]:
    traces_per_day = 2_500 if quick else 25_000
    evaluations = traces_per_day * len(RUBRICS)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        lake = directory / "lake"
        rolled = _week(directory, traces_per_day, lake)
        hot_only = _week(directory, traces_per_day, None)
        lake_mb = sum(p.stat().st_size for p in lake.rglob("*.parquet")) / 2**20
        hot_plus_lake_ms = _query_ms(rolled["db"], lake)
        hot_only_ms = _query_ms(hot_only["db"], None)
        day = date(2026, 3, 1)
        previous_rows, previous_s = _previous_roll(hot_only["db"], directory, day)
        sink_rows, sink_s, longest_hold_s = _sink_roll(hot_only["db"], directory, day)
    if previous_rows != sink_rows:
        raise RuntimeError(f"the two rolls moved {previous_rows} and {sink_rows} rows")
    week = f"{DAYS} days x {evaluations:,} evaluations"
    one_day = f"one day of {evaluations:,} evaluations ({sink_rows:,} rows) out of a week"
    return [
        _row(f"roll rate, sink's chunked roll on uncompressed keys, {one_day}", sink_rows / sink_s, "rows/s",
             "previous roll: one transaction, compressed keys", previous_rows / previous_s),
        _row(f"longest single hold of the DuckDB file while moving {one_day}", longest_hold_s * 1000, "ms",
             "previous roll: the whole move is one hold", previous_s * 1000),
        _row(f"export (roll) rate: evaluations + traces + judge calls moved to the lake, {week}",
             rolled["export_rows"] / rolled["export_s"], "rows/s"),
        _row(f"DuckDB file after day {DAYS} / after day {HOT_DAYS + 1}, EVALUATOR_HOT_DAYS={HOT_DAYS}",
             rolled["sizes"][-1] / rolled["sizes"][HOT_DAYS], "x", "same, everything kept in DuckDB",
             hot_only["sizes"][-1] / hot_only["sizes"][HOT_DAYS], "~1 (flat)"),
        _row(f"DuckDB file after day {DAYS}, EVALUATOR_HOT_DAYS={HOT_DAYS}", rolled["sizes"][-1], "MB",
             "everything kept in DuckDB", hot_only["sizes"][-1]),
        _row(f"lake size after day {DAYS} ({DAYS - HOT_DAYS - 1} days rolled)", lake_mb, "MB",
             "the same days in DuckDB (MB)",
             hot_only["sizes"][-1] * (DAYS - HOT_DAYS - 1) / DAYS),
        _row(f"report summary over the week: hot DuckDB + lake, {week}", hot_plus_lake_ms, "ms",
             "the same rows all in DuckDB", hot_only_ms),
    ]
