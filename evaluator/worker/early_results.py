"""A message's results leave the worker as they complete, not when its slowest call ends.

A message holds several traces x rubrics. Its results used to be published when its last judge
call ended, which cost twice:
- a worker killed before then took the ledger rows of every call it had already paid for with
  it (the redelivered message is judged, and paid, again): 19 % of spend went unrecorded in a
  chaos run;
- one slow call (a straggler) held back the results of every other trace of the message.
Now each judge call is added to today's spend counter (evaluator.sampling.spend) and published to
the results stream as its request ends, before its in-flight slot can be reused (the flush is
queued on the event loop ahead of the task the freed slot wakes), and each trace's evaluations
are published when its last rubric is done; whatever completes in one turn of the event loop
goes in one stream entry. A kill loses only the calls in flight, even when an evaluation still
awaits something after its reply (a cache write to Redis, a fallback judge). The message is still
acknowledged only after the rest of its results are published (`rest`), so a kill re-delivers
it: the sink stores what arrives twice once (evaluation_id, call_id).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence

from evaluator.core.records import Evaluation
from evaluator.core.rows import JudgeCall, StoredTrace
from evaluator.queue.channel import ResultChannel
from evaluator.queue.messages import ResultBatch
from evaluator.sampling.spend import SpendRecorder

log = logging.getLogger(__name__)


class EarlyResults:
    """The results of one message, published as they complete. `judged` is the pipeline's
    on_judged hook (it runs on the event loop)."""

    def __init__(self, channel: ResultChannel, spend: SpendRecorder | None) -> None:
        self._channel = channel
        self._spend = spend
        self._traces: dict[str, list[StoredTrace]] = defaultdict(list)
        self._expected: Counter[str] = Counter()
        """Evaluations still to come per trace id."""
        self._waiting: dict[str, list[Evaluation]] = defaultdict(list)
        self._fresh = ResultBatch()
        """Completed since the last flush: published (and its calls counted) by the next one."""
        self._published: set[int] = set()
        """ids of the records already on the stream."""
        self._heard: set[int] = set()
        """ids of the judge calls `called` took (they are not taken again from `judged`)."""
        self._flush_scheduled = False

    def expect(self, traces: Sequence[StoredTrace], rubrics: int) -> None:
        for stored in traces:
            self._traces[stored.trace.trace_id].append(stored)
            self._expected[stored.trace.trace_id] += rubrics

    def called(self, call: JudgeCall) -> None:
        """The pipeline's on_call hook: one judge call whose request just ended."""
        self._heard.add(id(call))
        self._fresh.judge_calls.append(call)
        self._schedule_flush()

    def judged(self, evaluation: Evaluation, calls: list[JudgeCall]) -> None:
        # calls already heard went out as they ended; cache hits are heard only here
        self._fresh.judge_calls.extend(call for call in calls if id(call) not in self._heard)
        trace_id = evaluation.trace_id
        self._waiting[trace_id].append(evaluation)
        self._expected[trace_id] -= 1
        if self._expected[trace_id] == 0:
            self._fresh.evaluations.extend(self._waiting.pop(trace_id))
            self._fresh.traces.extend(self._traces.pop(trace_id))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if len(self._fresh) and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Count and publish what completed since the last flush, in one step. What fails to
        publish is not counted: it goes with the rest of the message's results."""
        self._flush_scheduled = False
        fresh, self._fresh = self._fresh, ResultBatch()
        if not len(fresh):
            return
        try:
            publish_counted(self._channel, self._spend, fresh)
        except Exception as exc:
            log.warning("publishing %d completed results early failed (%r); they go with the "
                        "rest of the message", len(fresh), exc)
            return
        self._published.update(map(id, [*fresh.evaluations, *fresh.traces, *fresh.judge_calls]))

    def rest(self, batch: ResultBatch) -> ResultBatch:
        """The records of the message's whole `batch` not published yet."""
        self.flush()

        def unpublished(records: list) -> list:
            return [record for record in records if id(record) not in self._published]

        return ResultBatch(evaluations=unpublished(batch.evaluations),
                           traces=unpublished(batch.traces), dead_letters=batch.dead_letters,
                           judge_calls=unpublished(batch.judge_calls))



def publish_counted(channel: ResultChannel, spend: SpendRecorder | None, batch: ResultBatch) -> None:
    """Publish `batch`, its judge calls counted as today's spend in the same step (when `spend`)."""
    if spend is None:
        channel.publish(batch)
    else:
        spend.publish_counted(channel, batch)
