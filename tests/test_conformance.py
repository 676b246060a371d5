"""Conformance: the real instrumentation packages, a real openai client, both ingestion paths.

Each package set is installed in its own virtualenv (`make conformance-envs`, which `.ci/run`
calls before `make test`; scripts/conformance_envs.py). One driver process
(tests/conformance/driver.py) imports openai, the SDK and the evaluator once and forks a child
per set on that set's packages, which instruments openai against the local test server in every
mode of the package and writes the spans and log records (Collector file format) plus what the
live EvaluatorSpanExporter and EvaluatorLogExporter built from the same objects. The drivers run
once for the module (all its tests in one xdist group). Here the file is read the way
`evaluator run/ingest --format otlp-json` reads it, and for every set and mode:
  - the file path and the live exporters build the same Traces and the same number of dead letters;
  - what is read (input, system, output, JSON answer kept whole, streaming, finish reason and
    the always-evaluate rule, model, tokens, session and user, retrieved context, errors) is
    exactly what ROWS declares, and README's table is ROWS rendered;
  - every successful call is a Trace, except the declared cases whose dead-letter reason says why.
Without the virtualenvs the module skips locally, and fails in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from evaluator.core.records import DeadLetter, Trace
from evaluator.ingest.otel.otlp_json import read_otlp_json_traces
from scripts.conformance_envs import ROOT, is_built, package_sets
from tests.conformance import scenarios as s
from tests.support.openai_server import REASONING, OpenAIServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("conformance")]

ANSWER = f"Reasoning: {REASONING}\nLabel: pass"
JSON_ANSWER = json.dumps({"reasoning": REASONING, "label": "pass"})
FILTERED_ANSWER = ANSWER[: ANSWER.index(REASONING) + len(REASONING) // 2]
DRIVER_TIMEOUT_S = 120
README_START, README_END = "<!-- conformance-table:start -->", "<!-- conformance-table:end -->"

ALL_READ = ("input", "system", "output", "JSON answer whole", "stream", "finish reason", "filtered answer",
            "model", "tokens", "session", "user", "error")


@dataclass(frozen=True)
class Row:
    """One package set and mode: what the evaluator reads, and the successful calls that end as
    dead letters with (a part of) the reason they carry."""

    package: str
    version: str
    mode: str
    reads: tuple[str, ...]
    dead: dict[str, str] = field(default_factory=dict)
    note: str = ""


_NO_CONTENT = {name: "carry no message content" for name in s.SUCCESSFUL if name not in (s.RAG, s.RAG_IDS_ONLY)}

ROWS: dict[tuple[str, str], Row] = {
    ("openai-v2-2-3", "events"): Row(
        "opentelemetry-instrumentation-openai-v2", "2.3b0", "`..._CAPTURE_MESSAGE_CONTENT=true` (log records)",
        ALL_READ),
    ("openai-v2-2-3", "no_content"): Row(
        "opentelemetry-instrumentation-openai-v2", "2.3b0", "content capture off (the default)",
        ("model", "error"), _NO_CONTENT,
        "dead letter: log records without content, `..._CAPTURE_MESSAGE_CONTENT=true`"),
    ("openai-v2-2-4", "capture_true"): Row(
        "opentelemetry-instrumentation-openai-v2 + util-genai 1.1b0", "2.4b0",
        "`..._CAPTURE_MESSAGE_CONTENT=true` (not a valid mode there: no content)",
        ("model", "error"),
        {name: "no GenAI log records or events were received" for name in _NO_CONTENT},
        "dead letter naming `span_only` with the opt-in"),
    **{("openai-v2-2-4", mode): Row(
        "opentelemetry-instrumentation-openai-v2 + util-genai 1.1b0", "2.4b0",
        f"`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`, `{mode}`", ALL_READ + reads, note=note)
       for mode, reads, note in (
           ("span_only", ("context",), "retrieval span with ids only: context empty, reason stored"),
           ("span_and_event", ("context",), "retrieval span with ids only: context empty, reason stored"),
           ("event_only", (), "retrieval documents are not recorded in this mode: reason stored"))},
    ("openllmetry-0-52", "attributes"): Row(
        "OpenLLMetry opentelemetry-instrumentation-openai", "0.52.6", "span attributes (the default)",
        tuple(read for read in ALL_READ if read != "filtered answer"),
        note="a content-filtered answer is recorded as the placeholder \"FILTERED\": stored as no output, "
             "the reason in `metadata.otel.output_missing`"),
    ("openllmetry-0-62", "attributes"): Row(
        "OpenLLMetry opentelemetry-instrumentation-openai", "0.62.4", "span attributes (the default)", ALL_READ),
    **{(name, "events"): Row(
        "OpenLLMetry opentelemetry-instrumentation-openai", version, "`use_attributes=False` (log records)",
        ALL_READ,
        note="a streamed answer's `gen_ai.choice` record has no span context: joined to the one span of "
             "the same service and scope open when it was emitted (none or several: dead letter)")
       for name, version in (("openllmetry-0-52", "0.52.6"), ("openllmetry-0-62", "0.62.4"))},
    ("openinference-0-1", "attributes"): Row(
        "openinference-instrumentation-openai", "0.1.66", "span attributes", ALL_READ + ("context",),
        note="retriever span made with openinference-instrumentation's OITracer"),
    ("logfire-5", "semconv_2"): Row(
        "logfire", "5.4.0", "`instrument_openai()` (semconv version 2, the default)",
        tuple(read for read in ALL_READ if read != "session"),
        note="logfire's default scrubbing replaces a `session.id`: left out, the call is still evaluated"),
    ("logfire-5", "semconv_1"): Row(
        "logfire", "5.4.0", "`instrument_openai(version=1)`", tuple(read for read in ALL_READ if read != "session"),
        note="content read from `request_data`/`response_data`; scrubbing replaces a `session.id`, as above"),
}
"""The declared conformance results: README's table is this, rendered."""


@dataclass
class Run:
    """One package set in one mode: the scenarios' trace ids, both paths' results."""

    scenarios: dict[str, list[str]]
    file_traces: dict[str, Trace]
    file_dead: dict[str, DeadLetter]
    live_traces: dict[str, Trace]
    sampled_because: dict[str, str]
    live_stats: dict[str, int]

    def outcome(self, scenario: str) -> list[Trace | DeadLetter]:
        ids = self.scenarios[scenario]
        return [self.file_traces.get(i) or self.file_dead[i] for i in ids
                if i in self.file_traces or i in self.file_dead]


def _read_run(out: Path) -> Run:
    live = json.loads((out / "live.json").read_text())
    file_traces, file_dead = {}, {}
    for item in read_otlp_json_traces(out / "otlp.jsonl"):
        if isinstance(item, Trace):
            file_traces[item.trace_id] = item
        else:
            file_dead[json.loads(item.payload)[0]["trace_id"]] = item
    live_traces = {entry["trace"]["trace_id"]: Trace.model_validate(entry["trace"]) for entry in live["traces"]}
    return Run(live["scenarios"], file_traces, file_dead, live_traces,
               {entry["trace"]["trace_id"]: entry["sampled_because"] for entry in live["traces"]}, live["stats"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, str], Run]:
    sets = sorted(package_sets())
    missing = [name for name in sets if not is_built(name)]
    if missing:
        message = f"conformance virtualenvs missing ({', '.join(missing)}): run `make conformance-envs`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("conformance")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "TRACELOOP_"))}
    with OpenAIServer() as server:
        # a session of its own: on timeout the driver's forked children go with it
        driver = subprocess.Popen([sys.executable, "-m", "tests.conformance.driver", server.base_url, str(out), *sets],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        try:
            log = driver.communicate(timeout=DRIVER_TIMEOUT_S)[0]
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            log = driver.communicate()[0]
            pytest.fail(f"the conformance driver took over {DRIVER_TIMEOUT_S} s:\n{log}")
    if driver.returncode != 0:
        pytest.fail(f"the conformance driver failed:\n{log}")
    return {(name, mode.name): _read_run(out / name / mode.name)
            for name in sets for mode in _modes(name)}


def _modes(name: str):
    from tests.conformance.driver import SETS  # lazy: imports openai and the SDK, only with the envs

    return SETS[name].modes


def test_rows_cover_every_set_and_mode(runs):
    assert set(ROWS) == set(runs)


@pytest.mark.parametrize("key", sorted(ROWS), ids="/".join)
def test_file_and_live_exporters_agree(runs, key):
    run = runs[key]
    assert {i: t.model_dump() for i, t in run.live_traces.items()} == {
        i: t.model_dump() for i, t in run.file_traces.items()}
    assert run.live_stats["invalid"] == len(run.file_dead)
    assert run.live_stats["dropped_buffer_full"] == run.live_stats["traces_incomplete"] == 0


def _reads(run: Run) -> set[str]:
    """What the evaluator read back, scenario by scenario, from the file path (equal to live)."""
    found: set[str] = set()

    def trace(scenario: str) -> Trace | None:
        traces = [item for item in run.outcome(scenario) if isinstance(item, Trace)]
        return traces[0] if len(traces) == 1 else None

    plain, failed = trace(s.PLAIN), trace(s.NOT_FOUND)
    asked = plain or failed
    if asked is not None and asked.question in (s.QUESTION, s.NOT_FOUND_QUESTION):
        found.add("input")
    if asked is not None and asked.system == s.SYSTEM:
        found.add("system")
    if plain is not None and plain.output == ANSWER:
        found.add("output")
    if (answer := trace(s.JSON_ANSWER)) is not None and answer.output == JSON_ANSWER:
        found.add("JSON answer whole")
    if (streamed := trace(s.STREAM)) is not None and streamed.output == ANSWER and streamed.finish_reason == "stop":
        found.add("stream")
    if ((filtered := trace(s.CONTENT_FILTER)) is not None and filtered.finish_reason == "content_filter"
            and run.sampled_because[filtered.trace_id] == "content_filter"):
        found.add("finish reason")
    if filtered is not None and filtered.output == FILTERED_ANSWER:
        found.add("filtered answer")
    if failed is not None and failed.model == s.MISSING_MODEL and (plain is None or plain.model == s.MODEL):
        found.add("model")
    if plain is not None and plain.input_tokens and plain.output_tokens:
        found.add("tokens")
    if (session := trace(s.SESSION)) is not None:
        found.update({"session"} if session.session_id == s.SESSION_ID else set())
        found.update({"user"} if session.user_id == s.USER_ID else set())
    if s.RAG in run.scenarios and (rag := trace(s.RAG)) is not None and rag.context == list(s.DOCUMENTS):
        found.add("context")
    unreachable = trace(s.CONNECTION_ERROR)
    if (failed is not None and failed.status == "error" and failed.error is not None
            and failed.error.count("NotFoundError") == 1 and "does not exist" in failed.error
            and run.sampled_because[failed.trace_id] == "error" and unreachable is not None
            and re.fullmatch(r"(openai\.)?APIConnectionError: Connection error\.", unreachable.error or "")):
        found.add("error")
    return found


@pytest.mark.parametrize("key", sorted(ROWS), ids="/".join)
def test_what_is_read(runs, key):
    assert sorted(_reads(runs[key])) == sorted(ROWS[key].reads)


@pytest.mark.parametrize("key", sorted(ROWS), ids="/".join)
def test_successful_calls_are_traces_or_explained_dead_letters(runs, key):
    run, row = runs[key], ROWS[key]
    for scenario in run.scenarios:
        outcome = run.outcome(scenario)
        dead = [item for item in outcome if isinstance(item, DeadLetter)]
        if scenario in row.dead:
            assert dead and all(row.dead[scenario] in item.error for item in dead), (scenario, dead)
        else:
            assert dead == [], (scenario, [item.error for item in dead])
            assert len([item for item in outcome if isinstance(item, Trace)]) == 1


@pytest.mark.parametrize("key", [("openai-v2-2-4", "span_only"), ("openai-v2-2-4", "span_and_event"),
                                 ("openai-v2-2-4", "event_only"), ("openinference-0-1", "attributes")],
                         ids="/".join)
def test_retrieval_without_text_says_why(runs, key):
    [trace] = runs[key].outcome(s.RAG_IDS_ONLY)
    assert trace.context == []
    assert "without document text" in trace.metadata["otel"]["context_missing"]


@pytest.mark.parametrize("key", sorted(ROWS), ids="/".join)
def test_content_filtered_answer_is_its_text_or_says_why(runs, key):
    """Never an instrumentation's placeholder (OpenLLMetry 0.52's "FILTERED") taken for the answer."""
    for item in runs[key].outcome(s.CONTENT_FILTER):
        if isinstance(item, Trace):
            assert item.output in (FILTERED_ANSWER, ""), item.output
            assert item.output or "content-filtered" in item.metadata["otel"]["output_missing"]


def render_table() -> str:
    lines = ["| instrumentation | version | mode | read | notes |", "| --- | --- | --- | --- | --- |"]
    for row in ROWS.values():
        reads = ", ".join(row.reads) if row.reads else "nothing"
        lines.append(f"| {row.package} | {row.version} | {row.mode} | {reads} | {row.note} |")
    return "\n".join(lines)


def test_readme_table_is_the_conformance_result():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    assert readme[start:end].strip() == render_table(), (
        "README's conformance table is out of date; replace it with:\n" + render_table())


if __name__ == "__main__":
    sys.stdout.write(render_table() + "\n")
