"""The fallback wrapper: a judge config's `fallbacks` take a call its own model cannot take now.

Each judge but the last is asked with `may_defer`: when its circuit is open, its rate limit would
hold the call past `limits.fallback_after_wait_s`, or its call failed for good, it raises
`Deferred` instead of waiting or failing, and the next judge is asked. The last one never
defers. The verdict carries the ledger rows of every judge tried, and names the judge that
answered when it is not the one asked for (the evaluation id stays keyed on the one asked for).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from evaluator.core.records import Trace
from evaluator.core.rows import JudgeCall
from evaluator.judges.attempt import Deferred
from evaluator.judges.base import JudgeLink, JudgeVerdict, verdict_from
from evaluator.rubrics import RenderedPrompt, Rubric

log = logging.getLogger(__name__)

_ANSWER_FIELDS = ("status", "label", "score", "reasoning", "reason", "raw_reply", "cached")


class FallbackJudge:
    """A JudgeClient over `candidates`: the judge asked for, then its fallbacks in order."""

    def __init__(self, candidates: Sequence[JudgeLink]):
        self.candidates = tuple(candidates)
        self.name = self.candidates[0].name
        self.config_hash = self.candidates[0].config_hash

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt, *,
                    sample: int = 0) -> JudgeVerdict:
        carried: list[JudgeCall] = []
        for candidate in self.candidates[:-1]:
            try:
                verdict = await candidate.judge(rubric, trace, prompt, sample=sample,
                                                may_defer=True)
            except Deferred as deferred:
                log.debug("judge %s deferred to its fallback: %s", candidate.name, deferred.why)
                carried += deferred.calls
                continue
            return self._answered_by(candidate, verdict, carried)
        last = self.candidates[-1]
        verdict = await last.judge(rubric, trace, prompt, sample=sample)
        return self._answered_by(last, verdict, carried)

    def _answered_by(self, candidate: JudgeLink, verdict: JudgeVerdict,
                     carried: list[JudgeCall]) -> JudgeVerdict:
        if carried:
            answer = {name: getattr(verdict, name) for name in _ANSWER_FIELDS}
            verdict = verdict_from(carried + verdict.calls, **answer)
        if candidate is not self.candidates[0]:
            verdict.judge, verdict.judge_hash = candidate.name, candidate.config_hash
        return verdict
