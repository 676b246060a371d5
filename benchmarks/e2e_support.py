"""Pieces of the service benchmark: Redis keys, backlogs, the timeline sampler, stored-row stats."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from evaluator.core.records import Evaluation, parse_trace
from evaluator.core.rows import StoredTrace
from evaluator.core.usage import Usage
from evaluator.core.work import SampleDecision
from evaluator.store.duckdb_store import Store

WORK_QUEUE = "dramatiq:evaluator"
RESULTS_STREAM = "evaluator:results"
JUDGE_YAML = """name: bench
kind: litellm
model: openai/bench-judge
api_base: {url}
api_key_env: BENCH_JUDGE_KEY
params: {{temperature: 0}}
limits: {{max_in_flight: {in_flight}, timeout_s: 30, max_attempts: 3}}
"""
"""The judge config of the service benchmarks: the local server at {url}, {in_flight} calls at once."""


JUDGED_CRITERIA = ("hallucination", "faithfulness", "relevance", "refusal")
"""The rubrics the service benchmarks judge every trace with (correctness needs a reference
answer the sample traces do not carry: it would only add a skipped row per trace)."""


def judged_rubrics_dir(workdir: Path) -> Path:
    """A rubrics directory holding JUDGED_CRITERIA (every version), for EVALUATOR_RUBRICS_DIR."""
    from evaluator.core.settings import PROJECT_ROOT

    target = workdir / "rubrics"
    for criterion in JUDGED_CRITERIA:
        shutil.copytree(PROJECT_ROOT / "rubrics" / criterion, target / criterion)
    return target


def purge_work_queue(client) -> None:
    """Drop every dramatiq key (queue, message bodies, ack sets); the results stream stays."""
    keys = list(client.scan_iter("dramatiq:*"))
    if keys:
        client.delete(*keys)


def work_items(prefix: str, count: int, samples: list[dict]):
    """Sampled work items with fresh trace ids and end_time = now (as if the spans just ended);
    each answer is made unique, so no judge verdict comes from the cache."""
    from evaluator.core.work import WorkItem

    now = datetime.now(UTC).isoformat()
    items = []
    for i in range(count):
        sample = samples[i % len(samples)]
        trace = parse_trace({**sample, "trace_id": f"{prefix}{i:08d}", "feedback": None,
                             "end_time": now, "output": f"{sample['output']} (ref {prefix}{i})"})
        items.append(WorkItem(trace, SampleDecision(True, "random", 10.0)))
    return items


def result_batches(prefix: str, traces: int, per_batch: int, samples: list[dict]):
    """ResultBatches shaped like the workers' (per trace: the trace, four scored evaluations
    with a judge-like reply and their four judge-call ledger rows), for the sink's drain rate."""
    from evaluator.core.rows import JudgeCall
    from evaluator.queue.messages import ResultBatch

    rubrics = JUDGED_CRITERIA
    reply = json.dumps({"reasoning": "Checked each claim of the answer against the material "
                        "given, one by one.", "label": "pass"})
    items = work_items(prefix, traces, samples)
    batches = []
    for start in range(0, traces, per_batch):
        chunk = items[start:start + per_batch]
        evaluations = [
            Evaluation(evaluation_id=f"{item.trace.trace_id}-{r}", trace_id=item.trace.trace_id,
                       rubric=rubric, rubric_version=1, rubric_hash="r" * 64, judge="bench",
                       judge_hash="j" * 64, label="pass", score=1.0, passed=True,
                       reasoning="Checked each claim.", status="scored", raw_reply=reply,
                       usage=Usage(900, 40, None, 300.0), attempts=1,
                       prompt_hash="p" * 64, sample_reason="random", sample_weight=10.0)
            for item in chunk for r, rubric in enumerate(rubrics)]
        traces_ = [StoredTrace(item.trace, "random", 10.0) for item in chunk]
        calls = [JudgeCall.new(judge="bench", model="openai/bench-judge", transport="openai",
                               sample=0, attempt=1, status="ok", usage=Usage(900, 40, None, 300.0),
                               evaluation_id=e.evaluation_id,
                               trace_id=e.trace_id, rubric=e.rubric, rubric_version=1)
                 for e in evaluations]
        batches.append(ResultBatch(evaluations=evaluations, traces=traces_, judge_calls=calls))
    return batches


@dataclass
class Timeline:
    """Queue depths and worker RSS every second, on a thread of its own."""

    client: object
    pids: list[int] = field(default_factory=list)
    points: list[tuple[float, int, int, float]] = field(default_factory=list)
    """(time, work messages queued, results entries, max worker RSS MB)."""
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Timeline:
        threading.Thread(target=self._run, daemon=True, name="timeline").start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from benchmarks.procstat import rss_mb

        while not self._stop.wait(1.0):
            try:
                queued = int(self.client.llen(WORK_QUEUE))
                results = int(self.client.xlen(RESULTS_STREAM))
            except Exception:
                continue
            rss = max((rss_mb(pid) for pid in list(self.pids)), default=0.0)
            self.points.append((time.time(), queued, results, rss))

    def window(self, t0: float, t1: float) -> list[tuple[float, int, int, float]]:
        return [p for p in self.points if t0 <= p[0] <= t1]


@dataclass
class Stored:
    """Per evaluation: (created_at, stored_at, trace end_time, judge latency s), epoch seconds."""

    rows: list[tuple[float, float, float | None, float]]
    cached: int = 0
    """Verdicts served from the judge cache (the benchmark makes every prompt unique: 0)."""

    @classmethod
    def load(cls, db: Path) -> Stored:
        with Store(db, read_only=True, lock_timeout_s=60) as store:
            found = store.conn.execute(
                "SELECT e.trace_id, e.created_at, t.received_at, t.trace_json,"
                " coalesce(e.latency_ms, 0)"
                " FROM evaluations e JOIN traces t USING (trace_id)").fetchall()
            cached = store.conn.execute("SELECT count(*) FROM evaluations WHERE cached").fetchone()[0]
        ends: dict[str, float | None] = {}
        rows = []
        for trace_id, created, stored, trace_json, latency_ms in found:
            if trace_id not in ends:
                end = json.loads(trace_json).get("end_time")
                ends[trace_id] = datetime.fromisoformat(end).timestamp() if end else None
            rows.append((created.timestamp(), stored.timestamp(), ends[trace_id],
                         latency_ms / 1000))
        return cls(rows, cached)

    def stored_per_s(self, t0: float, t1: float) -> float:
        return sum(t0 <= r[1] <= t1 for r in self.rows) / (t1 - t0)

    def in_flight(self, t0: float, t1: float) -> float:
        """Mean judge calls in flight (Little's law over the calls that finished in the window)."""
        return sum(r[3] for r in self.rows if t0 <= r[0] <= t1) / (t1 - t0)

    def sink_lag(self, t0: float, t1: float) -> list[float]:
        """Stored minus judged, for the traces whose spans ended in the window."""
        return [r[1] - r[0] for r in self.rows if r[2] is not None and t0 <= r[2] <= t1]

    def latencies(self, t0: float, t1: float) -> tuple[list[float], list[float]]:
        """(span end -> stored, span end -> judged) of the traces whose spans ended in the window."""
        chosen = [r for r in self.rows if r[2] is not None and t0 <= r[2] <= t1]
        return [r[1] - r[2] for r in chosen], [r[0] - r[2] for r in chosen]


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method), NaN for no values."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def read_timings(prefix: Path) -> dict[int, dict]:
    """The stage-timing snapshots of every process, by pid."""
    found = {}
    for path in prefix.parent.glob(prefix.name + ".*.json"):
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found[snap["pid"]] = snap
    return found


def stage_delta(before: dict[int, dict], after: dict[int, dict], pids: list[int]) -> dict[str, float]:
    """CPU seconds per stage between two snapshots, summed over `pids`."""
    total: dict[str, float] = {}
    for pid in pids:
        end = after.get(pid, {}).get("stages", {})
        start = before.get(pid, {}).get("stages", {})
        for stage, (cpu_ns, _) in end.items():
            total[stage] = total.get(stage, 0.0) + (cpu_ns - start.get(stage, [0, 0])[0]) / 1e9
    return total


CLIENT_LIBRARIES = ("openai/", "httpx", "httpcore", "anyio/", "h11/", "litellm/", "aiohttp/")
IDLE_LEAVES = ("Condition.wait", "Event.wait", "EpollSelector.select", "_worker (concurrent",
               "SocketBuffer._read_from_socket", "sleep", "brokers/redis.py:370")
"""py-spy here cannot tell a waiting thread from a running one: these leaves are waits (the
last is dramatiq's consumer backing off while its prefetch is full)."""


def profile_worker(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    """py-spy sampling the process for `seconds`, when py-spy is installed (it is optional)."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return None
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", f"{seconds:g}", "-r", "100",
                             "--nonblocking", "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _category(frames: list[str]) -> str:
    """By the innermost frame that tells: the client libraries, the judge layer (with
    redis.asyncio, which only its cache and rate limiter use in a worker), our modules, dramatiq
    (its asyncio module hosts the event loop: what runs there outside any of ours is the loop)."""
    for frame in reversed(frames):
        where = frame.partition(" (")[2]
        if where.startswith(CLIENT_LIBRARIES):
            return "judge client (openai/litellm, httpx)"
        if "evaluator/judges/" in where or where.startswith("redis/asyncio"):
            return "judge layer (cache, ledger, limits, retries)"
        if "evaluator/" in where:
            return "ours (decode, render, parse, records, publish, metrics)"
        if where.startswith("dramatiq/asyncio.py"):
            break
        if where.startswith("dramatiq/"):
            return "dramatiq (consume, ack, thread hand-off)"
    return "event loop and other"


def profile_split(folded: Path) -> dict[str, float]:
    """Share of the on-CPU samples by category, from py-spy's raw (folded) output."""
    counts: dict[str, int] = {}
    if not folded.is_file():
        return {}
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE_LEAVES) or "_start_writer" in stack:
            continue
        category = _category(frames)
        counts[category] = counts.get(category, 0) + int(count)
    total = sum(counts.values())
    return {name: count / total for name, count in sorted(counts.items())} if total else {}
