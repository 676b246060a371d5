"""Judge calls leave the worker as they complete, not with their message's results.

A message's results are published when its last judge call ends. A worker killed before that
used to take the ledger rows of every call it had already paid for with it (the redelivered
message is judged, and paid, again): 19 % of spend went unrecorded in a chaos run. Now the
calls of each finished evaluation are added to today's spend counter (evaluator.spend) and
published to the results stream at once, a loop iteration's worth per entry, so a kill loses
only the calls still in flight. The sink stores them like any other ledger rows (idempotent
on call_id); the message's own results follow without them.
"""

from __future__ import annotations

import asyncio
import logging

from evaluator.judges.ledger import JudgeCall
from evaluator.records import Evaluation
from evaluator.spend import SpendRecorder
from evaluator.worker.channel import ResultChannel
from evaluator.worker.messages import ResultBatch

log = logging.getLogger(__name__)


class CallLog:
    """The calls of one message. `add` is the pipeline's on_judged hook (on the event loop)."""

    def __init__(self, channel: ResultChannel, spend: SpendRecorder | None) -> None:
        self._channel = channel
        self._spend = spend
        self._unsent: list[JudgeCall] = []
        self._fresh: list[JudgeCall] = []
        """Calls added since the last flush: published and counted by the next one."""
        self._flush_scheduled = False

    def add(self, evaluation: Evaluation, calls: list[JudgeCall]) -> None:
        if not calls:
            return
        self._fresh.extend(calls)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Count and publish the calls added since the last flush. A publish that fails keeps
        them: they travel with the message's results instead (`unsent`)."""
        self._flush_scheduled = False
        calls, self._fresh = self._fresh, []
        if not calls:
            return
        self._count(calls)
        try:
            self._channel.publish(ResultBatch(judge_calls=calls))
        except Exception as exc:
            log.warning("publishing %d judge calls failed (%r); they go with the results",
                        len(calls), exc)
            self._unsent.extend(calls)

    def unsent(self) -> list[JudgeCall]:
        """The calls not published yet (after a flush of the fresh ones)."""
        self.flush()
        unsent, self._unsent = self._unsent, []
        return unsent

    def _count(self, calls: list[JudgeCall]) -> None:
        """A failure here costs the daily budget's accuracy, not results."""
        if self._spend is None:
            return
        try:
            self._spend.record(calls)
        except Exception as exc:
            log.warning("adding %d judge calls to today's spend failed: %r", len(calls), exc)
