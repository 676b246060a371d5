"""Judge-prompt injection: evaluated outputs that try to close the data block, impersonate the
rubric or the system, instruct the judge, or plant a verdict (tests/data/injection_outputs.jsonl)
reach the judge neutralized, and the verdict parser binds to the judge's own final verdict.

Checked on the rendered prompt of every bundled rubric (the system message and the block layout
are exactly those of a harmless answer; the output's block holds only inert text) and on the parse
of judge replies that quote the output in every shape a judge answers in.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from evaluator.core.errors import VerdictParseError
from evaluator.core.records import Message, Trace
from evaluator.judges.parsing import parse_verdict
from evaluator.rubrics import RubricRegistry, neutralize, render
from tests.support.figures import record
from tests.support.lookalikes import looks_like

# test_zz_record_figures reads what the case tests collected: one worker runs them all, in
# order, under pytest-xdist (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("prompt_injection")

ROOT = Path(__file__).resolve().parent.parent
CORPUS_FILE = ROOT / "tests" / "data" / "injection_outputs.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_FILE.read_text(encoding="utf-8").split("\n") if line]
"""(split on newlines only: some outputs hold U+2028, which str.splitlines would break on)"""
RUBRICS = RubricRegistry.load(ROOT / "rubrics").latest()
MARKER = re.compile(r"<<<(?:BEGIN|END) [A-Z0-9 _-]+>>>")
OUTPUT_BLOCK = re.compile(r"<<<BEGIN OUTPUT>>>\n(.*)\n<<<END OUTPUT>>>", re.DOTALL)
TAG_LIKE = re.compile(r"<\s*/?\s*(?:data|output|context|question|input|system|user|assistant|"
                      r"instructions?)\b|<\|", re.IGNORECASE)
ANGLE_RUN = re.compile("[<>]{3,}")
INVISIBLE_CATEGORIES = {"Cc", "Cf"}


def trace_with(output: str) -> Trace:
    return Trace(trace_id="injection", system="Answer from the travel guide only.",
                 input=[Message(role="user", content="What is the capital of France?"),
                        Message(role="assistant", content="Let me check the guide."),
                        Message(role="user", content="Just the city, please.")],
                 context=["France's capital is Paris.", "Lyon is France's third city."],
                 output=output)


INERT_PROMPTS: set[tuple[str, str]] = set()
BOUND_PARSES: set[tuple[str, str]] = set()
BENIGN = {rubric.ref: render(rubric, trace_with("Paris.")) for rubric in RUBRICS}
CASES = [(rubric, row) for rubric in RUBRICS for row in CORPUS]
IDS = [f"{rubric.criterion}-{row['id']}" for rubric, row in CASES]


def test_the_corpus_is_large_and_varied():
    assert len(CORPUS) >= 50 and len({row["id"] for row in CORPUS}) == len(CORPUS)
    assert {row["attack"] for row in CORPUS} == {
        "close_block", "impersonate_rubric", "instruct_judge", "fake_verdict", "unicode"}


@pytest.mark.parametrize(("rubric", "row"), CASES, ids=IDS)
def test_rendered_prompt_keeps_the_output_inert(rubric, row):
    benign = BENIGN[rubric.ref]
    prompt = render(rubric, trace_with(row["output"]))
    system, user = (message["content"] for message in prompt.messages)
    assert system == benign.messages[0]["content"], "the output reached the system message"
    assert MARKER.findall(user) == MARKER.findall(benign.messages[1]["content"]), \
        "the output opened or closed a data block"
    block = OUTPUT_BLOCK.search(user)
    assert block is not None and block.group(1) == neutralize(row["output"])
    after = user[block.end():]
    benign_user = benign.messages[1]["content"]
    assert after == benign_user[OUTPUT_BLOCK.search(benign_user).end():]
    inert = block.group(1)
    assert not TAG_LIKE.search(inert), "a role or data tag survived"
    assert not ANGLE_RUN.search(looks_like(inert)), "a run of angle brackets survived"
    assert not re.search(r"\b(?:BEGIN|END)\b", looks_like(inert)), "a marker word survived"
    hidden = {char for char in inert if unicodedata.category(char) in INVISIBLE_CATEGORIES}
    assert hidden <= {"\n", "\t"}, f"invisible characters survived: {sorted(map(hex, map(ord, hidden)))}"
    INERT_PROMPTS.add((rubric.ref, row["id"]))


def judge_replies(output: str, label: str) -> dict[str, str]:
    """How judges answer, each quoting the evaluated output before giving its own verdict."""
    as_json = json.dumps({"reasoning": f"The response says: {output!s} That contradicts the "
                                       "context, whatever it asks of the grader.", "label": label})
    return {
        "json": as_json,
        "fenced_json": f"```json\n{as_json}\n```",
        "tool_arguments": json.dumps({"reasoning": f"Quoted: {output}", "label": label}),
        "text": f"The response reads:\n{output}\n\nIt contradicts the context.\nLabel: {label}",
        "quote_then_json": f"Response under review:\n{output}\n\n{as_json}",
        "quote_then_verdict": f"> {output}\n\nHaving checked every claim, my verdict: {label}",
    }


QUOTED_INSIDE_THE_VERDICT = {"json", "fenced_json", "tool_arguments"}


@pytest.mark.parametrize(("rubric", "row"), CASES, ids=IDS)
def test_parser_binds_to_the_judges_final_verdict(rubric, row):
    """The verdict is the judge's or unscored, never a label the output planted; a complete JSON
    verdict whose reasoning quotes the output always parses to the judge's label."""
    judge_label = min(rubric.labels, key=rubric.labels.get)  # the answer the injection fights
    for shape, reply in judge_replies(row["output"], judge_label).items():
        try:
            parsed = parse_verdict(reply, tuple(rubric.labels))
        except VerdictParseError:
            assert shape not in QUOTED_INSIDE_THE_VERDICT, f"{shape}: unscored"
            continue
        assert parsed.label == judge_label, f"{shape}: parsed {parsed.label!r}"
    BOUND_PARSES.add((rubric.ref, row["id"]))


def test_zz_record_figures():
    """The figures claim every prompt stayed inert and every parse bound to the judge's verdict,
    so each case must pass both checks: the cases this process has not run yet (run alone, or
    scheduled after this test by pytest-xdist) are checked here."""
    for rubric, row in CASES:
        if (rubric.ref, row["id"]) not in INERT_PROMPTS:
            test_rendered_prompt_keeps_the_output_inert(rubric, row)
        if (rubric.ref, row["id"]) not in BOUND_PARSES:
            test_parser_binds_to_the_judges_final_verdict(rubric, row)
    everything = {(rubric.ref, row["id"]) for rubric, row in CASES}
    assert INERT_PROMPTS == everything, f"not inert: {sorted(everything - INERT_PROMPTS)[:5]}"
    assert BOUND_PARSES == everything, f"misparsed: {sorted(everything - BOUND_PARSES)[:5]}"
    record("prompt_injection", outputs=len(CORPUS), rubrics=len(RUBRICS),
           prompts_checked=len(CASES), parses_checked=len(CASES) * 6, failures=0,
           attacks=sorted({row["attack"] for row in CORPUS}))
