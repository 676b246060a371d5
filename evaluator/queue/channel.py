"""The results channel between workers and the single DuckDB writer (the sink).

Embedded mode uses an in-process queue. Service mode uses a Redis stream with a consumer
group: the sink reads, commits to DuckDB, then acknowledges, so a crash between the two
re-delivers (at-least-once) and the store's idempotent evaluation_id removes duplicates.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

from evaluator.core.errors import BrokerError
from evaluator.core.stage_timing import timed
from evaluator.queue.messages import ResultBatch

Entry = tuple[str, bytes | str | ResultBatch]
"""A channel entry: (id to acknowledge, encoded ResultBatch; in process, the batch itself)."""

log = logging.getLogger(__name__)


class ResultChannel(Protocol):
    def publish(self, batch: ResultBatch) -> None: ...

    def read(self, max_entries: int, block_ms: int) -> list[Entry]: ...

    def ack(self, entry_ids: list[str]) -> None: ...

    def depth(self) -> int: ...


class InMemoryChannel:
    """A thread-safe in-process channel for embedded mode and tests. It hands the batches over
    as they are, never encoded: the publisher must not change a batch once published."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Entry | None] = queue.Queue()
        """Entries, and the None `close` puts to wake a waiting reader."""
        self._next_id = 0
        self._closed = False

    def publish(self, batch: ResultBatch) -> None:
        self._next_id += 1
        self._queue.put((str(self._next_id), batch))

    def close(self) -> None:
        """Nothing more is coming: a read waiting now returns at once, and later reads take
        what is left without waiting (an embedded sink that was told to stop then writes at
        once instead of after its poll interval, twice)."""
        self._closed = True
        self._queue.put(None)

    def read(self, max_entries: int, block_ms: int) -> list[Entry]:
        entries: list[Entry] = []
        try:
            entry = self._queue.get(timeout=0 if self._closed else block_ms / 1000)
            while True:
                if entry is not None:
                    entries.append(entry)
                if len(entries) >= max_entries:
                    break
                entry = self._queue.get_nowait()
        except queue.Empty:
            pass
        return entries

    def ack(self, entry_ids: list[str]) -> None:
        """Nothing to do: an in-process entry is gone once read."""

    def depth(self) -> int:
        return self._queue.qsize()


class RedisStreamChannel:
    """Results as entries of a Redis stream, read by the `sink` consumer group."""

    def __init__(self, client, stream: str = "evaluator:results", group: str = "sink",
                 consumer: str = "sink-1") -> None:
        self._client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._pending_from: str | None = "0"
        """Where re-reading delivered-but-unacknowledged entries resumes; None once all are read."""
        self.last_depth = 0
        """The stream's length after the last read: entries unread or unacknowledged then, which
        a Redis restarted without persistence takes with it."""

    def ensure_group(self) -> None:
        # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
        import redis

        try:
            self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise BrokerError(f"cannot create consumer group on {self.stream}: {exc}") from None

    @timed("publish")
    def publish(self, batch: ResultBatch, counters: Mapping[str, float] | None = None,
                counters_ttl_s: int = 0) -> None:
        """Add the entry; with `counters` (key -> amount, each kept `counters_ttl_s`), increase
        them in the same transaction: a process killed mid-publish leaves neither behind."""
        if not counters:
            self._client.xadd(self.stream, {"b": batch.to_json()})
            return
        pipe = self._client.pipeline(transaction=True)
        for key, amount in counters.items():
            pipe.incrbyfloat(key, amount)
            pipe.expire(key, counters_ttl_s)
        pipe.xadd(self.stream, {"b": batch.to_json()})
        pipe.execute()

    def read(self, max_entries: int, block_ms: int) -> list[Entry]:
        """Entries delivered earlier but never acknowledged come first: after a sink crash, and
        after a lost connection (Redis may have delivered a read whose reply never arrived)."""
        with self._recovering():
            while self._pending_from is not None:
                entries, last_id = self._xread(self._pending_from, max_entries, None)
                self._pending_from = last_id
                if entries:
                    break
            else:
                entries = self._xread(">", max_entries, block_ms)[0]
            self.last_depth = int(self._client.xlen(self.stream))
            return entries

    def _xread(self, start: str, count: int, block_ms: int | None) -> tuple[list[Entry], str | None]:
        """The entries read, and the id of the last one (None when there was none)."""
        reply = self._client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
        )
        entries: list[Entry] = []
        last_id = None
        for _stream, messages in reply or []:
            for entry_id, fields in messages:
                last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                if not fields:  # a pending entry that was deleted meanwhile
                    self._client.xack(self.stream, self.group, entry_id)
                    continue
                entries.append((last_id, fields.get(b"b", fields.get("b", b""))))
        return entries, last_id

    def ack(self, entry_ids: list[str]) -> None:
        if entry_ids:
            with self._recovering():
                pipe = self._client.pipeline(transaction=True)
                pipe.xack(self.stream, self.group, *entry_ids)
                pipe.xdel(self.stream, *entry_ids)
                pipe.execute()

    @contextmanager
    def _recovering(self) -> Iterator[None]:
        """On a lost connection, start again from the unacknowledged entries; when Redis lost
        the consumer group (restarted without persistence, flushed), create it again."""
        # lazy: redis loads only in Redis mode: `evaluator run` and the exporter's import do without it
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError):
            self._pending_from = "0"
            raise
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._pending_from = "0"
                self.ensure_group()
                log.error("the consumer group %r of %s was gone (Redis restarted without "
                          "persistence, or was flushed) and was created again: up to %d result "
                          "entries may be lost (the stream's length when last read). Run Redis "
                          "with appendonly yes.", self.group, self.stream, self.last_depth)
                self.last_depth = 0
            raise

    def depth(self) -> int:
        return int(self._client.xlen(self.stream))
