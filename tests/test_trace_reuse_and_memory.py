"""A reused trace_id with other content is a dead letter, counted in the run summary (issue
13.9); a file is streamed in bounded chunks, so memory follows the batch size (13.15)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator.core.records import MAX_DEAD_LETTER_CHARS
from evaluator.ingest.files import DEAD_LETTER_CHUNK, DEAD_LETTER_CHUNK_CHARS, REUSED_ID, stream_work
from evaluator.sampling.policy import SamplingPolicy
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n"
                            for row in rows), encoding="utf-8")
    return path


def test_a_reused_trace_id_keeps_the_first_and_dead_letters_the_other(tmp_path):
    first = {"trace_id": "dup-1", "input": "What is 2+2?", "output": "4"}
    rows = [first, {**first, "output": "5"}, first, {**first, "trace_id": "dup-1 "},
            {"trace_id": "other", "input": "Hi?", "output": "Hello."}]
    db = tmp_path / "dup.duckdb"
    report = run_embedded(_write(tmp_path / "t.jsonl", rows), db, "offline", sample_rate=1.0)
    with Store(db, read_only=True) as store:
        outputs = {t.trace.trace_id: t.trace.output for t in store.traces()}
        errors = sorted(row[0] for row in store.conn.execute(
            "SELECT error FROM dead_letters").fetchall())
        summary = store.run(report.run_id).summary
    assert outputs == {"dup-1": "4", "other": "Hello."}, "the first one is kept, once"
    assert report.reused_ids == 1 and report.invalid == 2
    assert summary["reused_ids"] == 1 and summary["invalid"] == 2
    assert REUSED_ID in errors[1] and "1 to 128 characters" in errors[0]


def test_invalid_lines_leave_in_bounded_chunks_as_they_are_read(tmp_path):
    """Many bad lines: dead letters leave the reader in chunks while it reads, never as one."""
    lines = ['{"trace_id": "bad", "output": 5}'] * (DEAD_LETTER_CHUNK * 3 + 7)
    lines += ["x" * 300_000] * 20  # long bad lines: chunks also close on payload size
    lines.insert(10, json.dumps({"trace_id": "good", "input": "Hi?", "output": "Hello."}))
    chunks: list[int] = []
    sizes: list[int] = []
    items: list = []

    def keep(dead) -> None:
        chunks.append(len(dead))
        sizes.append(sum(len(d.payload) for d in dead))
        assert all(len(d.payload) <= MAX_DEAD_LETTER_CHARS for d in dead)

    counts = stream_work(_write(tmp_path / "bad.jsonl", lines), SamplingPolicy(rate=1.0),
                         items.extend, keep)
    assert counts.invalid == sum(chunks) == len(lines) - 1 and len(items) == 1
    assert max(chunks) <= DEAD_LETTER_CHUNK and len(chunks) >= 4
    assert max(sizes) <= DEAD_LETTER_CHUNK_CHARS + MAX_DEAD_LETTER_CHARS


def test_a_run_that_fails_midway_is_not_left_running(tmp_path, monkeypatch):
    import pytest

    import evaluator.worker.embedded

    def broken(*args, **kwargs):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(evaluator.worker.embedded, "stream_work", broken)
    db = tmp_path / "failed.duckdb"
    with pytest.raises(RuntimeError):
        run_embedded(_write(tmp_path / "t.jsonl", [{"trace_id": "t", "output": "a"}]), db,
                     "offline", sample_rate=1.0)
    with Store(db, read_only=True) as store:
        assert [run.status for run in store.runs()] == ["failed"]


_FREED_ARRAYS = """
import numpy as np
from evaluator.core.allocator import keep_big_blocks_mapped
if {mapped}:
    assert keep_big_blocks_mapped()
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
before = rss()
for _ in range(3):  # as big chunks come and go: a new block of the same size, the old one freed
    array = np.ones(20 * 1024 * 1024, dtype=np.uint8)
    del array
print((rss() - before) // 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc")
def test_the_reading_process_gives_freed_arrays_back_to_the_system():
    """Under glibc's own policy a 20 MB array freed after the first stayed resident (a reading
    process held twice the id arrays it kept then), with big blocks kept mapped it goes back to
    the system (the reading process sets that at its start)."""
    def held_mb(mapped: bool) -> int:
        run = subprocess.run([sys.executable, "-c", _FREED_ARRAYS.format(mapped=mapped)],
                             capture_output=True, text=True, check=True)
        return int(run.stdout)

    assert held_mb(False) >= 15
    assert held_mb(True) < 5
