"""`evaluator replay` throughput: the offline judge, and an LLM judge or an OpenAI-compatible
target against the local test server at 200 ms latency (a separate process, so its CPU does not
mix with the client's).

Baselines from the same run: for the offline judge, `evaluate_items` over the same traces with
no store and no run bookkeeping (what replay adds is the difference); for the server rows, the
ceiling the latency allows at that concurrency (in-flight requests / latency), and the bare
openai client (`benchmarks.client_probe`, a process of its own) with as many calls in flight
against the same server, interleaved with the replays: on a shared machine that is what any
client gets right now, so replay's ratio to it is what our own code costs. The ledger's
latency per call (judge_calls.latency_ms) is set against the server's: a queue in the client
(its connection pool, a stalled event loop) shows there first.
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
from pathlib import Path

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
    """The bare openai client (`openai`: over aiohttp as our transport; `openai-httpx`: its
    default stack) with SERVER_CONCURRENCY calls in flight, in a process of its own."""
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


def _server_rows(tmp: Path, settings: Settings, base_url: str, quick: bool) -> list[dict]:
    ceiling = SERVER_CONCURRENCY / (LATENCY_MS / 1000)
    judge_settings = _judge_settings(tmp, base_url)
    # Client imports take seconds: not timed. Other traces, so the cache knows none of them.
    warm_up = _dataset(tmp / "warm-up.jsonl", 8, offset=1000, unique=True)
    for target in (None, f"openai:bench-app@{base_url}"):
        start_replay(warm_up, tmp / "warm-up.duckdb", judge_settings, ["relevance"],
                     "bench-local", target=target)
    rows = []
    count = 600 if quick else 1500
    replays: list[tuple[ReplayReport, float, Path]] = []
    bare: dict[str, list[dict]] = {"openai": [], "openai-httpx": []}
    for repeat in range(1 if quick else 2):  # interleaved: the machine's load hits all alike
        llm = _dataset(tmp / f"llm-{repeat}.jsonl", count, offset=repeat * count, unique=True)
        db = tmp / f"llm-{repeat}.duckdb"
        report, cpu_ms = _cpu_timed(lambda llm=llm, db=db: start_replay(
            llm, db, judge_settings, ["relevance"], "bench-local",
            concurrency=SERVER_CONCURRENCY))
        replays.append((report, cpu_ms, db))
        for kind in bare:
            bare[kind].append(_bare_client(kind, base_url))
    report, cpu_ms, db = sorted(replays, key=lambda r: r[0].items_per_s)[len(replays) // 2]
    bare_calls = statistics.median(b["calls_per_s"] for b in bare["openai"])
    httpx_calls = statistics.median(b["calls_per_s"] for b in bare["openai-httpx"])
    what = f"LLM judge at {LATENCY_MS} ms, 1 rubric, concurrency {SERVER_CONCURRENCY}"
    median_of = f"median of {len(replays)}, " if len(replays) > 1 else ""
    rows.append(_row(f"items/s, {what} ({median_of}{report.total} items, no cache hits)",
                     report.items_per_s, "items/s", "latency ceiling (in flight / latency)",
                     ceiling, goal=">= 0.9 of the ceiling"))
    rows.append(_row(f"items/s, {what}, against the bare client", report.items_per_s, "items/s",
                     f"bare openai client over aiohttp, {SERVER_CONCURRENCY} in flight, calls/s",
                     bare_calls))
    rows.append(_row(f"calls/s, bare openai client's default httpx pool (the transport before "
                     f"issue 23), {SERVER_CONCURRENCY} in flight", httpx_calls, "calls/s",
                     "the same client over aiohttp", bare_calls))
    rows.append(_row(f"client CPU per item, {what}", cpu_ms, "ms",
                     "bare client (aiohttp) CPU per call",
                     statistics.median(b["cpu_ms_per_call"] for b in bare["openai"])))
    rows.append(_row("CPU per call, bare openai client, default httpx pool",
                     statistics.median(b["cpu_ms_per_call"] for b in bare["openai-httpx"]), "ms",
                     "over aiohttp",
                     statistics.median(b["cpu_ms_per_call"] for b in bare["openai"])))
    p50, p95 = _ledger_ms(db)
    rows.append(_row(f"ledger latency per call, p50, {what}", p50, "ms", "server latency",
                     LATENCY_MS, goal="<= 1.1x the server's"))
    rows.append(_row(f"ledger latency per call, p95, {what}", p95, "ms", "server latency",
                     LATENCY_MS))
    rows.append(_row("bare client latency per call, p50 (aiohttp)",
                     statistics.median(b["p50_ms"] for b in bare["openai"]), "ms",
                     "server latency", LATENCY_MS))
    again = start_replay(tmp / "llm-0.jsonl", tmp / "llm-0.duckdb", judge_settings,
                         ["relevance"], "bench-local", concurrency=SERVER_CONCURRENCY)
    rows.append(_row(f"items/s, the same dataset again, verdicts from the judge cache "
                     f"({again.judge_calls} judge calls)", again.items_per_s, "items/s",
                     "first replay", replays[0][0].items_per_s, goal="0 judge calls"))
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
            rows += _server_rows(tmp, settings, f"http://127.0.0.1:{port}/v1", quick)
        finally:
            server.terminate()
            server.wait(timeout=10)
    return rows


if __name__ == "__main__":
    for result in run():
        print(result)
