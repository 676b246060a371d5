"""`evaluator replay` throughput: the offline judge, and an LLM judge or an OpenAI-compatible
target against the local test server at 200 ms latency (a separate process, so its CPU does not
mix with the client's).

Baselines from the same run: for the offline judge, `evaluate_items` over the same traces with
no store and no run bookkeeping (what replay adds is the difference); for the server rows, the
ceiling the latency allows at that concurrency (in-flight requests / latency), and two bare
clients (`benchmarks.client_probe`, each a process of its own) with as many calls in flight
against the same server, interleaved with the replays: a ready body posted with aiohttp alone
(the leanest client: what this machine allows right now, server included) and the openai
client's own call. On a shared machine the leanest client's rate is the ceiling that can be
reached at that moment, so replay's ratio to it is what our own code costs. The ledger's
latency per call (judge_calls.latency_ms) is set against the server's: a queue in the client
(its connection pool, a stalled event loop) shows there first. CPU per item is the whole
process's and the event-loop thread's (the one that caps the rate), the judge server's per
request beside it; the load average says how busy the machine was.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procstat import cpu_s
from evaluator.core.records import parse_trace
from evaluator.core.settings import Settings
from evaluator.core.work import WorkItem
from evaluator.judges.factory import load_judge
from evaluator.regression.datasets import DatasetItem, read_dataset, write_dataset
from evaluator.regression.replay import REPLAY_DECISION, ReplayReport, start_replay
from evaluator.rubrics import RubricRegistry
from evaluator.worker.pipeline import evaluate_items

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
LATENCY_MS = 200
SERVER_CONCURRENCY = 64
JUDGE_IN_FLIGHT = 256
PROBE_S = 4.0
"""Seconds each bare-client probe counts calls, after its warm-up."""


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None):
    ratio = value / baseline_value if baseline_value else None
    return {"benchmark": "replay", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def _dataset(path: Path, count: int, offset: int = 0, unique: bool = False) -> Path:
    """`count` items made from the sample traces from `offset` on (cycled, distinct ids);
    `unique`: every output differs, so no verdict comes from the judge cache."""
    with open(SAMPLE, encoding="utf-8") as lines:
        traces = [json.loads(line) for line in lines]
    items = []
    for i in range(count):
        trace = traces[(offset + i) % len(traces)]
        output = f"{trace['output']} (answer {i})" if unique else trace["output"]
        items.append(DatasetItem(id=f"bench-{i:06d}", input=trace["input"],
                                 context=trace["context"], output=output,
                                 label_source="judge",
                                 metadata={"system": trace["system"]} if trace["system"] else {}))
    write_dataset(path, items)
    return path


def _pipeline_items_per_s(dataset: Path, settings: Settings) -> float:
    """evaluate_items alone, in batches, on the traces a replay of `dataset` would judge."""
    rubrics = RubricRegistry.load(settings.rubrics_dir).latest()
    judge = load_judge("offline", settings.judges_dir)
    work = [WorkItem(parse_trace(item.trace_payload(f"bench/{item.id}")), REPLAY_DECISION)
            for item in read_dataset(dataset)]

    async def judge_all() -> None:
        for start in range(0, len(work), 100):
            await evaluate_items(work[start:start + 100], rubrics, judge)

    started = time.perf_counter()
    asyncio.run(judge_all())
    return len(work) / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.openai_server", "--port", str(port),
         "--latency-ms", str(LATENCY_MS)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if "listening on" not in (server.stdout.readline() if server.stdout else ""):
        server.kill()
        raise RuntimeError("the local OpenAI-compatible server did not start")
    return server


def _judge_settings(tmp: Path, base_url: str) -> Settings:
    judges = tmp / "judges"
    judges.mkdir(exist_ok=True)
    (judges / "bench-local.yaml").write_text(
        f"kind: litellm\nmodel: openai/bench-judge\napi_base: {base_url}\n"
        "api_key_env: EVALUATOR_BENCH_JUDGE_KEY\nparams: {temperature: 0}\n"
        f"limits: {{max_in_flight: {JUDGE_IN_FLIGHT}, timeout_s: 30, max_attempts: 2}}\n",
        encoding="utf-8")
    os.environ.setdefault("EVALUATOR_BENCH_JUDGE_KEY", "sk-bench-not-a-real-key")
    return Settings.from_env(judges_dir=judges)


def _cpu_timed(replay: Callable[[], ReplayReport]) -> tuple[ReplayReport, float]:
    """The replay's report and this process's CPU milliseconds per item it took."""
    started = time.process_time()
    report = replay()
    return report, (time.process_time() - started) * 1000 / report.total


@dataclass
class _Measured:
    """One replay against the local server, with what it cost whom."""

    report: ReplayReport
    db: Path
    cpu_ms: float
    """This process's CPU per item (every thread: the store writes and the cache's too)."""
    loop_cpu_ms: float
    """The event loop's thread alone (asyncio.run runs on the caller's thread)."""
    server_cpu_ms: float
    """The judge server process's CPU per request while the replay ran."""
    load: float
    """The machine's 1-minute load average right after."""


def _measured(replay: Callable[[], ReplayReport], db: Path, server_pid: int) -> _Measured:
    process, thread, server = time.process_time(), time.thread_time(), cpu_s(server_pid)
    report = replay()
    per_item = 1000 / report.total
    return _Measured(report, db, (time.process_time() - process) * per_item,
                     (time.thread_time() - thread) * per_item,
                     (cpu_s(server_pid) - server) * per_item, os.getloadavg()[0])


@contextmanager
def _cold_judge_cache(directory: Path) -> Iterator[None]:
    """A judge cache file of our own, empty at the start (restores the environment after)."""
    name = "EVALUATOR_JUDGE_CACHE"
    previous = os.environ.get(name)
    os.environ[name] = str(directory / "judge-cache.sqlite")
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def _offline_row(tmp: Path, settings: Settings, quick: bool) -> dict:
    offline = _dataset(tmp / "offline.jsonl", 1000 if quick else 5000)
    bare = _pipeline_items_per_s(offline, settings)
    report = start_replay(offline, tmp / "offline.duckdb", settings, judge_name="offline")
    return _row(f"items/s, offline judge, 4 rubrics ({report.total} items)", report.items_per_s,
                "items/s", "evaluate_items alone (no store)", bare, goal=">= 0.8 of the pipeline")


def _bare_client(kind: str, url: str) -> dict:
    """A bare client (`aiohttp`: a ready body posted with aiohttp alone, the leanest a Python
    client gets; `openai`: the openai client's own call, the transport before issue 23 item 4)
    with SERVER_CONCURRENCY calls in flight, in a process of its own."""
    probe = subprocess.run(
        [sys.executable, "-m", "benchmarks.client_probe", kind, url, "--in-flight",
         str(SERVER_CONCURRENCY), "--seconds", str(PROBE_S)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(probe.stdout.strip().splitlines()[-1])


def _ledger_ms(db: Path) -> tuple[float, float]:
    """p50 and p95 of the judge calls' latency in the ledger of `db`."""
    from evaluator.store import Store

    with Store(db, read_only=True) as store:
        found = [row[0] for row in store.conn.execute(
            "SELECT latency_ms FROM judge_calls WHERE NOT cached").fetchall()]
    cuts = statistics.quantiles(found, n=20)
    return cuts[9], cuts[18]


def _server_rows(tmp: Path, settings: Settings, base_url: str, quick: bool,
                 server_pid: int) -> list[dict]:
    ceiling = SERVER_CONCURRENCY / (LATENCY_MS / 1000)
    judge_settings = _judge_settings(tmp, base_url)
    # Client imports take seconds: not timed. Other traces, so the cache knows none of them.
    warm_up = _dataset(tmp / "warm-up.jsonl", 8, offset=1000, unique=True)
    for target in (None, f"openai:bench-app@{base_url}"):
        start_replay(warm_up, tmp / "warm-up.duckdb", judge_settings, ["relevance"],
                     "bench-local", target=target)
    rows = []
    # Whole rounds of SERVER_CONCURRENCY: a run of n items takes ceil(n / in flight) latencies at
    # best, so with 600 the ceiling itself allowed 0.94 of in-flight/latency (10 rounds for 9.4).
    count = SERVER_CONCURRENCY * (10 if quick else 24)
    replays: list[_Measured] = []
    bare: dict[str, list[dict]] = {"aiohttp": [], "openai": []}
    for repeat in range(1 if quick else 3):  # interleaved: the machine's load hits all alike
        llm = _dataset(tmp / f"llm-{repeat}.jsonl", count, offset=repeat * count, unique=True)
        db = tmp / f"llm-{repeat}.duckdb"
        replays.append(_measured(lambda llm=llm, db=db: start_replay(
            llm, db, judge_settings, ["relevance"], "bench-local",
            concurrency=SERVER_CONCURRENCY), db, server_pid))
        for kind in bare:
            bare[kind].append(_bare_client(kind, base_url))
    middle = sorted(range(len(replays)), key=lambda i: replays[i].report.items_per_s)[len(replays) // 2]
    run, lean, sdk = replays[middle], bare["aiohttp"][middle], bare["openai"][middle]
    report = run.report
    what = f"LLM judge at {LATENCY_MS} ms, 1 rubric, concurrency {SERVER_CONCURRENCY}"
    median_of = f"median of {len(replays)}, " if len(replays) > 1 else ""
    lean_name = f"bare aiohttp client, {SERVER_CONCURRENCY} in flight, same moment, calls/s"
    rows.append(_row(f"items/s, {what} ({median_of}{report.total} items, no cache hits)",
                     report.items_per_s, "items/s", "latency ceiling (in flight / latency)",
                     ceiling, goal=">= 0.9 of the ceiling"))
    rows.append(_row(f"items/s, {what}, against the leanest client", report.items_per_s,
                     "items/s", lean_name, lean["calls_per_s"], goal=">= 0.9"))
    rows.append(_row(f"calls/s, {lean_name.removesuffix(', calls/s')} (what this machine "
                     "allows now)", lean["calls_per_s"], "calls/s", "latency ceiling", ceiling))
    rows.append(_row(f"items/s, {what}, against the openai client's own call", report.items_per_s,
                     "items/s", f"bare openai client (its aiohttp backend), {SERVER_CONCURRENCY} "
                     "in flight, calls/s", sdk["calls_per_s"]))
    rows.append(_row(f"client CPU per item, {what} (the process: loop, store and cache threads)",
                     run.cpu_ms, "ms", "bare aiohttp client CPU per call", lean["cpu_ms_per_call"]))
    rows.append(_row(f"client CPU per item, {what}, event-loop thread", run.loop_cpu_ms, "ms",
                     "bare openai client CPU per call", sdk["cpu_ms_per_call"]))
    rows.append(_row("judge server CPU per request (the local server, during the replay)",
                     run.server_cpu_ms, "ms"))
    p50, p95 = _ledger_ms(run.db)
    rows.append(_row(f"ledger latency per call, p50, {what}", p50, "ms", "server latency",
                     LATENCY_MS, goal="<= 1.1x the server's"))
    rows.append(_row(f"ledger latency per call, p95, {what}", p95, "ms", "server latency",
                     LATENCY_MS))
    rows.append(_row("bare aiohttp client latency per call, p50", lean["p50_ms"], "ms",
                     "server latency", LATENCY_MS))
    rows.append(_row("load average (1 min) after the replay above", run.load, "",
                     "cores", os.cpu_count()))
    again = start_replay(tmp / "llm-0.jsonl", tmp / "llm-0.duckdb", judge_settings,
                         ["relevance"], "bench-local", concurrency=SERVER_CONCURRENCY)
    rows.append(_row(f"items/s, the same dataset again, verdicts from the judge cache "
                     f"({again.judge_calls} judge calls)", again.items_per_s, "items/s",
                     "first replay", replays[0].report.items_per_s, goal="0 judge calls"))
    target = _dataset(tmp / "target.jsonl", 300 if quick else 1500)
    report, cpu_ms = _cpu_timed(lambda: start_replay(
        target, tmp / "target.duckdb", settings, judge_name="offline",
        target=f"openai:bench-app@{base_url}", concurrency=SERVER_CONCURRENCY))
    what = (f"OpenAI-compatible target at {LATENCY_MS} ms + offline judge, concurrency "
            f"{SERVER_CONCURRENCY}")
    rows.append(_row(f"items/s, {what} ({report.total} items)", report.items_per_s, "items/s",
                     "latency ceiling", ceiling))
    rows.append(_row(f"client CPU per item, {what}", cpu_ms, "ms"))
    return rows


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp_name, _cold_judge_cache(Path(tmp_name)):
        tmp = Path(tmp_name)
        settings = Settings.from_env()
        rows = [_offline_row(tmp, settings, quick)]
        port = _free_port()
        server = _start_server(port)
        try:
            rows += _server_rows(tmp, settings, f"http://127.0.0.1:{port}/v1", quick,
                                 server.pid)
        finally:
            server.terminate()
            server.wait(timeout=10)
    return rows


if __name__ == "__main__":
    for result in run():
        print(result)
