"""The embedded run's judging in a process of its own: rendering and judging take most of a run's
CPU, and in one process they share one core (the GIL) with reading, masking and storing.

The judging process is forked (so it starts at once, with this process's rubrics, judge configs
and settings) and runs the same judging loop as the thread it replaces; work items go to it and
result batches come back through pipes, each trace named by its id (this process has it: it is
put back in the batch here, as the judging loop would have stored it). What it has been sent
and not yet sent back is kept here, so when it dies (killed, out of memory) or fails, every
trace in flight still ends, per rubric, as an evaluation: `error`, with the reason, and the run
then fails with JudgingProcessError. The number of traces in flight is bounded (back-pressure
for the reader).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from evaluator.core.errors import EvaluatorError
from evaluator.core.pipes import picklable, roomy_pipe
from evaluator.core.records import Trace
from evaluator.core.settings import DEFAULTS
from evaluator.core.work import WorkItem
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.queue.messages import ResultBatch
from evaluator.rubrics import Rubric
from evaluator.worker.actors import WorkerContext, process_items, stored_trace
from evaluator.worker.early_results import EarlyResults

WAIT_S = 0.05
"""How often a sender waiting for room checks that the judging process still runs."""


class JudgingProcessError(EvaluatorError):
    """The judging process died or failed: the traces it held were stored as `error`."""


class _PipeChannel:
    """The judging process's result channel: each batch goes back through the pipe, sent by a
    thread of its own (the judging loop never waits for the parent to read)."""

    def __init__(self, sending: Connection) -> None:
        self._sending = sending
        self._waiting: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send, name="evaluator-judging-send", daemon=True)
        self._sender.start()

    def publish(self, batch: ResultBatch) -> None:
        """The batch without its traces (the parent has them): their ids stand for them."""
        ids = [stored.trace.trace_id for stored in batch.traces]
        self._waiting.put(("results", (ResultBatch(batch.evaluations, [], batch.dead_letters,
                                                   batch.judge_calls), ids)))

    def tell(self, kind: str, payload: Any) -> None:
        """Send a message after what was published before it."""
        self._waiting.put((kind, payload))

    def close(self) -> None:
        """Send what is waiting, then stop the sender."""
        self._waiting.put(None)
        self._sender.join()

    def _send(self) -> None:
        while (message := self._waiting.get()) is not None:
            self._sending.send(message)

    def read(self, max_entries: int, block_ms: int) -> list:
        raise NotImplementedError("the judging process only publishes")

    def ack(self, entry_ids: list[str]) -> None:
        """Nothing to acknowledge."""

    def depth(self) -> int:
        return 0


class JudgingProcess:
    """A forked process judging the chunks `send` gives it (`run_chunks(context, chunks)`, run
    there with a WorkerContext whose channel sends results back); `publish` gets each result
    batch here, from a receiving thread. `max_in_flight` bounds the traces sent and not yet back.
    `join` waits until all are back; `close` ends the process."""

    def __init__(self, make_context: Callable[[Any], WorkerContext],
                 run_chunks: Callable[[WorkerContext, Any, Callable[[list[WorkItem]], None]], Any],
                 publish: Callable[[ResultBatch], None], lost_context: WorkerContext,
                 judge_name: str, rubric_refs: Sequence[str], run_id: str | None,
                 max_in_flight: int) -> None:
        self._publish = publish
        self._lost_context = lost_context
        self._settings = lost_context.settings or DEFAULTS
        self._judge_name, self._rubric_refs, self._run_id = judge_name, tuple(rubric_refs), run_id
        self._max_in_flight = max_in_flight
        self._in_flight: dict[str, list[WorkItem]] = defaultdict(list)
        self._count = 0
        self._room = threading.Condition()
        self._failure: BaseException | None = None
        self._finished = threading.Event()
        context = multiprocessing.get_context("fork")
        chunks_out, chunks_in = roomy_pipe(context)
        results_out, results_in = roomy_pipe(context)
        self._process = context.Process(target=_judge, name="evaluator-judging", daemon=True,
                                        args=(chunks_out, results_in, make_context, run_chunks))
        self._process.start()
        chunks_out.close()
        results_in.close()
        self._chunks, self._results = chunks_in, results_out
        self._receiver = threading.Thread(target=self._receive, name="evaluator-judging-results",
                                          daemon=True)
        self._receiver.start()

    def send(self, items: list[WorkItem]) -> None:
        """Hand a chunk over, waiting while too many traces are in flight; raises
        JudgingProcessError (or what the process raised) once it stopped."""
        with self._room:
            while self._count >= self._max_in_flight and not self._finished.is_set():
                self._room.wait(WAIT_S)
            self._raise_if_stopped()
            for item in items:
                self._in_flight[item.trace.trace_id].append(item)
            self._count += len(items)
        try:
            self._chunks.send(items)
        except OSError:  # the process is gone: the receiver says why once it has seen the end
            self._finished.wait()
            self._raise_if_stopped()
            raise

    def join(self) -> None:
        """Wait until every trace sent is judged and its results published; then the process
        ends. Raises what stopped it early."""
        with self._room:
            self._raise_if_stopped()
        try:
            self._chunks.send(None)
        except OSError:
            pass
        self._finished.wait()
        self._receiver.join()
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """End the process (what it still judges is stored as `error`) and the receiver."""
        self._chunks.close()
        if self._process.is_alive() and not self._finished.wait(WAIT_S):
            self._process.kill()
        self._receiver.join()
        self._process.join()

    def _raise_if_stopped(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._finished.is_set():
            raise JudgingProcessError("the judging process has ended: nothing more can be judged")

    def _receive(self) -> None:
        """Publish what comes back; at the end, account for any trace still in flight."""
        failure: BaseException | None = None
        try:
            while True:
                kind, payload = self._results.recv()
                if kind == "results":
                    self._publish(self._with_traces(*payload))
                elif kind == "judged":
                    self._returned(payload)
                elif kind == "failed":
                    failure = payload
                else:  # "finished"
                    break
        except EOFError:
            pass
        except BaseException as exc:  # noqa: BLE001 - e.g. a batch that does not unpickle
            failure = exc
        self._process.join()
        lost = [item for items in self._in_flight.values() for item in items]
        if lost or failure is not None or self._process.exitcode != 0:
            how = _how(self._process.exitcode)
            reason = (f"the judging process stopped ({how}: {failure!r})" if failure is not None
                      else f"the judging process stopped ({how})")
            if lost:  # early results went to the lost context's channel, the rest here
                rest = _lost(self._lost_context, lost, self._judge_name, self._rubric_refs,
                             self._run_id, reason + " before judging this trace")
                if len(rest):
                    self._publish(rest)
            failure = JudgingProcessError(
                f"{reason}; the {len(lost):,} traces it held are stored with status 'error'. Run "
                "again for the traces not evaluated yet (what was stored is not stored twice)")
        with self._room:
            self._failure = failure
            self._in_flight.clear()
            self._finished.set()
            self._room.notify_all()
        self._results.close()

    def _with_traces(self, batch: ResultBatch, trace_ids: list[str]) -> ResultBatch:
        """The batch the process sent, with the traces it names (in flight here) put back."""
        with self._room:
            items = [self._in_flight[trace_id][0] for trace_id in trace_ids]
        batch.traces = [stored_trace(item, self._settings) for item in items]
        return batch

    def _returned(self, trace_ids: list[str]) -> None:
        """A chunk is judged and its results published: its traces are no longer in flight."""
        with self._room:
            for trace_id in trace_ids:
                waiting = self._in_flight.get(trace_id)
                if waiting:
                    waiting.pop()
                    self._count -= 1
                    if not waiting:
                        del self._in_flight[trace_id]
            self._room.notify_all()


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _judge(chunks_in: Connection, results_out: Connection,
           make_context: Callable[[Any], WorkerContext],
           run_chunks: Callable[[WorkerContext, Any, Callable[[list[WorkItem]], None]], Any]) -> None:
    """The judging process: chunks from the pipe into `run_chunks` (a coroutine function fed
    through a queue, as in the thread), results back through the other pipe, each chunk's
    trace ids after its results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends this process
    chunks: queue.Queue[list[WorkItem] | None] = queue.Queue()  # bounded by the parent

    def feed() -> None:
        try:
            while True:
                chunk = chunks_in.recv()
                chunks.put(chunk)
                if chunk is None:
                    return
        except (EOFError, OSError):
            chunks.put(None)

    threading.Thread(target=feed, name="evaluator-judging-feed", daemon=True).start()
    channel = _PipeChannel(results_out)
    try:
        asyncio.run(run_chunks(make_context(channel), chunks, lambda items: channel.tell(
            "judged", [item.trace.trace_id for item in items])))
    except BaseException as exc:  # noqa: BLE001 - the parent stores the traces in flight as errors
        channel.tell("failed", picklable(exc, JudgingProcessError))
        channel.close()
        os._exit(1)
    channel.tell("finished", None)
    channel.close()


class _LostJudge:
    """Stands in for the judge of the traces a dead judging process held: each is `error`."""

    def __init__(self, judge: JudgeClient, reason: str) -> None:
        self.name, self.config_hash, self._reason = judge.name, judge.config_hash, reason

    async def judge(self, rubric: Rubric, trace: Trace, prompt: object) -> JudgeVerdict:
        return JudgeVerdict(status="error", reason=self._reason, attempts=0)


class _LostContext(WorkerContext):
    reason: str = ""

    def judge(self, name: str) -> JudgeClient:
        return _LostJudge(super().judge(name), self.reason)


def _lost(context: WorkerContext, items: list[WorkItem], judge_name: str,
          rubric_refs: Sequence[str], run_id: str | None, reason: str) -> ResultBatch:
    """The results of traces no judge saw: each rubric `error` (or `skipped` where it does not
    apply), with the traces as a judged batch would store them. What completes early goes to
    the context's channel, the rest is returned."""
    lost = _LostContext(context.registry, context.channel, context.judges_dir, settings=context.settings,
                        runtime=context.runtime)
    lost.reason = reason

    async def judged() -> ResultBatch:
        early = EarlyResults(lost.channel, None)
        return early.rest(await process_items(lost, items, [], judge_name, rubric_refs, run_id, early))

    return asyncio.run(judged())
