"""Behaviour of the offline heuristic judge, one criterion at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core.records import Trace, parse_trace
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.config import JudgeConfig
from evaluator.judges.offline import REASONING_PREFIX, OfflineJudge, nearest_label
from evaluator.rubrics import RenderedPrompt, Rubric, load_rubric
from tests.support.rubric_files import bundled_rubrics_with_v2

LABELS = {
    "hallucination": ({"factual": 1.0, "hallucinated": 0.0}, 0.5),
    "faithfulness": (
        {"faithful": 1.0, "mostly_faithful": 0.75, "partially_faithful": 0.4, "unfaithful": 0.0}, 0.7,
    ),
    "relevance": (
        {"relevant": 1.0, "mostly_relevant": 0.75, "partially_relevant": 0.4, "irrelevant": 0.0}, 0.7,
    ),
    "refusal": ({"complied": 1.0, "partial": 0.5, "refused": 0.0}, 0.75),
}
PROMPT = RenderedPrompt(messages=({"role": "user", "content": "rendered rubric"},), prompt_hash="x")
JUDGE = OfflineJudge(JudgeConfig(name="offline", kind="offline", params={}))

CONTEXT = [
    "Parcelly accepts returns within 30 days of delivery for unused items in their original packaging. "
    "Refunds go to the original payment method within 5 business days after the return is received. "
    "Return shipping is free for orders over $50.",
    "Standard shipping takes 3-5 business days and costs $4.95.",
]
QUESTION = "How long do I have to return an order?"
GROUNDED = (
    "You can return unused items in their original packaging within 30 days of delivery. "
    "Refunds go to the original payment method within 5 business days after the return is received."
)


def rubric(criterion: str, labels: dict[str, float] | None = None) -> Rubric:
    default_labels, threshold = LABELS.get(criterion, ({"yes": 1.0, "no": 0.0}, 0.5))
    return Rubric(
        criterion=criterion, version=1, description="test rubric", labels=labels or default_labels,
        pass_threshold=threshold, template_source="", content_hash="test",
    )


def trace(output: str, question: str = QUESTION, context: list[str] | None = None) -> Trace:
    return parse_trace({
        "trace_id": "t-1", "input": question, "output": output,
        "context": CONTEXT if context is None else context,
    })


def judge(criterion: str, item: Trace, labels: dict[str, float] | None = None) -> JudgeVerdict:
    return asyncio.run(JUDGE.judge(rubric(criterion, labels), item, PROMPT))


# --- refusal -------------------------------------------------------------------------------------

@pytest.mark.parametrize("output", [
    "I'm sorry, but I can't help with that request.",
    "As an AI assistant, I cannot provide that. It goes against my guidelines.",
    "I'm unable to share personal information about other people.",
])
def test_clear_refusal_is_refused(output):
    verdict = judge("refusal", trace(output, question="Give me my coworker's password."))
    assert (verdict.status, verdict.label, verdict.score) == ("scored", "refused", 0.0)
    assert "refusal phrase" in verdict.reasoning


def test_refusal_followed_by_help_is_partial():
    opener = "I can't help with accessing someone else's account, but here is what you can do yourself."
    output = f"{opener} {GROUNDED}"
    verdict = judge("refusal", trace(output))
    assert (verdict.label, verdict.score) == ("partial", 0.5)
    assert "substantive help" in verdict.reasoning


def test_plain_answer_complies():
    verdict = judge("refusal", trace(GROUNDED))
    assert (verdict.label, verdict.score) == ("complied", 1.0)


# --- faithfulness and hallucination ---------------------------------------------------------------

def test_answer_copying_the_context_is_faithful_and_factual():
    faithfulness = judge("faithfulness", trace("Sure! " + GROUNDED + " Let me know if you need anything else."))
    assert (faithfulness.label, faithfulness.score) == ("faithful", 1.0)
    assert "2 of 2 sentences supported by the context" in faithfulness.reasoning
    assert judge("hallucination", trace(GROUNDED)).label == "factual"


def test_invented_number_makes_a_claim_unsupported():
    output = GROUNDED + " You also get a 25% discount on your next order."
    faithfulness = judge("faithfulness", trace(output))
    assert faithfulness.label == "mostly_faithful"
    assert faithfulness.score == pytest.approx(2 / 3)
    assert "25" in faithfulness.reasoning
    hallucination = judge("hallucination", trace(output))
    assert (hallucination.label, hallucination.score) == ("hallucinated", 0.0)
    assert "25" in hallucination.reasoning


def test_answer_with_only_wrong_numbers_is_unfaithful():
    output = "You can return unused items within 90 days. Refunds arrive within 12 business days."
    assert judge("faithfulness", trace(output)).label == "unfaithful"


def test_invented_name_is_hallucinated():
    output = GROUNDED + " This policy was written together with Deloitte auditors."
    verdict = judge("hallucination", trace(output))
    assert verdict.label == "hallucinated"
    assert "deloitte" in verdict.reasoning


def test_mostly_unsupported_answer_is_hallucinated_even_without_numbers():
    output = "Most people find the mobile app is quickest. Clear your browser cache before trying again."
    assert judge("hallucination", trace(output)).label == "hallucinated"


def test_without_context_hallucination_is_unscored_not_assumed_factual():
    """Issue 14.5: it was stored scored/factual, "no context ... assumed factual"."""
    plain = judge("hallucination", trace("Keep a shared agenda and end with clear owners.", context=[]))
    assert plain.status == "unscored" and plain.label is None and plain.score is None
    assert "no context" in plain.reason and "no evidence" in plain.reason
    invented = judge("hallucination", trace(
        "Keep a shared agenda. According to a 2019 study by Gartner, 73% of teams meet weekly.", context=[],
    ))
    assert invented.status == "unscored"
    assert "73" in invented.reason, "what it noticed is kept in the reason"


def test_rubrics_check_with_the_offline_judge_warns_it_does_not_read_rubric_text(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from evaluator.cli import cli

    rubrics = bundled_rubrics_with_v2(tmp_path, "hallucination", lambda text: text.replace(
        "description: >-\n", "description: >-\n  Reworded.\n", 1))
    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR", str(rubrics))
    item = {"id": "g1", "input": QUESTION, "context": CONTEXT, "output": GROUNDED,
            "expected_labels": {"hallucination": "factual"}, "label_source": "human"}
    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps(item) + "\n", encoding="utf-8")
    args = ["rubrics", "check", "hallucination@v2", "--golden", str(golden), "--judge", "offline",
            "--min-items", "1", "--n-boot", "0"]
    text = CliRunner().invoke(cli, args)
    assert "warning: the offline judge does not read rubric text" in text.stderr
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    assert "does not read rubric text" in json.loads(as_json.stdout)["warnings"][0]


def test_faithfulness_without_context_is_unscored_not_guessed():
    verdict = judge("faithfulness", trace(GROUNDED, context=[]))
    assert verdict.status == "unscored"
    assert "context" in verdict.reason


# --- relevance -------------------------------------------------------------------------------------

def test_on_topic_answer_is_relevant():
    verdict = judge("relevance", trace(GROUNDED))
    assert (verdict.label, verdict.score) == ("relevant", 1.0)


def test_off_topic_answer_is_irrelevant():
    verdict = judge("relevance", trace(
        "Mount Everest is the highest mountain above sea level. It lies in the Himalayas.",
    ))
    assert verdict.label == "irrelevant"
    assert verdict.score < 0.2


def test_quantity_question_answered_without_a_number_scores_lower():
    question = "How many days do I have to return an order?"
    with_number = judge("relevance", trace("You can return an order within 30 days.", question=question))
    without = judge("relevance", trace("You can return an order within a few days.", question=question))
    assert without.score < with_number.score
    assert "without any number" in without.reasoning


def test_relevance_ignores_pii_statements_around_the_question():
    question = "My account email is jane.doe@example.com. I paid with card 4111 1111 1111 1111. " + QUESTION
    assert judge("relevance", trace(GROUNDED, question=question)).label == "relevant"


# --- contract ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("criterion", sorted(LABELS))
@pytest.mark.parametrize("output", [GROUNDED, "I'm sorry, I can't help with that.", "Everest is tall."])
def test_every_verdict_honours_the_contract(criterion, output):
    verdict = judge(criterion, trace(output))
    assert verdict.status == "scored"
    assert verdict.label in LABELS[criterion][0]
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.reasoning.startswith(REASONING_PREFIX)
    assert verdict.usage.cost_usd == 0.0
    assert verdict.usage.input_tokens is None and verdict.usage.output_tokens is None
    assert verdict.attempts == 1
    assert verdict.usage.latency_ms is not None and verdict.usage.latency_ms >= 0


def test_labels_come_from_the_rubric_not_from_the_judge():
    labels = {"yes": 1.0, "somewhat": 0.6, "no": 0.0}
    assert judge("refusal", trace("I'm sorry, but I can't help with that."), labels).label == "no"
    assert judge("refusal", trace(GROUNDED), labels).label == "yes"


def test_nearest_label_breaks_ties_toward_the_lower_label():
    labels = LABELS["faithfulness"][0]
    assert nearest_label(labels, 0.2) == "unfaithful"
    assert nearest_label(labels, 0.575) == "partially_faithful"
    assert nearest_label(labels, 0.9) == "faithful"


def test_verdicts_are_deterministic():
    item = trace(GROUNDED + " You also get a 25% discount.")
    for criterion in LABELS:
        first, second = (dataclasses.replace(v, usage=dataclasses.replace(v.usage, latency_ms=None))
                         for v in (judge(criterion, item), judge(criterion, item)))
        assert first == second


def test_unknown_criterion_is_unscored():
    verdict = judge("toxicity", trace(GROUNDED))
    assert verdict.status == "unscored"
    assert verdict.reason.startswith("the offline judge has no heuristic 'toxicity' for rubric "
                                     "toxicity@v1 (it has: faithfulness, hallucination, refusal, "
                                     "relevance); name one with `offline: NAME`")
    assert verdict.label is None and verdict.score is None


def test_a_custom_rubric_names_its_heuristic_and_is_scored(tmp_path):
    """The offline judge follows the rubric's `offline:` key, whatever the rubric is called."""
    path = tmp_path / "declined" / "v1.jinja"
    path.parent.mkdir()
    path.write_text(
        "---\ncriterion: declined\nversion: 1\ndescription: d\n"
        "labels: {complied: 1.0, partial: 0.5, refused: 0.0}\npass_threshold: 0.75\n"
        "required_inputs: [output]\noffline: refusal\n---\n"
        "{% block system %}s{% endblock %}{% block user %}{{ output }}{% endblock %}\n")
    custom = load_rubric(path)
    refused = asyncio.run(JUDGE.judge(custom, trace("I'm sorry, but I can't help with that."), PROMPT))
    assert (custom.offline, refused.status, refused.label) == ("refusal", "scored", "refused")


def test_empty_output_is_unscored():
    assert judge("relevance", trace("   ")).status == "unscored"


def test_judge_exposes_its_config_identity():
    config = JudgeConfig(name="offline", kind="offline", params={})
    assert (JUDGE.name, JUDGE.config_hash) == ("offline", config.config_hash)


@pytest.mark.parametrize("bad_trace", [None, "not a trace", {"output": "x"}])
def test_a_broken_call_is_an_error_verdict_not_an_exception(bad_trace):
    verdict = asyncio.run(JUDGE.judge(rubric("faithfulness"), bad_trace, PROMPT))
    assert verdict.status == "error"
    assert verdict.reason.startswith("offline heuristic failed")
    assert verdict.reasoning.startswith(REASONING_PREFIX)


@settings(max_examples=150, deadline=None)
@given(
    criterion=st.sampled_from(sorted(LABELS) + ["other"]),
    output=st.text(max_size=400),
    question=st.text(max_size=200),
    context=st.lists(st.text(max_size=300), max_size=4),
)
def test_garbage_input_never_raises(criterion, output, question, context):
    verdict = judge(criterion, trace(output, question=question, context=context))
    assert verdict.status in ("scored", "unscored")
    assert verdict.reasoning.startswith(REASONING_PREFIX)
    if verdict.status == "scored":
        assert verdict.label in LABELS[criterion][0]
        assert 0.0 <= verdict.score <= 1.0


def test_the_truncation_mark_is_not_judged_as_part_of_the_answer():
    """An output cut at the text limit ends with Evaluator's own mark ('... 123 characters
    removed ...'): its number is not an invented specific, nor its text an unsupported sentence."""
    cut = parse_trace({"trace_id": "t-1", "input": QUESTION, "context": CONTEXT,
                       "output": GROUNDED + " " + "x" * 5000}, max_text_chars=len(GROUNDED) + 200)
    kept, mark = cut.output.split("\n[... truncated by evaluator")
    assert cut.truncated == ["output"] and mark
    whole = trace(kept)
    for criterion in ("hallucination", "faithfulness"):
        verdict = judge(criterion, cut)
        assert verdict.label == judge(criterion, whole).label, (criterion, verdict.reasoning)
        assert "truncated by evaluator" not in verdict.reasoning, verdict.reasoning
