"""Keep a busy worker's heartbeat fresh in Redis.

dramatiq's Redis broker records a worker's heartbeat only when the worker fetches or acks a
message. A worker whose threads are all busy on long batches (a slow judge) fetches nothing,
so after the heartbeat timeout the other workers would take it for dead and run its messages a
second time. This middleware beats on a timer instead, so the timeout only has to cover real
silence (a killed process, a lost host), and can be short.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)


class Heartbeat(Middleware):
    """Every `interval_s`, one cheap broker command for `queue_name` (which records the beat)."""

    def __init__(self, queue_name: str, interval_s: float) -> None:
        self.queue_name = queue_name
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, args=(broker,), daemon=True,
                                        name="evaluator-heartbeat")
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)

    def _beat(self, broker: dramatiq.Broker) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                broker.do_qsize(self.queue_name)
            except Exception as exc:  # Redis restarting: the consumers report it too
                log.debug("heartbeat to the broker failed: %r", exc)
