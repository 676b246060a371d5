"""The same faithfulness job through Evaluator and two peer libraries, on the same local judge.

600 items (the sample traces, each answer made unique so no verdict comes from a cache), one
faithfulness verdict each, 64 calls in flight, the local OpenAI-compatible server at 200 ms in a
process of its own:
- Evaluator: `evaluator replay` with the faithfulness rubric (its store, ledger and run
  bookkeeping included);
- autoevals (0.4.1): an `LLMClassifier` asking the same question (its documented way to build a
  classifier), `eval_async` per item;
- Phoenix evals (arize-phoenix-evals 3.9.4): its `FaithfulnessEvaluator`, `async_evaluate` per item.
Each peer gets an openai client pointed at the server and 64 items at once (an asyncio semaphore).
The three run interleaved, so the machine's load hits them alike; CPU is this process's per item.
The peers are an optional extra (`pip install -e '.[bench]'`); a missing one is skipped with a note.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.bench_replay import _cold_judge_cache, _dataset, _free_port, _judge_settings, _start_server
from evaluator.regression.datasets import DatasetItem, read_dataset
from evaluator.regression.replay import start_replay

LATENCY_MS = 200
IN_FLIGHT = 64
ITEMS = 600
QUESTION = ("Context: {{context}}\nQuestion: {{input}}\nAnswer: {{output}}\n"
            "Is every claim of the answer supported by the context?")


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None):
    ratio = value / baseline_value if baseline_value else None
    return {"benchmark": "peers", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def _fields(item: DatasetItem) -> dict[str, str]:
    question = item.input if isinstance(item.input, str) else str(item.input[-1].content)
    return {"input": question, "output": item.output or "", "context": "\n".join(item.context)}


Evaluate = Callable[[dict[str, str]], Awaitable[object]]
"""One peer's evaluation of one item; made inside the event loop that runs it (async clients
belong to their loop)."""


def _autoevals(url: str) -> Callable[[], Evaluate] | None:
    try:
        import autoevals
        import openai
    except ImportError:
        return None

    def make() -> Evaluate:
        autoevals.init(client=openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0))
        classifier = autoevals.LLMClassifier(
            name="faithfulness", prompt_template=QUESTION, use_cot=True, model="bench-judge",
            choice_scores={"faithful": 1, "unfaithful": 0})
        return lambda fields: classifier.eval_async(**fields)
    return make


def _phoenix(url: str) -> Callable[[], Evaluate] | None:
    try:
        from phoenix.evals import LLM
        from phoenix.evals.metrics.faithfulness import FaithfulnessEvaluator
    except ImportError:
        return None

    def make() -> Evaluate:
        llm = LLM(provider="openai", model="bench-judge", base_url=url, api_key="bench")
        return FaithfulnessEvaluator(llm=llm).async_evaluate
    return make


async def _peer_job(make: Callable[[], Evaluate], items: list[dict[str, str]]) -> None:
    evaluate = make()
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(fields: dict[str, str]) -> None:
        async with slots:
            await evaluate(fields)

    await asyncio.gather(*(one(fields) for fields in items))


def _timed(job: Callable[[], object], count: int) -> tuple[float, float]:
    """Items/s and CPU ms per item of `job`."""
    wall, cpu = time.perf_counter(), time.process_time()
    job()
    return (count / (time.perf_counter() - wall),
            (time.process_time() - cpu) * 1000 / count)


def run(quick: bool = False) -> list[dict]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory() as tmp_name, _cold_judge_cache(Path(tmp_name)):
        tmp = Path(tmp_name)
        port = _free_port()
        server = _start_server(port)
        try:
            return _rows(tmp, f"http://127.0.0.1:{port}/v1", 1 if quick else 2)
        finally:
            server.terminate()
            server.wait(timeout=10)


def _rows(tmp: Path, url: str, repeats: int) -> list[dict]:
    settings = _judge_settings(tmp, url)
    peers = {"autoevals 0.4.1 (LLMClassifier)": _autoevals(url),
             "Phoenix evals 3.9.4 (FaithfulnessEvaluator)": _phoenix(url)}
    for name, evaluate in peers.items():
        if evaluate is None:
            print(f"  note: {name.split(' (')[0]} is not installed: its row is skipped "
                  "(pip install -e '.[bench]')", flush=True)
    peers = {name: evaluate for name, evaluate in peers.items() if evaluate is not None}
    warm_up = read_dataset(_dataset(tmp / "warm-up.jsonl", 4, offset=1500, unique=True))
    start_replay(tmp / "warm-up.jsonl", tmp / "warm-up.duckdb", settings, ["faithfulness"],
                 "bench-local")
    for evaluate in peers.values():  # imports and client set-up, not timed
        asyncio.run(_peer_job(evaluate, [_fields(item) for item in warm_up]))
    measured: dict[str, list[tuple[float, float]]] = {"evaluator": [], **{n: [] for n in peers}}
    for repeat in range(repeats):
        dataset = _dataset(tmp / f"job-{repeat}.jsonl", ITEMS, offset=repeat * ITEMS, unique=True)
        measured["evaluator"].append(_timed(lambda dataset=dataset, repeat=repeat: start_replay(
            dataset, tmp / f"job-{repeat}.duckdb", settings, ["faithfulness"], "bench-local",
            concurrency=IN_FLIGHT), ITEMS))
        items = [_fields(item) for item in read_dataset(dataset)]
        for name, evaluate in peers.items():
            measured[name].append(_timed(lambda evaluate=evaluate, items=items: asyncio.run(
                _peer_job(evaluate, items)), ITEMS))
    rates = {name: statistics.median(m[0] for m in runs) for name, runs in measured.items()}
    cpus = {name: statistics.median(m[1] for m in runs) for name, runs in measured.items()}
    what = (f"{ITEMS}-item faithfulness job, {IN_FLIGHT} in flight, judge at {LATENCY_MS} ms"
            f"{f', median of {repeats}' if repeats > 1 else ''}")
    ceiling = IN_FLIGHT / (LATENCY_MS / 1000)
    rows = [_row(f"evaluations/s, {what}: evaluator replay", rates["evaluator"], "evals/s",
                 "latency ceiling (in flight / latency)", ceiling)]
    ours = "evaluator replay, same run"
    for name in peers:
        rows.append(_row(f"evaluations/s, {what}: {name}", rates[name], "evals/s", ours,
                         rates["evaluator"]))
    rows.append(_row(f"CPU per evaluation, {what}: evaluator replay", cpus["evaluator"], "ms"))
    for name in peers:
        rows.append(_row(f"CPU per evaluation, {what}: {name}", cpus[name], "ms", ours,
                         cpus["evaluator"]))
    return rows


if __name__ == "__main__":
    for result in run():
        print(result)
