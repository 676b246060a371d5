"""Keep a busy worker's heartbeat fresh in Redis, and give a dead worker's messages back on time.

dramatiq's Redis broker records a worker's heartbeat only when the worker fetches or acks a
message. A worker whose threads are all busy on long batches (a slow judge) fetches nothing,
so after the heartbeat timeout the other workers would take it for dead and run its messages a
second time. The sweep beats on a timer instead, so the timeout only has to cover real silence
(a killed process, a lost host), and can be short.

dramatiq moves a dead worker's unacknowledged messages back to the queue only during
"maintenance", which a broker command triggers by chance (`maintenance_chance` per million
commands): busy workers issue few commands, and recovery took minutes. Every sweep runs that
maintenance, so each worker and the sink look for dead workers every heartbeat_timeout / 4. A
killed worker's last beat is at most its time of death, so it is overdue at most one timeout
later, and the next sweep finds it: its messages are back in the queue at most 1.25 x the
heartbeat timeout after it died (75 s with the default 60 s).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import dramatiq
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)

SWEEPS_PER_TIMEOUT = 4


class Sweeper:
    """Every heartbeat_timeout / 4: for each queue (and its delay queue), one dispatch of
    dramatiq's broker script with maintenance forced. That records this process's heartbeat
    and moves the unacknowledged messages of workers silent for longer than the timeout back
    to their queue. `clock_ms` is the time the script is told (dramatiq's own clock)."""

    def __init__(self, broker, queue_names: Sequence[str],
                 clock_ms: Callable[[], int] = current_millis) -> None:
        self.broker = broker
        self.queue_names = [name for queue in queue_names for name in (queue, dq_name(queue))]
        self.interval_s = broker.heartbeat_timeout / 1000 / SWEEPS_PER_TIMEOUT
        self._clock_ms = clock_ms

    def sweep(self) -> None:
        """dramatiq's dispatch script with its argument list (RedisBroker._dispatch), the
        maintenance flag set: the "qsize" command only reads, maintenance does the rest."""
        broker = self.broker
        dispatch = broker.scripts["dispatch"]
        for queue in self.queue_names:
            dispatch(args=["qsize", self._clock_ms(), queue, broker.broker_id,
                           broker.heartbeat_timeout, broker.dead_message_ttl, 1,
                           broker._max_unpack_size()],
                     keys=[broker.namespace])

    def run(self, wait: Callable[[float], bool]) -> None:
        """Sweep after every `wait(interval_s)` until it returns True (a stop event's wait)."""
        while not wait(self.interval_s):
            try:
                self.sweep()
            except Exception as exc:  # Redis restarting: the consumers report it too
                log.debug("heartbeat and dead-worker sweep failed: %r", exc)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop.wait,), daemon=True,
                                  name="evaluator-heartbeat")
        thread.start()
        return thread


class Heartbeat(Middleware):
    """A Sweeper on the worker's broker for as long as the worker runs."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._thread = Sweeper(broker, [self.queue_name]).start(self._stop)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
