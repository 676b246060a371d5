"""The code-scorer protocol, its registry, and the adapter that gives its result the same
verdict, Evaluation record and provenance as a judge's.

A scorer factory is called with a rubric's `params` as keyword arguments and returns an object
with a `version` string (bump it when scoring changes: it is part of the evaluation's judge
hash) and `score(trace) -> Score`. A factory refuses bad params by raising TypeError or
ValueError (the rubric file is named in the error shown). `score` may raise: the evaluation is
then `error` with the exception as its reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from evaluator.core.errors import ConfigError, RubricError
from evaluator.core.plugins import Registry, needs_callable
from evaluator.core.records import Trace, canonical_json, sha256_hex
from evaluator.core.usage import Usage
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.offline import nearest_label
from evaluator.rubrics import RenderedPrompt, Rubric

CODE_JUDGE_PREFIX = "code:"
"""Evaluations of code scorers name `code:<kind>` as their judge (no judge config has a ':')."""


@dataclass(frozen=True)
class Score:
    """A scorer's answer: `value` from 0 to 1 (1 = desired), or None when the item cannot be
    scored (the evaluation is `unscored`, `reasoning` says why)."""

    value: float | None
    reasoning: str


class CodeScorer(Protocol):
    version: str

    def score(self, trace: Trace) -> Score: ...


ScorerFactory = Callable[..., CodeScorer]

SCORERS: Registry[ScorerFactory] = Registry("evaluator.scorers", "scorer", needs_callable)


class CodeScorerJudge:
    """One rubric's code scorer behind the judge contract: a verdict, never an exception."""

    def __init__(self, rubric: Rubric, scorer: CodeScorer):
        self.rubric = rubric
        self.scorer = scorer
        self.name = CODE_JUDGE_PREFIX + rubric.kind
        version = str(getattr(scorer, "version", "1"))
        self.config_hash = sha256_hex(canonical_json({"kind": rubric.kind, "version": version}))[:16]

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt | None = None) -> JudgeVerdict:
        started = time.perf_counter()
        try:
            score = self.scorer.score(trace)
            verdict = _verdict(rubric, score)
        except Exception as exc:  # the contract: a verdict, never an exception
            verdict = JudgeVerdict(status="error", reason=f"scorer {rubric.kind} failed: "
                                                          f"{type(exc).__name__}: {exc}")
        verdict.attempts = 0
        verdict.usage = Usage(cost_usd=0.0, latency_ms=(time.perf_counter() - started) * 1000.0)
        return verdict


def _verdict(rubric: Rubric, score: Score) -> JudgeVerdict:
    if score.value is None:
        return JudgeVerdict(status="unscored", reason=score.reasoning, reasoning=score.reasoning)
    value = min(1.0, max(0.0, float(score.value)))
    return JudgeVerdict(status="scored", label=nearest_label(rubric.labels, value), score=value,
                        reasoning=score.reasoning)


_BUILT: dict[str, CodeScorerJudge] = {}
_BUILT_LOCK = threading.Lock()


def code_scorer(rubric: Rubric) -> CodeScorerJudge:
    """The scorer of a code-scorer rubric, built once per rubric version. RubricError naming the
    file when its kind is unknown or its params are refused."""
    with _BUILT_LOCK:
        found = _BUILT.get(rubric.content_hash)
    if found is not None:
        return found
    where = rubric.path or rubric.ref
    try:
        factory = SCORERS.get(rubric.kind)
    except ConfigError as exc:
        raise RubricError(f"{where}: kind: {exc}") from None
    try:
        scorer = factory(**rubric.params)
    except (TypeError, ValueError, ConfigError) as exc:
        raise RubricError(f"{where}: params of scorer '{rubric.kind}': {exc}") from None
    built = CodeScorerJudge(rubric, scorer)
    with _BUILT_LOCK:
        _BUILT[rubric.content_hash] = built
    return built


def check_scorers(rubrics: Sequence[Rubric]) -> None:
    """Build the code scorer of every code-scorer rubric among `rubrics`, so a bad kind or bad
    params stop a run before any work (RubricError naming the file); refuse pairwise rubrics,
    which judge two runs' outputs, not one trace."""
    for rubric in rubrics:
        if rubric.kind == "pairwise":
            raise RubricError(f"{rubric.ref} is a pairwise rubric: it compares a replay run's outputs "
                              f"with a baseline run's (`evaluator gate --pairwise {rubric.criterion}`)")
        if not rubric.templated:
            code_scorer(rubric)
