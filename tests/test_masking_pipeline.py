"""PII is masked before anything is stored: in the traces table and in what the judge saw."""

from __future__ import annotations

import json

import pytest

from evaluator.core.settings import Settings
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0134"


def _traces(path):
    rows = [{"trace_id": f"pii-{i}", "input": f"I am {EMAIL}, call {PHONE}. What is plan {i}?",
             "context": ["Plans include storage."], "output": f"Plan {i} includes storage, {EMAIL}."}
            for i in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def _stored_text(db) -> str:
    with Store(db, read_only=True) as store:
        rows = store.conn.execute("SELECT trace_json FROM traces").fetchall()
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("judge_sees", ["masked", "raw"])
def test_stored_traces_never_hold_raw_pii(tmp_path, monkeypatch, judge_sees):
    monkeypatch.setenv("EVALUATOR_PII_JUDGE_SEES", judge_sees)
    traces = tmp_path / "t.jsonl"
    _traces(traces)
    db = tmp_path / "pii.duckdb"
    run_embedded(traces, db, "offline", sample_rate=1.0, settings=Settings.from_env())
    stored = _stored_text(db)
    assert EMAIL not in stored and "555 0134" not in stored
    assert "<EMAIL_1>" in stored and "<PHONE_1>" in stored
    assert '"pii_masked":true' in stored.replace(" ", "")
    assert '"input_hash":"' in stored.replace(" ", "")


def test_masking_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALUATOR_PII_MODE", "off")
    traces = tmp_path / "t.jsonl"
    _traces(traces)
    db = tmp_path / "raw.duckdb"
    run_embedded(traces, db, "offline", sample_rate=1.0, settings=Settings.from_env())
    assert EMAIL in _stored_text(db)
