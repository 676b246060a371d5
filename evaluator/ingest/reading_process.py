"""stream_work in a process of its own: reading, validating, sampling and masking a big trace file
on the second core while this process judges and stores.

The reading process is forked (it starts at once, with this process's settings, policy and
compiled patterns) and hands its chunks back through a pipe, in order: sampled work items,
dead letters, the counts so far for progress, and at the end its WorkCounts. The pipe's buffer
is the back-pressure: the reader waits while this process is busy with what it sent. A reading
process that dies (killed, out of memory) or raises ends the run with ReadingProcessError, which
says how many traces it had handed over; those are judged and stored as usual.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from evaluator.core.allocator import keep_big_blocks_mapped
from evaluator.core.errors import EvaluatorError
from evaluator.core.pipes import picklable, roomy_pipe
from evaluator.core.settings import DEFAULTS, Settings
from evaluator.ingest.files import DeadLettersOut, ItemsOut, TraceFormat, WorkCounts, stream_work
from evaluator.sampling.policy import SamplingPolicy

READ_IN_PROCESS_MIN_BYTES = 4 * 1024 * 1024
"""A regular file at least this big is read in a process of its own (~2,700 sample traces: the
fork and the pipe cost a few ms, which a 1-trace run would feel; a named pipe always is)."""
COUNTS_EVERY_S = 0.1
"""How often the reading process sends its counts when it has no chunk to send (progress)."""


class ReadingProcessError(EvaluatorError):
    """The process reading the trace file died or failed before it read the whole file."""


def reads_in_a_process(path: Path, policy: SamplingPolicy) -> bool:
    """Whether to read `path` in a process of its own: a big regular file or a named pipe, no
    daily budget (its pacer reads spend from the store this process holds) and fork available."""
    return policy.daily_budget_usd is None and big_input(path)


def big_input(path: Path) -> bool:
    """A named pipe, or a regular file of at least READ_IN_PROCESS_MIN_BYTES, where this system
    can fork: worth the processes a run may start."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        return path.is_fifo() or (path.is_file() and path.stat().st_size >= READ_IN_PROCESS_MIN_BYTES)
    except OSError:
        return False


class ReadingProcess:
    """stream_work (without a spend meter) in a forked process, started on construction (before
    this process starts threads of its own: a fork copies no other thread, nor locks they
    hold). `stream` hands its chunks on here, in the order read; `stop` ends it early."""

    def __init__(self, path: Path, policy: SamplingPolicy, fmt: TraceFormat = "jsonl",
                 batch_size: int = 20, settings: Settings = DEFAULTS) -> None:
        self._path = path
        context = multiprocessing.get_context("fork")
        self._receiving, sending = roomy_pipe(context)
        self._reader = context.Process(target=_read, name="evaluator-reader", daemon=True,
                                       args=(sending, path, policy, fmt, batch_size, settings))
        self._reader.start()
        sending.close()  # the child's copy is the only writer: its exit ends the pipe

    def stream(self, items_out: ItemsOut, dead_letters_out: DeadLettersOut,
               on_record: Callable[[WorkCounts], None] | None = None) -> WorkCounts:
        """The chunks to `items_out` and `dead_letters_out` as they come; the counts at the
        end. `on_record` sees the counts at each chunk and every COUNTS_EVERY_S. Raises
        ReadingProcessError when the process dies, and what it raised when it fails."""
        handed_over = 0
        try:
            while True:
                try:
                    kind, payload, counts = self._receiving.recv()
                except EOFError:
                    self._reader.join()
                    raise ReadingProcessError(
                        f"the process reading {self._path} stopped ({_how(self._reader.exitcode)}) "
                        f"after handing over {handed_over:,} sampled traces: those are stored, the "
                        "rest of the file was not evaluated; run it again (what was stored is not "
                        "stored twice)") from None
                if kind == "items":
                    items_out(payload)
                    handed_over += len(payload)
                elif kind == "dead":
                    dead_letters_out(payload)
                elif kind == "failed":
                    raise payload
                if on_record is not None and counts is not None:
                    on_record(counts)
                if kind == "done":
                    return payload
        finally:
            self.stop()

    def stop(self) -> None:
        """End the reading process (at once if it still reads) and wait for it."""
        self._receiving.close()
        if self._reader.is_alive():
            self._reader.kill()
        self._reader.join()


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _read(sending: Connection, path: Path, policy: SamplingPolicy, fmt: TraceFormat,
          batch_size: int, settings: Settings) -> None:
    """The reading process: stream_work with every chunk sent through `sending`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends us
    keep_big_blocks_mapped()  # big pickled chunks, freed once sent, go back to the system
    last_counts = [time.monotonic()]
    progress: list[WorkCounts] = []

    def send(kind: str, payload: Any) -> None:
        sending.send((kind, payload, _progress(progress[0]) if progress else None))
        last_counts[0] = time.monotonic()

    def counted(counts: WorkCounts) -> None:
        if not progress:
            progress.append(counts)
        if time.monotonic() - last_counts[0] >= COUNTS_EVERY_S:
            send("counts", None)

    try:
        counts = stream_work(path, policy, lambda items: send("items", items),
                             lambda dead: send("dead", dead), fmt, None, batch_size, settings,
                             counted)
    except BaseException as exc:  # noqa: BLE001 - any failure goes to the parent, which raises it
        sending.send(("failed", picklable(exc, lambda text: ReadingProcessError(
            f"reading the traces failed: {text}")), None))
        os._exit(1)
    sending.send(("done", counts, _progress(counts)))


def _progress(counts: WorkCounts) -> WorkCounts:
    """The counts progress reports (records read, sampled), without the per-reason tallies."""
    return WorkCounts(traces_read=counts.traces_read, sampled=counts.sampled)
