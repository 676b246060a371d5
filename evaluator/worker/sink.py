"""The single DuckDB writer: drains the results channel in batches, commits, then acks."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from evaluator.core.records import DeadLetter, Evaluation, utcnow
from evaluator.core.retry import Backoff, RetryPolicy, retry_call
from evaluator.queue.channel import ResultChannel
from evaluator.queue.messages import ResultBatch
from evaluator.store import Store, WriteResult
from evaluator.store.duckdb_store import WRITER_MEMORY_MB
from evaluator.store.lake import ROLL_CHUNK_ROWS
from evaluator.worker.evaluation_events import EvaluationEvents
from evaluator.worker.metrics import metrics

if TYPE_CHECKING:
    from evaluator.store.stored_keys import StoredKeys

log = logging.getLogger(__name__)
STOP_ATTEMPTS = 3
"""Tries to write what is left when the sink stops, before it gives the rest up as unstored."""
STOP_RETRY_CAP_S = 0.2
"""The longest wait between those tries: stopping should not hang on a broken store."""
MAX_ROWS = 20_000
"""Rows a batch gathers at most by default (a backlog is drained in few opens and checkpoints)."""
_T = TypeVar("_T")
_P = ParamSpec("_P")


@dataclass
class LakeRetention:
    """Days (UTC) older than `hot_days` move from DuckDB to the Parquet lake (export, verify,
    delete in chunks of `chunk_rows`), looked for when the sink starts and every `every_s` after."""

    lake: Path
    hot_days: int
    every_s: float = 3600.0
    now: Callable[[], datetime] = field(default=utcnow)
    chunk_rows: int = ROLL_CHUNK_ROWS

    def cutoff(self) -> date:
        """The first day kept in DuckDB."""
        return self.now().date() - timedelta(days=self.hot_days)


@dataclass(frozen=True)
class Unstored:
    """Results read from the channel that the sink could not write before it stopped, and why.
    Entries of a durable channel (Redis) stay unacknowledged and come again at the next start;
    the in-process channel's are lost with the process."""

    batch: ResultBatch
    reason: str

    def describe(self) -> str:
        return (f"{len(self.batch.evaluations)} evaluations of {len(self.batch.traces)} sampled "
                f"traces and {len(self.batch.dead_letters)} dead letters")


class Sink:
    """Batches results by size or age. By default the store file is held open only while
    writing, so `evaluator report` can read it between flushes; each flush then pays an open
    and a checkpoint (~50 ms), so a backlog is drained in batches of up to 20,000 rows. With
    `hold_s` (the embedded run: its own process is the only writer), the file stays open across
    flushes and is closed after a flush once it has been held that long, so a reader waiting for
    the lock gets it while the next batch gathers; a batch then gathers for the whole
    `max_wait_s` (or `max_rows`), not only until the channel runs dry."""

    def __init__(self, channel: ResultChannel, db_path: Path, max_rows: int = MAX_ROWS,
                 max_wait_s: float = 0.5,
                 on_written: Callable[[ResultBatch, WriteResult], None] | None = None,
                 events: EvaluationEvents | None = None,
                 retention: LakeRetention | None = None,
                 hold_s: float = 0.0, poll_ms: int = 200, store: Store | None = None,
                 keep_store: bool = False, memory_limit_mb: int = WRITER_MEMORY_MB) -> None:
        """`on_written` hears of each committed batch and the rows it actually inserted;
        `events` gets every evaluation a batch newly stored (queued for export: the sink never
        waits); one delivered again, already stored, is not announced again.
        `poll_ms` is how long one read waits for results: it bounds how long `run` takes to
        notice its stop event. With `hold_s`, `store` (an open read-write Store of `db_path`,
        the sink's from then on) is held first instead of opening the file again; with
        `keep_store`, the store the sink holds when `run` stops stays open for `take_store`
        (each open and close of a DuckDB file costs a connect and a checkpoint).
        `memory_limit_mb`: DuckDB's memory limit for the sink's writes."""
        self.events = events
        self.retention = retention
        self._rolled_at: float | None = None
        self.longest_roll_hold_s = 0.0
        """The longest a single roll step held the store (s)."""
        self.channel = channel
        self.on_written = on_written
        self.db_path = Path(db_path)
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.hold_s = hold_s
        self.poll_ms = poll_ms
        self.rows_written = 0
        self._unwritten: tuple[ResultBatch, list[str]] | None = None
        self.unstored: Unstored | None = None
        """Set when `run` stopped with results it could not write."""
        self._store: Store | None = store
        self._opened_at = time.monotonic()
        self._keep_store = keep_store
        self._memory_limit_mb = memory_limit_mb
        self._stored_keys: StoredKeys | None = None
        """With `hold_s`: the ids this sink knows stored, kept across its opens of the file, so
        a batch of new ids is written without scanning the stored ones."""
        self._stopping = threading.Event()

    def drain_once(self, block_ms: int | None = None) -> int:
        """Collect up to max_rows or max_wait_s worth of entries, write them, ack them.

        A batch that fails to write stays in memory (unacknowledged) and is retried first.
        """
        if self._unwritten is None:
            self._unwritten = self._collect(self.poll_ms if block_ms is None else block_ms)
        pending, entry_ids = self._unwritten
        if not entry_ids:
            self._unwritten = None
            if not (self._keep_store and self._stopping.is_set()):
                self.release()
            return 0
        written = self._write(pending)
        self._unwritten = None
        if time.monotonic() - self._opened_at >= self.hold_s:
            self.release()
        if self.events is not None and written.new_evaluation_ids:
            self.events.emit(_first_of_each(pending.evaluations, written.new_evaluation_ids),
                             (stored.trace for stored in pending.traces))
        if self.on_written is not None:
            self.on_written(pending, written)
        metrics().record_written(pending.evaluations, len(pending.traces), len(pending.dead_letters))
        self.rows_written += len(pending)
        self.channel.ack(entry_ids)  # if this fails, the entries come again: stored once
        return len(pending)

    def roll_if_due(self) -> None:
        """Move old days to the lake when `retention` says it is time. The file is opened for
        each step (a day's export, then each chunk's delete) and the sink writes a waiting batch
        between chunks, so results and readers wait for one step, not for a whole day. A
        failure is logged and tried again at the next interval: every row stays in DuckDB until
        the lake holds it, and a day left half-deleted is finished then."""
        if self.retention is None or (self._rolled_at is not None
                                      and time.monotonic() - self._rolled_at < self.retention.every_s):
            return
        self._rolled_at = time.monotonic()
        try:
            self._roll(self.retention)
        except Exception as exc:
            log.error("sink: moving old days to the lake %s failed (%s); they stay in DuckDB, "
                      "next try in %.0f s", self.retention.lake, exc, self.retention.every_s)

    def _roll(self, retention: LakeRetention) -> None:
        before = retention.cutoff()
        for day in self._holding(Store.days_to_roll, before):
            exported = self._holding(Store.export_day_for_roll, retention.lake, day)
            chunks = self._holding(Store.roll_chunks, day, retention.chunk_rows)
            left = 0
            for chunk in chunks:
                if self._stopping.is_set():
                    log.info("sink: stopping; the rest of %s moves at the next start", day)
                    return
                self._write_between_chunks()
                done = self._holding(Store.delete_rolled_chunk, retention.lake, chunk)
                left += done.hot - done.deleted
            log.info("sink: moved %s to the lake %s: %s%s", day, retention.lake, exported.rows,
                     f" ({left} rows written after the export stay for the next roll)" if left else "")

    def _holding(self, step: Callable[Concatenate[Store, _P], _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run one roll step on the store opened for it alone; the longest hold is kept."""
        self.release()
        started = time.monotonic()
        with Store(self.db_path) as store:
            result = step(store, *args, **kwargs)
        self.longest_roll_hold_s = max(self.longest_roll_hold_s, time.monotonic() - started)
        return result

    def _write_between_chunks(self) -> None:
        """Store what results are waiting; a failure here is the run loop's to retry."""
        try:
            self.drain_once(block_ms=0)
        except Exception as exc:
            log.warning("sink: writing results between roll chunks failed (%r); rolling on", exc)

    def _write(self, pending: ResultBatch) -> WriteResult:
        if self.hold_s <= 0:
            return Store.write_once(self.db_path, pending.evaluations, pending.traces,
                                    pending.dead_letters, judge_calls=pending.judge_calls,
                                    memory_limit_mb=self._memory_limit_mb)
        if self._store is None:
            self._store = Store(self.db_path, memory_limit_mb=self._memory_limit_mb)
            self._opened_at = time.monotonic()
        if self._stored_keys is None:
            # lazy: rbloom and its 8 MB filter are the held sink's alone
            from evaluator.store.stored_keys import StoredKeys
            self._stored_keys = StoredKeys()
        try:
            return self._store.write_batch(pending.evaluations, pending.traces,
                                           pending.dead_letters, pending.judge_calls,
                                           stored_keys=self._stored_keys)
        except BaseException:
            self.release()
            raise

    def take_store(self) -> Store | None:
        """The store the sink held when it stopped (see `keep_store`), now the caller's to close."""
        store, self._store = self._store, None
        return store

    def release(self) -> None:
        """Close the store if this sink holds it open."""
        if self._store is not None:
            store, self._store = self._store, None
            store.close()

    def _collect(self, block_ms: int) -> tuple[ResultBatch, list[str]]:
        pending = ResultBatch()
        entry_ids: list[str] = []
        deadline = time.monotonic() + self.max_wait_s
        gather_until_deadline = self.hold_s > 0 and not self._stopping.is_set()
        while len(pending) < self.max_rows and time.monotonic() < deadline:
            try:
                entries = self.channel.read(max_entries=100, block_ms=block_ms)
            except Exception as exc:
                if not entry_ids:
                    raise
                # Write what was read: a Redis restarted without persistence cannot deliver it
                # again. The failure comes back at the next read.
                log.warning("sink: reading results failed (%r); writing the %d entries read "
                            "so far", exc, len(entry_ids))
                break
            if not entries:
                if gather_until_deadline and not self._stopping.is_set():
                    continue
                break
            for entry_id, encoded in entries:
                entry_ids.append(entry_id)
                pending.extend(self._decode(entry_id, encoded))
        return pending, entry_ids

    @staticmethod
    def _decode(entry_id: str, encoded: bytes | str | ResultBatch) -> ResultBatch:
        if isinstance(encoded, ResultBatch):  # handed over in process
            return encoded
        try:
            return ResultBatch.from_json(encoded)
        except Exception as exc:  # a corrupt entry is kept as a dead letter, not dropped
            log.error("results entry %s could not be decoded: %s", entry_id, exc)
            text = encoded.decode("utf-8", "replace") if isinstance(encoded, bytes) else encoded
            return ResultBatch(dead_letters=[DeadLetter.from_error("results-channel", text, exc)])

    def run(self, stop: threading.Event, retry_delay_s: float = 1.0,
            patience_s: float | None = None) -> None:
        """Drain until `stop` is set, then drain what is left. Failures (Redis down, store
        locked) are logged and retried every retry_delay_s (a wait that `stop` cuts short);
        unacknowledged entries are never dropped. With `patience_s`, a batch still failing that
        long after its first try is given up: kept in `unstored`, and the sink stops."""
        self._stopping = stop

        def drain_and_roll() -> None:
            self.drain_once()
            self.roll_if_due()

        def warn(exc: BaseException, attempts: int, wait_s: float) -> None:
            log.warning("sink: %r; retrying in %.1fs", exc, wait_s)

        # store locked, Redis restarting: the batch is kept and tried again
        policy = RetryPolicy(Backoff(retry_delay_s, cap_s=math.inf, jitter="none", multiplier=1.0),
                             is_retryable=lambda exc: isinstance(exc, Exception) and not stop.is_set(),
                             deadline_s=patience_s)
        try:
            while not stop.is_set():
                try:
                    retry_call(drain_and_roll, policy, on_retry=warn, sleep=stop.wait)
                except Exception as exc:
                    if not stop.is_set():  # out of patience
                        self._give_up(exc)
                        return
            self._drain_rest(retry_delay_s, warn)
        finally:
            if not self._keep_store or self.unstored is not None:
                self.release()

    def _drain_rest(self, retry_delay_s: float, warn: Callable[[BaseException, int, float], None]) -> None:
        """Write what is left, trying STOP_ATTEMPTS times; past them, keep in `unstored` the
        batch that failed and why (the caller decides what that means), never raise."""
        def drain() -> None:
            while self.drain_once(block_ms=min(50, self.poll_ms)):
                pass

        policy = RetryPolicy(Backoff(min(retry_delay_s, STOP_RETRY_CAP_S), jitter="none", multiplier=1.0),
                             is_retryable=lambda exc: isinstance(exc, Exception),
                             max_attempts=STOP_ATTEMPTS)
        try:
            retry_call(drain, policy, on_retry=warn)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        batch = self._unwritten[0] if self._unwritten is not None else ResultBatch()
        self.unstored = Unstored(batch, f"{type(exc).__name__}: {exc}")
        log.error("sink: stopped with %s not stored in %s (%s)", self.unstored.describe(),
                  self.db_path, self.unstored.reason)


def _first_of_each(evaluations: list[Evaluation], stored: frozenset[str]) -> list[Evaluation]:
    """The evaluations whose id is in `stored`, each id once."""
    seen: set[str] = set()
    found = []
    for evaluation in evaluations:
        if evaluation.evaluation_id in stored and evaluation.evaluation_id not in seen:
            seen.add(evaluation.evaluation_id)
            found.append(evaluation)
    return found
