"""Rendering reuses work across the rubrics of a trace without changing a byte of a prompt: the
prompt hash is still sha256 of the canonical JSON of the messages (stored hashes, `evaluator
rubrics render` and replay agree), and neutralized text is what neutralize gives (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator.core.records import Message, Trace, canonical_json, sha256_hex
from evaluator.rubrics import RubricRegistry, render
from evaluator.rubrics.neutralize import neutralize, neutralized
from tests.support.examples import examples

ROOT = Path(__file__).resolve().parent.parent
RUBRICS = [rubric for rubric in RubricRegistry.load(ROOT / "rubrics").all() if rubric.templated]
CORPUS = [json.loads(line)["output"] for line in
          (ROOT / "tests" / "data" / "injection_outputs.jsonl").read_text(encoding="utf-8").split("\n")
          if line]
# Any character a trace can hold: not a lone surrogate (parse_trace refuses one, UTF-8 cannot
# carry it, and the prompt hash is taken over UTF-8).
NASTY = st.text(st.one_of(st.sampled_from('<>"\\/\n\t\r\x00\x1b\u2028\u200b\u2039\uff1c\u2329'
                                          "BEGINDdatasystem|é😀"), st.characters(codec="utf-8")),
                max_size=200)


def _fuzz(ci_examples: int) -> settings:
    return settings(deadline=None, database=None, max_examples=examples(ci_examples),
                    suppress_health_check=[HealthCheck.too_slow])


def _trace(output: str, text: str) -> Trace:
    return Trace(trace_id="t", system=f"Be brief. {text}", output=output, expected=text,
                 input=[Message(role="user", content=f"Why? {text}"),
                        Message(role="assistant", content=text or "ok"),
                        Message(role="user", content="And then?")],
                 context=[f"Doc one {text}", "Doc two."])


def _check(output: str, text: str) -> None:
    trace = _trace(output, text)
    for rubric in RUBRICS:
        pairwise = rubric.kind == "pairwise"
        prompt = render(rubric, trace, text if pairwise else None)
        assert prompt.prompt_hash == sha256_hex(canonical_json(prompt.messages)), rubric.ref


def test_the_prompt_hash_is_the_canonical_json_hash_on_the_injection_corpus():
    for output in CORPUS:
        _check(output, output[:300])


@_fuzz(100)
@given(NASTY, NASTY)
def test_the_prompt_hash_is_the_canonical_json_hash_on_any_text(output, text):
    _check(output or "An answer.", text)


@_fuzz(300)
@given(NASTY)
def test_neutralize_is_idempotent(text):
    """`neutralized` remembers a neutral text as its own neutral form: that needs this."""
    once = neutralize(text)
    assert neutralize(once) == once


def test_neutralize_is_idempotent_on_the_injection_corpus():
    for text in CORPUS:
        once = neutralize(text)
        assert neutralize(once) == once


def test_remembered_text_is_neutralized_as_neutralize_does():
    for text in CORPUS:
        assert neutralized(text) == neutralize(text)
        assert neutralized(text) == neutralize(text), "the second time, from memory"
        assert neutralized(neutralize(text)) == neutralize(text)
