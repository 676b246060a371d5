"""The reused-id check (evaluator.ingest.seen_ids): exact answers for any sequence of ids, memory
that stays flat however many ids it keeps, a scratch database on disk that leaves no file, and a
clear error when that database cannot be written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core.records import hash64
from evaluator.ingest.seen_ids import SeenIds
from tests.support.examples import examples

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")

trace_ids = st.one_of(st.text(max_size=12), st.text(max_size=4).map(lambda t: t + "\udcff"))
contents = st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1))
"""Digests: a few small ones (a repeat often brings the same content), or any 8-byte value."""
streams = st.lists(trace_ids, min_size=1, max_size=12, unique=True).flatmap(
    lambda pool: st.lists(st.tuples(st.sampled_from(pool), contents), max_size=120))


@settings(deadline=None, max_examples=examples(300))
@given(stream=streams, merge_at=st.integers(1, 9))
def test_seen_ids_answer_like_a_dict_of_first_contents(stream, merge_at):
    """Whatever went to disk and whatever is still recent: the first content of each id."""
    model: dict[str, int] = {}
    with closing(SeenIds(merge_at=merge_at)) as seen:
        for trace_id, content in stream:
            assert seen.first(trace_id, content) == model.setdefault(trace_id, content)
        assert len(seen) == len(model)


def test_seen_ids_keep_the_first_content_across_merges():
    """Ids on disk are found as well as the latest ones in the dict; a key of 2^63 or more (the
    top bit of a uint64, a negative rowid on disk) is found too, and so is such a content."""
    with closing(SeenIds(merge_at=7)) as seen:
        ids = [f"trace-{n}" for n in range(100)] + ["", "\udcff", "x" * 128]
        for n, trace_id in enumerate(ids):
            assert seen.first(trace_id, n) == n, "a new id keeps its own content"
        for n, trace_id in enumerate(ids):
            assert seen.first(trace_id, 10_000 + n) == n, "a reused id gives the first content"
        assert len(seen) == len(ids)
        high = next(f"id-{n}" for n in range(100) if hash64(f"id-{n}") >= 2**63)
        seen.first(high, 2**64 - 5)
        for n in range(7):
            seen.first(f"filler-{n}", n)
        assert seen.first(high, 6) == 2**64 - 5


_FEED = """
import json, sys
from evaluator.ingest.seen_ids import SeenIds
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
seen = SeenIds(merge_at=2_000)
def feed(start, stop):
    for n in range(start, stop):
        assert seen.first(f"{n:032x}", n) == n
    assert seen.first(f"{start // 2:032x}", 0) == start // 2
feed(0, 100_000)
warm = status("VmHWM")
feed(100_000, 400_000)
print(json.dumps({"warm_kib": warm, "grown_kib": status("VmHWM") - warm}))
seen.close()
"""


@linux_only
def test_seen_ids_memory_stays_flat_after_warm_up():
    """300,000 more ids after 100,000 raise the process's peak by less than 2 MB. The sorted
    arrays of 16 bytes an id this replaced raised it by ~7 MB (a merge holds old and new)."""
    run = subprocess.run([sys.executable, "-c", _FEED], capture_output=True, text=True, check=True)
    figures = json.loads(run.stdout)
    assert figures["grown_kib"] < 2_048, figures


_SCRATCH = """
import functools, json, os, sys
from pathlib import Path
import evaluator.ingest.files as files
import evaluator.ingest.seen_ids as seen_ids
from evaluator.sampling.policy import SamplingPolicy
scratch = os.environ["SQLITE_TMPDIR"]
def open_in_scratch():
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the directory listing's own descriptor, closed since
            pass
    return [name for name in names if name.startswith(scratch)]
seen_while_reading = []
def look(counts):
    if counts.traces_read == 2_900:
        seen_while_reading.extend(open_in_scratch())
        seen_while_reading.append(os.listdir(scratch))
    if counts.traces_read == 2_950 and sys.argv[1] == "fail":
        raise RuntimeError("stopped midway")
files.SeenIds = functools.partial(files.SeenIds, merge_at=10)
seen_ids.CACHE_KIB = 16  # a small page cache: the table goes to disk within a few thousand ids
try:
    files.stream_work(Path(sys.argv[2]), SamplingPolicy(rate=0.0), list, list, on_record=look)
    after = open_in_scratch()
except RuntimeError:
    after = open_in_scratch()  # while the traceback still holds the reading frames
print(json.dumps({"while": seen_while_reading, "after": after + os.listdir(scratch)}))
"""


@linux_only
@pytest.mark.parametrize("ending", ["finish", "fail"])
def test_the_scratch_database_is_on_disk_and_leaves_nothing(tmp_path, ending):
    """While a file is read, the older ids are in a file in SQLITE_TMPDIR that no directory lists
    (SQLite unlinks it as it opens it); once reading ends, finished or failed, nothing is open
    there either."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    traces = tmp_path / "t.jsonl"
    traces.write_text("".join(json.dumps({"trace_id": f"t-{n}", "output": "x" * 40}) + "\n"
                              for n in range(3_000)), encoding="utf-8")
    run = subprocess.run([sys.executable, "-c", _SCRATCH, ending, str(traces)], capture_output=True,
                         text=True, check=True, env={**os.environ, "SQLITE_TMPDIR": str(scratch)})
    figures = json.loads(run.stdout)
    *files_open, listed = figures["while"]
    assert files_open and all(name.endswith("(deleted)") for name in files_open), figures
    assert listed == [] and figures["after"] == [], figures


_FULL_DISK = """
import resource, signal
from evaluator.ingest.seen_ids import SeenIds, SeenIdsError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
seen = SeenIds(merge_at=1_000)
try:
    for n in range(1_000_000):
        seen.first(f"{n:032x}", n)
except SeenIdsError as exc:
    print(exc)
"""


@linux_only
def test_a_scratch_database_that_cannot_be_written_says_what_to_do(tmp_path):
    """No room for the scratch database (here a file size limit): an EvaluatorError naming the
    directory and the setting to change, not a traceback from sqlite3."""
    run = subprocess.run([sys.executable, "-c", _FULL_DISK], capture_output=True, text=True,
                         check=True, env={**os.environ, "SQLITE_TMPDIR": str(tmp_path)})
    message = run.stdout.strip()
    assert message.startswith(f"the reused-id check could not write its scratch database in {tmp_path} ")
    assert "point SQLITE_TMPDIR (or TMPDIR) at a writable directory with room" in message
    assert list(Path(tmp_path).iterdir()) == []
