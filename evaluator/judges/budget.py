"""A per-run judge budget: once a run has spent its USD cap, the rest of its evaluations end as
`skipped` with the reason BUDGET_EXHAUSTED. They are stored like any other row, never dropped.

Calls run concurrently, so a call starts only when the money spent, plus what the calls in
flight are expected to cost (the mean cost of the calls finished so far), leaves room for it;
otherwise it waits for calls in flight to finish, or, when none are left, is skipped. The first
call goes alone, to learn the price. So the cap is overshot only by how much dearer than the mean
the calls in flight turn out to be. A call of unknown cost counts as free.
"""

from __future__ import annotations

import asyncio
import math
import threading

from evaluator.core.errors import ConfigError
from evaluator.core.records import Trace
from evaluator.core.usage import Usage
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.rubrics import RenderedPrompt, Rubric

BUDGET_EXHAUSTED = "run judge budget exhausted"


class RunBudget:
    """The money one run may spend on judge calls; thread-safe."""

    def __init__(self, max_cost_usd: float, spent_usd: float = 0.0) -> None:
        if not (math.isfinite(max_cost_usd) and max_cost_usd >= 0):
            raise ConfigError(f"--max-cost must be a finite number of USD, 0 or more, got"
                              f" {max_cost_usd:g}")
        self.max_cost_usd = max_cost_usd
        self.spent_usd = spent_usd
        """Spent so far (a resumed run starts from what its stored evaluations cost)."""
        self.calls = 0
        self.refused = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def wrap(self, judge: JudgeClient) -> BudgetedJudge:
        return BudgetedJudge(judge, self)

    async def start(self, poll_s: float = 0.005) -> bool:
        """Wait until one more call fits (True: it counts as in flight until `finish`), or
        return False when it cannot fit any more."""
        while True:
            fits = self._try_start()
            if fits is not None:
                return fits
            await asyncio.sleep(poll_s)

    def _try_start(self) -> bool | None:
        """True: started; False: refused for good; None: wait for calls in flight."""
        with self._lock:
            if self.spent_usd >= self.max_cost_usd:
                self.refused += 1
                return False
            if self.calls == 0 and self._in_flight:
                return None
            expected = self.spent_usd / self.calls if self.calls else 0.0
            if self.spent_usd + (self._in_flight + 1) * expected <= self.max_cost_usd:
                self._in_flight += 1
                return True
            if self._in_flight:
                return None
            self.refused += 1
            return False

    def finish(self, cost_usd: float | None) -> None:
        with self._lock:
            self._in_flight -= 1
            self.calls += 1
            self.spent_usd += cost_usd or 0.0


class BudgetedJudge:
    """A JudgeClient that asks the run's budget before each call (same name and hash: the
    budget never changes a verdict, only whether the call is made)."""

    def __init__(self, judge: JudgeClient, budget: RunBudget) -> None:
        self.inner = judge
        self.budget = budget
        self.name = judge.name
        self.config_hash = judge.config_hash

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt) -> JudgeVerdict:
        if not await self.budget.start():
            return JudgeVerdict(status="skipped", attempts=0, usage=Usage(cost_usd=0.0), reason=(
                f"{BUDGET_EXHAUSTED} (spent ${self.budget.spent_usd:.4f} of "
                f"${self.budget.max_cost_usd:.4f})"))
        verdict = None
        try:
            verdict = await self.inner.judge(rubric, trace, prompt)
        finally:
            self.budget.finish(verdict.usage.cost_usd if verdict is not None else None)
        return verdict
