"""Conformance driver: each instrumentation package set around a real openai client, every mode.

Runs with the main virtualenv's python, from the project root:

    .venv/bin/python -m tests.conformance.driver BASE_URL OUT_DIR SET [SET ...]

It imports openai, the SDK and the evaluator once, then forks one child per package set (in
parallel), which puts that set's virtualenv (scripts/conformance_envs.py) first on its path and
imports the set's packages; every package both hold has one version (constraints.txt, checked),
so what was imported before the fork is what the set's virtualenv holds. Each mode runs in a
child forked from the set's (modes differ in environment variables the packages read once, at
instrumentation or at first use). The mode's child sets the mode's environment, instruments
openai with the package, makes the calls of `scenarios` against the local OpenAI-compatible
test server and writes to OUT_DIR/<set>/<mode>/:
  - otlp.jsonl: its spans and log records, as the Collector's file exporter writes them;
  - live.json: the scenarios' trace ids, the Traces the live EvaluatorSpanExporter (with the
    EvaluatorLogExporter) built and why each was sampled, and both exporters' counters.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from evaluator.ingest.otel import EvaluatorLogExporter, EvaluatorSpanExporter
from evaluator.sampling.policy import SamplingPolicy
from scripts.conformance_envs import use_env
from tests.conformance import scenarios as s
from tests.support.otlp_files import otlp_json_lines

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST = "gen_ai_latest_experimental"


class Recorder:
    """The spans and log records for the file, and the live exporters fed the same objects."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.logs = InMemoryLogRecordExporter()
        self.items: list[Any] = []
        self.live = EvaluatorSpanExporter(sink=self.items.extend, mask=lambda trace: trace,
                                          policy=SamplingPolicy(rate=1.0))
        self.live_logs = EvaluatorLogExporter(self.live)
        self.span_processors = [SimpleSpanProcessor(self.spans), SimpleSpanProcessor(self.live)]

    def providers(self, service: str) -> tuple[TracerProvider, LoggerProvider]:
        resource = Resource.create({"service.name": service})
        tracer_provider = TracerProvider(resource=resource)
        for processor in self.span_processors:
            tracer_provider.add_span_processor(processor)
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.live_logs))
        return tracer_provider, logger_provider

    def write(self, out: Path, scenario_traces: dict[str, list[str]]) -> None:
        self.live.force_flush()
        out.mkdir(parents=True, exist_ok=True)
        lines = otlp_json_lines(self.spans.get_finished_spans(), self.logs.get_finished_logs())
        (out / "otlp.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        live = {
            "scenarios": scenario_traces,
            "traces": [{"trace": item.trace.model_dump(mode="json"), "sampled_because": item.decision.reason}
                       for item in self.items],
            "stats": self.live.stats,
            "log_stats": self.live_logs.stats,
        }
        (out / "live.json").write_text(json.dumps(live, indent=1), encoding="utf-8")


@dataclass
class Instrumented:
    """What a scenario needs from the package set in one mode."""

    app_span: Callable[..., AbstractContextManager[Any]]
    """app_span(name, attributes): a span of the app's own, on the same provider."""
    session: Callable[[], AbstractContextManager[Any]]
    """The package's way of giving the calls inside a session and a user id."""
    retrieve: Callable[[bool], AbstractContextManager[Any]] | None = None
    """A retrieval span made through the package (with document text or ids only), if it has one."""
    scenarios: tuple[str, ...] = field(default=s.SUCCESSFUL + s.FAILING)


def _tracer_span(tracer: Any) -> Callable[..., AbstractContextManager[Any]]:
    return lambda name, attributes=None: tracer.start_as_current_span(name, attributes=attributes)


def _session_span(app_span: Callable[..., AbstractContextManager[Any]],
                  session_key: str = "session.id", user_key: str = "user.id"):
    return lambda: app_span("handle request", {session_key: s.SESSION_ID, user_key: s.USER_ID})


# -- the package sets -------------------------------------------------------------------------


def openai_v2(recorder: Recorder, options: dict[str, Any]) -> Instrumented:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    tracer_provider, logger_provider = recorder.providers("conformance-openai-v2")
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    app_span = _tracer_span(tracer_provider.get_tracer("app"))
    scenarios = tuple(name for name in s.SUCCESSFUL + s.FAILING if name not in (s.RAG, s.RAG_IDS_ONLY))
    if not options.get("util_genai"):
        return Instrumented(app_span, _session_span(app_span), scenarios=scenarios)
    from opentelemetry.util.genai.handler import TelemetryHandler

    handler = TelemetryHandler(tracer_provider=tracer_provider, logger_provider=logger_provider)

    @contextmanager
    def retrieve(with_text: bool) -> Iterator[None]:
        with handler.retrieval(data_source_id="kb", provider="chroma") as retrieval:
            retrieval.query_text = s.RAG_QUESTION
            # documents are serialized as given: the spec's carry an id and a score only
            retrieval.documents = [{"id": f"doc-{n}", "score": 0.9 - n / 10, **({"content": text} if with_text else {})}
                                   for n, text in enumerate(s.DOCUMENTS)]
            yield

    return Instrumented(app_span, _session_span(app_span), retrieve)


def openllmetry(recorder: Recorder, options: dict[str, Any]) -> Instrumented:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    tracer_provider, logger_provider = recorder.providers("conformance-openllmetry")
    OpenAIInstrumentor(**options).instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    app_span = _tracer_span(tracer_provider.get_tracer("app"))
    # traceloop-sdk (not installed) copies its association properties onto every span of the
    # context under these names; the app span stands in for it.
    session = _session_span(app_span, "traceloop.association.properties.session_id",
                            "traceloop.association.properties.user_id")
    scenarios = tuple(name for name in s.SUCCESSFUL + s.FAILING if name not in (s.RAG, s.RAG_IDS_ONLY))
    return Instrumented(app_span, session, scenarios=scenarios)


def openinference(recorder: Recorder, options: dict[str, Any]) -> Instrumented:
    from openinference.instrumentation import (
        OITracer,
        TraceConfig,
        get_retriever_attributes,
        using_session,
        using_user,
    )
    from openinference.instrumentation.openai import OpenAIInstrumentor

    tracer_provider, _ = recorder.providers("conformance-openinference")
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    tracer = OITracer(tracer_provider.get_tracer("app"), config=TraceConfig())

    @contextmanager
    def session() -> Iterator[None]:
        with using_session(s.SESSION_ID), using_user(s.USER_ID):
            yield

    @contextmanager
    def retrieve(with_text: bool) -> Iterator[None]:
        documents = [{"id": f"doc-{n}", "score": 0.9 - n / 10, **({"content": text} if with_text else {})}
                     for n, text in enumerate(s.DOCUMENTS)]
        with tracer.start_as_current_span("retrieve", openinference_span_kind="retriever") as span:
            span.set_input(s.RAG_QUESTION)
            span.set_attributes(get_retriever_attributes(documents=documents))
            yield

    return Instrumented(_tracer_span(tracer), session, retrieve)


def logfire_set(recorder: Recorder, options: dict[str, Any]) -> Instrumented:
    import logfire

    logfire.configure(send_to_logfire=False, console=False, metrics=False, service_name="conformance-logfire",
                      additional_span_processors=recorder.span_processors, inspect_arguments=False)
    logfire.instrument_openai(**options)

    def app_span(name: str, attributes: dict[str, Any] | None = None) -> AbstractContextManager[Any]:
        return logfire.span(name, _span_name=name, **(attributes or {}))

    scenarios = tuple(name for name in s.SUCCESSFUL + s.FAILING if name not in (s.RAG, s.RAG_IDS_ONLY))
    return Instrumented(app_span, _session_span(app_span), scenarios=scenarios)


@dataclass(frozen=True)
class Mode:
    name: str
    env: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PackageSet:
    instrument: Callable[[Recorder, dict[str, Any]], Instrumented]
    modes: tuple[Mode, ...]
    preload: tuple[str, ...]
    """Modules imported once, before the modes fork (none reads a mode's settings at import)."""


SETS = {
    "openai-v2-2-3": PackageSet(openai_v2, (
        Mode("events", {CAPTURE: "true"}),
        Mode("no_content", {CAPTURE: "false"}),
    ), ("opentelemetry.instrumentation.openai_v2",)),
    "openai-v2-2-4": PackageSet(openai_v2, (
        # with util-genai 1.x the opt-in is always on: "true" is no valid mode there, no content
        Mode("capture_true", {CAPTURE: "true"}),
        Mode("span_only", {OPT_IN: LATEST, CAPTURE: "span_only"}, {"util_genai": True}),
        Mode("event_only", {OPT_IN: LATEST, CAPTURE: "event_only"}, {"util_genai": True}),
        Mode("span_and_event", {OPT_IN: LATEST, CAPTURE: "span_and_event"}, {"util_genai": True}),
    ), ("opentelemetry.instrumentation.openai_v2", "opentelemetry.util.genai.handler")),
    "openllmetry-0-52": PackageSet(openllmetry, (
        Mode("attributes", {}, {"use_legacy_attributes": True}),
        Mode("events", {}, {"use_legacy_attributes": False}),
    ), ("opentelemetry.instrumentation.openai", "opentelemetry.instrumentation.openai.v1")),
    "openllmetry-0-62": PackageSet(openllmetry, (
        Mode("attributes", {}, {"use_attributes": True}),
        Mode("events", {}, {"use_attributes": False}),
    ), ("opentelemetry.instrumentation.openai", "opentelemetry.instrumentation.openai.v1")),
    "openinference-0-1": PackageSet(openinference, (Mode("attributes", {}),),
                                    ("openinference.instrumentation", "openinference.instrumentation.openai")),
    "logfire-5": PackageSet(logfire_set, (
        Mode("semconv_2", {}, {"version": 2}),
        Mode("semconv_1", {}, {"version": 1}),
    ), ("logfire", "logfire._internal.integrations.llm_providers.openai")),
}


# -- the calls ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ask(client: openai.OpenAI, question: str, *, model: str = s.MODEL, system: str | None = s.SYSTEM,
         **options: Any) -> Any:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return client.chat.completions.create(model=model, messages=messages, **options)


def run_scenario(name: str, client: openai.OpenAI, unreachable: openai.OpenAI, used: Instrumented) -> None:
    if name == s.PLAIN:
        _ask(client, s.QUESTION)
    elif name == s.JSON_ANSWER:
        _ask(client, s.JSON_QUESTION, response_format={"type": "json_object"})
    elif name == s.STREAM:
        for _chunk in _ask(client, s.QUESTION, stream=True, stream_options={"include_usage": True}):
            pass
    elif name == s.CONTENT_FILTER:
        _ask(client, s.FILTERED_QUESTION)
    elif name == s.SESSION:
        with used.session():
            _ask(client, s.QUESTION)
    elif name in (s.RAG, s.RAG_IDS_ONLY):
        assert used.retrieve is not None
        with used.app_span("answer question"):
            with used.retrieve(name == s.RAG):
                pass
            _ask(client, s.RAG_QUESTION, system=f"{s.SYSTEM} Use these documents: " + " ".join(s.DOCUMENTS))
    elif name == s.NOT_FOUND:
        try:
            _ask(client, s.NOT_FOUND_QUESTION, model=s.MISSING_MODEL)
        except openai.NotFoundError:
            pass
        else:
            raise AssertionError("the test server should have answered 404")
    elif name == s.CONNECTION_ERROR:
        try:
            _ask(unreachable, s.QUESTION)
        except openai.APIConnectionError:
            pass
        else:
            raise AssertionError("nothing should listen on the closed port")
    else:
        raise ValueError(f"unknown scenario {name!r}")


def run_mode(package_set: PackageSet, mode: Mode, base_url: str, out: Path) -> None:
    os.environ.update(mode.env)
    recorder = Recorder()
    used = package_set.instrument(recorder, mode.options)
    client = openai.OpenAI(base_url=base_url, api_key="sk-conformance", max_retries=0, timeout=10)
    unreachable = openai.OpenAI(base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key="sk-conformance",
                                max_retries=0, timeout=10)
    scenario_traces: dict[str, list[str]] = {}
    for name in used.scenarios:
        seen = len(recorder.spans.get_finished_spans())
        run_scenario(name, client, unreachable, used)
        new = recorder.spans.get_finished_spans()[seen:]
        scenario_traces[name] = sorted({f"{span.context.trace_id:032x}" for span in new})
    recorder.write(out, scenario_traces)


def _forked(run: Callable[[], None]) -> int:
    """Run `run` in a forked child (its traceback printed if it raises); the child's pid."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            run()
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    return pid


def _wait(pids: dict[str, int]) -> list[str]:
    """The names whose child failed."""
    return [name for name, pid in pids.items() if os.waitpid(pid, 0)[1] != 0]


def run_set(name: str, base_url: str, out: Path) -> None:
    use_env(name)
    package_set = SETS[name]
    for module in package_set.preload:
        importlib.import_module(module)
    failed = []
    for mode in package_set.modes:  # one after another: the sets already run side by side
        pid = _forked(lambda mode=mode: run_mode(package_set, mode, base_url, out / mode.name))
        failed += _wait({mode.name: pid})
    if failed:
        raise RuntimeError(f"conformance driver {name}: mode(s) {', '.join(failed)} failed "
                           "(see the traceback above)")


def main(argv: list[str]) -> int:
    base_url, out, *names = argv
    failed = _wait({name: _forked(lambda name=name: run_set(name, base_url, Path(out) / name))
                    for name in names})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
