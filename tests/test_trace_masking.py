"""PII masking covers every string of a trace (issue 13.3), identifiers are opaque or the trace is
a dead letter, dead letters and logs are masked too, and `input_hash` cannot be reversed (13.14)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import canonical_json, parse_trace
from evaluator.core.settings import Settings
from evaluator.ingest.otel.delivery import SinkDelivery
from evaluator.pii import PiiConfig, PiiMasker
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded

EMAIL, PHONE, SSN, IP = "jane.doe@example.com", "+1 415 555 0134", "078-05-1120", "203.0.113.9"
RAW = (EMAIL, "555 0134", SSN, IP)
MASKER = PiiMasker()


def _everywhere(trace_id: str = "t-1") -> dict:
    """A trace with PII in every string field, key and nested value that can hold one."""
    return {
        "trace_id": trace_id, "span_id": "s-1", "session_id": "sess-1",
        "input": [{"role": f"user {EMAIL}", "content": f"I am {EMAIL}"}],
        "output": "ok", "system": f"call {PHONE}", "context": [f"ssn {SSN}"],
        "model": f"gpt {EMAIL}", "provider": f"host {IP}", "prompt_version": f"v1 {EMAIL}",
        "finish_reason": f"stop {PHONE}", "error": f"from {IP}", "user_id": EMAIL,
        "tags": [f"owner:{EMAIL}"],
        "metadata": {EMAIL: "key holds it", "nested": {"list": [f"ssn {SSN}", {"deep": PHONE}]},
                     "otel": {"root": f"POST /users/{EMAIL}", "tools": [f"lookup {SSN}"],
                              "service": f"svc-{IP}"}},
    }


def _leaks(text: str) -> list[str]:
    return [value for value in RAW if value in text]


def test_mask_trace_masks_every_string_keys_and_nested_values_included():
    masked = MASKER.mask_trace(parse_trace(_everywhere()))
    dumped = masked.model_dump_json()
    assert _leaks(dumped) == [], dumped
    assert masked.metadata["nested"]["list"][1] == {"deep": "<PHONE_1>"}
    assert "<EMAIL_1>" in masked.metadata and masked.model == "gpt <EMAIL_1>"
    assert masked.metadata["otel"]["root"] == "POST /users/<EMAIL_1>"
    assert MASKER.mask_trace(masked) == masked, "masking twice changes nothing"


placed = st.sampled_from(["metadata key", "metadata value", "nested list", "model", "provider",
                          "prompt_version", "finish_reason", "tag", "role", "user_id"])


@settings(max_examples=200, deadline=None, database=None)
@given(place=placed, value=st.sampled_from(RAW[:1] + (PHONE, SSN, IP)),
       pad=st.text(st.characters(categories=["L", "Zs"]), max_size=6))
def test_a_planted_value_never_survives_masking_wherever_it_is(place, value, pad):
    text = f"{pad} {value} {pad}"
    payload: dict = {"trace_id": "t", "output": "a"}
    if place == "metadata key":
        payload["metadata"] = {text: 1}
    elif place == "metadata value":
        payload["metadata"] = {"k": text}
    elif place == "nested list":
        payload["metadata"] = {"k": [[{"x": [text]}]]}
    elif place == "tag":
        payload["tags"] = [text]
    elif place == "role":
        payload["input"] = [{"role": text, "content": "hi"}]
    else:
        payload[place] = text
    masked = MASKER.mask_trace(parse_trace(payload)).model_dump_json()
    assert value not in masked and value.replace(" ", "") not in masked.replace(" ", "")


@pytest.mark.parametrize("field", ["trace_id", "span_id", "session_id"])
@pytest.mark.parametrize("value", ["jane@x.com", "dup-1 ", "a b", "<!channel>", "x" * 129, "",
                                   "tab\there", "é-id", 123, ["t"]])
def test_identifiers_must_be_opaque(field, value):
    payload = {"trace_id": "t", "output": "a", field: value}
    with pytest.raises(InvalidTraceError) as info:
        parse_trace(payload)
    assert info.value.field == field


@pytest.mark.parametrize("value", [SSN, "415-555-0134", IP, "4111-1111-1111-1111"])
@pytest.mark.parametrize("field", ["trace_id", "span_id", "session_id"])
def test_an_identifier_that_holds_pii_makes_the_trace_a_dead_letter(field, value):
    trace = parse_trace({"trace_id": "t", "output": "a", field: value})
    with pytest.raises(InvalidTraceError, match="personal data") as info:
        MASKER.check_identifiers(trace)
    assert info.value.field == field and value not in str(info.value)


def test_otel_hex_ids_are_never_taken_for_pii():
    """A 16-digit span id can pass the Luhn check of a card number; hex ids are random."""
    trace = parse_trace({"trace_id": "2520989058696585" * 2, "span_id": "2520989058696585",
                         "output": "a"})
    assert MASKER.check_identifiers(trace) is trace


def test_input_hash_is_taken_over_the_masked_input():
    trace = parse_trace({"trace_id": "t", "input": f"my ssn is {SSN}", "output": "a"})
    masked = MASKER.mask_trace(trace)
    raw_hash = hashlib.sha256(canonical_json(trace.input).encode()).hexdigest()
    assert masked.input_hash != raw_hash, "a hash of the raw input can be brute-forced back"
    assert masked.input_hash == hashlib.sha256(canonical_json(masked.input).encode()).hexdigest()
    other = MASKER.mask_trace(parse_trace({"trace_id": "u", "input": "my ssn is 219-09-9999",
                                           "output": "b"}))
    assert other.input_hash == masked.input_hash, "same masked text, same dedup key"
    hashed = PiiMasker(PiiConfig(mode="hash", hash_salt="s"))
    assert hashed.mask_trace(trace).input_hash != hashed.mask_trace(other).input_hash


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n"
                            for row in rows), encoding="utf-8")
    return path


def _all_stored_text(db: Path) -> str:
    with Store(db, read_only=True) as store:
        tables = [row[0] for row in store.conn.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()]
        return "\n".join(str(row) for table in tables
                         for row in store.conn.execute(f'SELECT * FROM "{table}"').fetchall())


def test_run_stores_no_raw_pii_anywhere(tmp_path):
    rows = [_everywhere("t-1"), _everywhere(SSN), {**_everywhere("t-2"), "trace_id": EMAIL},
            f'{{"trace_id": "t-3", "output": "{EMAIL}", "metadata": 5}}']
    db = tmp_path / "pii.duckdb"
    report = run_embedded(_write(tmp_path / "t.jsonl", rows), db, "offline", sample_rate=1.0)
    assert report.invalid == 3
    stored = _all_stored_text(db)
    assert _leaks(stored) == []
    with Store(db, read_only=True) as store:
        errors = [row[0] for row in store.conn.execute("SELECT error FROM dead_letters").fetchall()]
    assert any("personal data" in error for error in errors)
    assert any("1 to 128 characters" in error for error in errors)


@pytest.mark.parametrize("judge_sees", ["masked", "raw"])
def test_debug_logs_carry_no_raw_payload(tmp_path, monkeypatch, judge_sees):
    from evaluator.core.logging_setup import configure_logging
    from evaluator.pii.masking import payload_masker

    monkeypatch.setenv("EVALUATOR_PII_JUDGE_SEES", judge_sees)

    stream = io.StringIO()
    settings = Settings.from_env()
    configure_logging("DEBUG", stream=stream, json_lines=True, settings=settings,
                      debug_masker=lambda: payload_masker(settings))
    traces = _write(tmp_path / "t.jsonl", [_everywhere("t-1")])
    try:
        run_embedded(traces, tmp_path / "log.duckdb", "offline", sample_rate=1.0, settings=settings)
        _one_message_through_a_dramatiq_worker(traces, settings)
    finally:
        configure_logging("WARNING", stream=io.StringIO())
    logged = stream.getvalue()
    assert "Received message" in logged, "dramatiq logged its messages at DEBUG"
    assert _leaks(logged) == []
    assert "I am <EMAIL_1>" not in logged, "no trace payload at all, even masked"


def _one_message_through_a_dramatiq_worker(traces: Path, settings: Settings) -> None:
    """A service worker's path (the embedded run no longer goes through dramatiq): the message
    holds what the producer enqueues, and dramatiq logs it at DEBUG."""
    import dramatiq

    from evaluator.core.settings import PROJECT_ROOT
    from evaluator.ingest.files import collect_work
    from evaluator.queue.broker import build_broker
    from evaluator.queue.channel import InMemoryChannel
    from evaluator.queue.messages import QUEUE_NAME, encode_items, work_message
    from evaluator.rubrics import RubricRegistry
    from evaluator.sampling.policy import SamplingPolicy
    from evaluator.worker.actors import WorkerContext, register_evaluate_actor

    items = collect_work(traces, SamplingPolicy(rate=1.0), settings=settings).items
    broker = build_broker(None)
    context = WorkerContext(RubricRegistry.load(PROJECT_ROOT / "rubrics"), InMemoryChannel(),
                            PROJECT_ROOT / "judges", settings=settings)
    actor = register_evaluate_actor(broker, context)
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        actor.send(work_message(encode_items(items), "offline", [], None))
        broker.join(QUEUE_NAME, fail_fast=True)
    finally:
        worker.stop()
        broker.close()


class _KeepDeadLetters(SinkDelivery):
    """The embedded delivery, keeping the dead letters it is handed (Redis would publish them)."""

    def __init__(self) -> None:
        self.items: list = []
        self.dead: list = []
        super().__init__(self.items.extend)

    def send_dead_letters(self, dead) -> bool:
        self.dead.extend(dead)
        return True


def test_span_exporter_dead_letters_a_pii_session_id_and_masks_what_it_keeps():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from evaluator.ingest.otel import EvaluatorSpanExporter
    from evaluator.sampling.policy import SamplingPolicy

    exporter = EvaluatorSpanExporter(sink=lambda items: None, policy=SamplingPolicy(rate=1.0))
    kept = exporter._delivery = _KeepDeadLetters()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    for session, name in [("sess-1", f"chat {EMAIL}"), (SSN, "chat"), ("sess-2", f"GET /u/{EMAIL}")]:
        with tracer.start_as_current_span(name) as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("session.id", session)
            if session != "sess-2":  # no output: a dead letter keeping the span's name
                span.set_attribute("gen_ai.completion.0.content", f"hello {EMAIL}")
    provider.shutdown()
    assert [item.trace.session_id for item in kept.items] == ["sess-1"]
    assert _leaks(kept.items[0].trace.model_dump_json()) == []
    assert len(kept.dead) == 2 and exporter.stats["invalid"] == 2
    assert any("personal data" in dead.error for dead in kept.dead)
    assert _leaks(" ".join(dead.model_dump_json() for dead in kept.dead)) == []
