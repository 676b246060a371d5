"""The offline judge: deterministic lexical heuristics, no model, no network, no cost.

A transparent baseline and a cheap pre-screen, not a substitute for an LLM judge: it sees words,
numbers and capitalized names, never meaning. Every reasoning says so and names its evidence.
It reads the trace directly; the rendered prompt is accepted for the JudgeClient contract only,
so it never reads rubric text (RUBRIC_TEXT_NOTE). Which heuristic applies is the rubric's to
say (`offline:` in its front matter, else the one named like its criterion: OFFLINE_HEURISTICS).
Without evidence (hallucination or faithfulness without context) its verdict is `unscored` with
that reason, never an assumption.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

from evaluator.core.plugins import Registry, needs_callable
from evaluator.core.records import TRUNCATION_MARK_RE, Trace
from evaluator.core.usage import Usage
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.config import JudgeConfig
from evaluator.judges.refusal_detector import detect_refusal, explain, states_refusal
from evaluator.judges.text_stats import (
    Evidence,
    content_stems,
    evidence_from,
    names,
    numbers,
    split_sentences,
    stem,
    without_emails,
)
from evaluator.rubrics import RenderedPrompt, Rubric

REASONING_PREFIX = "[offline heuristic baseline] "
RUBRIC_TEXT_NOTE = ("the offline judge does not read rubric text: the fixed heuristic a "
                    "rubric names gives two versions of a rubric the same verdicts unless their "
                    "labels or scores differ; compare versions with an LLM judge (--judge)")

CLAIM_SUPPORT_MIN = 0.6
"""Share of a sentence's content words that must appear in the context for it to count as supported."""
HALLUCINATED_UNSUPPORTED_SHARE = 0.5
"""Above this share of unsupported claims (no invented number or name needed) an answer is hallucinated."""
RELEVANCE_FULL_COVERAGE = 0.75
"""Without context: share of the question's content words an answer must echo to be fully relevant."""
QUESTION_FILLER = frozenset(
    stem(word) for word in "explain describe tell suggest tip idea good best way some what's happen far long "
    "away often many much kind type".split()
)
"""Question words that ask *how* to answer, not *what* about: an answer need not repeat them."""
_PLEASANTRY_RE = re.compile(
    r"^(?:sure|of course|certainly|absolutely|great question|good question|happy to help|"
    r"i hope this helps|hope this helps|let me know|feel free|thanks|thank you|you're welcome|"
    r"glad to help|is there anything else|i'm sorry|sorry|apologies)\b",
    re.IGNORECASE,
)
_ATTRIBUTION_RE = re.compile(r"\b(?:according to|study|survey|research|report(?:ed)?)\b", re.IGNORECASE)
_NUMERIC_QUESTION_RE = re.compile(
    r"\bhow (?:many|much|long|often|far|fast|big|old)\b|\bwhat (?:year|percentage|percent|price)\b"
    r"|\bwhen\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Claim:
    """One factual sentence of the answer, checked against the evidence."""

    text: str
    supported: bool
    invented_numbers: tuple[str, ...]
    """Numbers absent from both the context and the question."""
    invented_names: tuple[str, ...]
    """Capitalized words (a named-entity proxy) absent from both the context and the question."""

    @property
    def invented(self) -> tuple[str, ...]:
        return self.invented_numbers + self.invented_names


def nearest_label(labels: Mapping[str, float], score: float) -> str:
    """The label whose score is nearest to `score`; ties go to the lower-scored label."""
    return min(labels, key=lambda label: (round(abs(labels[label] - score), 9), labels[label]))


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _is_claim(sentence: str) -> bool:
    return not (
        sentence.endswith("?") or _PLEASANTRY_RE.match(sentence) or states_refusal(sentence)
    )


def _check_claims(output: str, context: Evidence, question: Evidence) -> list[Claim]:
    """Each factual sentence of the output, with its support in the context and its inventions."""
    claims = []
    known_numbers = context.numbers | question.numbers
    for sentence in split_sentences(output):
        if not _is_claim(sentence):
            continue
        stems = content_stems(sentence)
        nums = numbers(sentence)
        if not stems and not nums:
            continue
        overlap = len(stems & context.stems) / len(stems) if stems else 1.0
        invented_names = (
            name for name in names(sentence)
            if not _is_known_name(name, context) and not _is_known_name(name, question)
        )
        claims.append(Claim(
            text=sentence,
            supported=overlap >= CLAIM_SUPPORT_MIN and nums <= known_numbers,
            invented_numbers=tuple(sorted(nums - known_numbers)),
            invented_names=tuple(sorted(invented_names)),
        ))
    return claims


def _is_known_name(name: str, evidence: Evidence) -> bool:
    return name in evidence.names or stem(name) in evidence.stems


class OfflineJudge:
    """JudgeClient that scores with lexical heuristics; free, deterministic, never raises."""

    reads_rubric_text = False
    never_waits = True
    """`judge` returns without awaiting anything: a batch awaits it in turn, with no task each."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.name = config.name
        self.config_hash = config.config_hash

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt) -> JudgeVerdict:
        started = time.perf_counter()
        try:
            verdict = self._judge(rubric, trace)
        except Exception as exc:  # the contract: a verdict, never an exception
            reason = f"offline heuristic failed: {type(exc).__name__}: {exc}"
            verdict = JudgeVerdict(status="error", reason=reason, reasoning=REASONING_PREFIX + reason)
        verdict.usage = Usage(cost_usd=0.0, latency_ms=(time.perf_counter() - started) * 1000.0)
        return verdict

    def _judge(self, rubric: Rubric, trace: Trace) -> JudgeVerdict:
        name = rubric.offline or rubric.criterion
        if name not in OFFLINE_HEURISTICS.names():
            return _unscored(
                f"the offline judge has no heuristic '{name}' for rubric {rubric.ref} (it has: "
                f"{', '.join(OFFLINE_HEURISTICS.names())}); name one with `offline: NAME` in the "
                "rubric's front matter, or judge it with an LLM judge (--judge)")
        heuristic = OFFLINE_HEURISTICS.get(name)
        if not rubric.labels:
            return _unscored(f"rubric {rubric.ref} defines no labels")
        if not trace.output.strip():
            return _unscored("output is empty: nothing to judge")
        return heuristic(rubric, _without_truncation_marks(trace))


def _without_truncation_marks(trace: Trace) -> Trace:
    """The texts as the app wrote them: Evaluator's own mark on a cut field ('... 4,859
    characters removed ...') is neither a claim of the answer nor evidence."""
    if not trace.truncated:
        return trace
    return trace.model_copy(update={
        "output": TRUNCATION_MARK_RE.sub("", trace.output),
        "context": [TRUNCATION_MARK_RE.sub("", passage) for passage in trace.context]})



def _refusal(rubric: Rubric, trace: Trace) -> JudgeVerdict:
    finding = detect_refusal(trace.output, trace.question or None)
    return _labelled(rubric, finding.score, explain(finding))

def _faithfulness(rubric: Rubric, trace: Trace) -> JudgeVerdict:
    if not trace.context:
        return _unscored("faithfulness needs context and the trace has none")
    claims = _check_claims(
        trace.output, evidence_from(tuple(trace.context)), evidence_from((trace.question,))
    )
    if not claims:
        return _labelled(rubric, 1.0, "no factual claims to check against the context.", keep_score=True)
    supported = sum(claim.supported for claim in claims)
    score = supported / len(claims)
    detail = f"{supported} of {len(claims)} sentences supported by the context"
    unsupported = [claim for claim in claims if not claim.supported]
    if unsupported:
        detail += f"; unsupported: {_quote(unsupported[0].text)}"
        if unsupported[0].invented:
            detail += f" (not in context: {', '.join(unsupported[0].invented[:3])})"
    return _labelled(rubric, score, detail + ".", keep_score=True)

def _hallucination(rubric: Rubric, trace: Trace) -> JudgeVerdict:
    question = evidence_from((trace.question,))
    if trace.context:
        return _hallucination_with_context(rubric, trace, question)
    claims = _check_claims(trace.output, evidence_from(()), question)
    invented = [
        claim for claim in claims
        if claim.invented_numbers and (claim.invented_names or _ATTRIBUTION_RE.search(claim.text))
    ]
    reason = "no context: the offline judge has no evidence to check the answer against"
    if invented:
        reason += (f" (it noticed specifics the question does not hold: "
                   f"{', '.join(invented[0].invented[:3])} in {_quote(invented[0].text)})")
    return _unscored(reason)

def _hallucination_with_context(rubric: Rubric, trace: Trace, question: Evidence) -> JudgeVerdict:
    claims = _check_claims(trace.output, evidence_from(tuple(trace.context)), question)
    if not claims:
        return _labelled(rubric, 1.0, "no factual claims to check.")
    invented = [claim for claim in claims if claim.invented]
    unsupported = [claim for claim in claims if not claim.supported]
    share = len(unsupported) / len(claims)
    if invented:
        claim = invented[0]
        return _labelled(
            rubric, 0.0, f"{len(invented)} of {len(claims)} sentences state specifics absent from "
            f"context and question ({', '.join(claim.invented[:3])}): {_quote(claim.text)}.",
        )
    if share > HALLUCINATED_UNSUPPORTED_SHARE:
        return _labelled(
            rubric, 0.0, f"{len(unsupported)} of {len(claims)} sentences unsupported by the context, "
            f"e.g. {_quote(unsupported[0].text)}.",
        )
    detail = f"{len(claims) - len(unsupported)} of {len(claims)} sentences supported by the context"
    if unsupported:
        detail += f"; no invented numbers or names in the rest, e.g. {_quote(unsupported[0].text)}"
    return _labelled(rubric, 1.0, detail + ".")

def _relevance(rubric: Rubric, trace: Trace) -> JudgeVerdict:
    question = _the_ask(trace.question)
    asked = content_stems(question) - QUESTION_FILLER
    if not asked:
        evidence = "the question has no content words to match; assumed relevant."
        return _labelled(rubric, 1.0, evidence, keep_score=True)
    passage = _best_passage(asked, trace.context)
    answered: set[str] = set()
    on_topic = total = 0
    for sentence in split_sentences(trace.output):
        if not _is_claim(sentence):
            continue
        stems = content_stems(sentence)
        if not stems:
            continue
        answered |= stems
        total += 1
        from_passage = passage is not None and len(stems & passage.stems) >= CLAIM_SUPPORT_MIN * len(stems)
        on_topic += bool(stems & asked) or from_passage
    if not total:
        evidence = "the answer has no content beyond refusals or pleasantries."
        return _labelled(rubric, 0.0, evidence, keep_score=True)
    shared = asked & answered
    coverage = min(1.0, len(shared) / len(asked) / RELEVANCE_FULL_COVERAGE)
    score = on_topic / total if trace.context else max(on_topic / total, coverage)
    detail = (
        f"{on_topic} of {total} answer sentences on the question's topic"
        f"{' (its words or its best-matching passage)' if passage else ''}; "
        f"the answer echoes {len(shared)} of {len(asked)} question content words"
    )
    if _NUMERIC_QUESTION_RE.search(question):
        if numbers(trace.output):
            score = min(1.0, score + 0.1)
            detail += "; a quantity question answered with a number"
        else:
            score *= 0.7
            detail += "; a quantity question answered without any number"
    return _labelled(rubric, round(score, 4), detail + ".", keep_score=True)


OFFLINE_HEURISTICS: Registry[Callable[[Rubric, Trace], JudgeVerdict]] = Registry(
    "evaluator.offline_heuristics", "offline heuristic", needs_callable)
"""What the offline judge can check, by name. A rubric names its heuristic with `offline:` in
its front matter; without one, the heuristic named like its criterion (the bundled rubrics')."""
OFFLINE_HEURISTICS.register("refusal", _refusal)
OFFLINE_HEURISTICS.register("faithfulness", _faithfulness)
OFFLINE_HEURISTICS.register("hallucination", _hallucination)
OFFLINE_HEURISTICS.register("relevance", _relevance)


def _the_ask(question: str) -> str:
    """The interrogative sentences of a question, when it also carries statements (names, ids)."""
    sentences = split_sentences(without_emails(question))
    asks = [sentence for sentence in sentences if sentence.endswith("?")]
    return " ".join(asks) if asks and len(asks) < len(sentences) else " ".join(sentences)


def _best_passage(asked: Set[str], context: list[str]) -> Evidence | None:
    """The context document sharing most content words with the question (None if none shares any)."""
    best, best_overlap = None, 0
    for doc in context:
        evidence = evidence_from((doc,))
        overlap = len(asked & evidence.stems)
        if overlap > best_overlap:
            best, best_overlap = evidence, overlap
    return best


def _labelled(rubric: Rubric, score: float, evidence: str, keep_score: bool = False) -> JudgeVerdict:
    """A scored verdict: the label nearest `score`, with the continuous score or the label's."""
    label = nearest_label(rubric.labels, score)
    return JudgeVerdict(
        status="scored",
        label=label,
        score=score if keep_score else rubric.labels[label],
        reasoning=REASONING_PREFIX + evidence,
    )


def _unscored(reason: str) -> JudgeVerdict:
    return JudgeVerdict(status="unscored", reason=reason, reasoning=REASONING_PREFIX + reason)
