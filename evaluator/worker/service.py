"""Service mode processes: `evaluator worker` and `evaluator sink`, plus the producer side."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware.asyncio import AsyncIO

from evaluator.core.errors import ConfigError, ResultsNotStoredError
from evaluator.core.settings import Settings
from evaluator.judges.runtime import JudgeRuntime
from evaluator.judges.transport_openai import close_http_clients
from evaluator.queue.broker import build_broker, build_producer_broker, redis_client
from evaluator.queue.channel import RedisStreamChannel
from evaluator.queue.heartbeat import Sweeper
from evaluator.queue.messages import QUEUE_NAME
from evaluator.queue.persistence import warn_if_not_persistent
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.spend import RedisSpend
from evaluator.worker.actors import WorkerContext, register_evaluate_actor
from evaluator.worker.evaluation_events import evaluation_events
from evaluator.worker.metrics import metrics, start_metrics_server
from evaluator.worker.sink import LakeRetention, Sink
from evaluator.worker.supervisor import supervise

log = logging.getLogger(__name__)

IDLE_POLL_MS = 100
"""An idle dramatiq consumer backs off up to this long between polls of Redis (dramatiq's
default, 1 s, held a message arriving after a quiet spell up to 1 s: p50 span end -> stored
1.99 -> 1.50 s at 70 evals/s). Polling an empty queue 10 times a second costs next to nothing."""


class ClosesJudgeClients(dramatiq.Middleware):
    """Closes the judges' HTTP clients on dramatiq's event loop once the worker threads have
    stopped, before the AsyncIO middleware stops that loop (which does not close them)."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(close_http_clients())


def require_redis(settings: Settings) -> str:
    if not settings.redis_url:
        raise ConfigError(
            "service mode needs Redis: set EVALUATOR_REDIS_URL (e.g. redis://127.0.0.1:6379/0); "
            "for a one-process run without Redis use `evaluator run`"
        )
    return settings.redis_url


def _stop_event_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _serve_metrics(port: int | None, settings: Settings) -> None:
    if port is not None:
        start_metrics_server(port, settings.metrics_addr)


def run_worker_process(settings: Settings, threads: int, stop: threading.Event | None = None,
                       metrics_port: int | None = None) -> None:
    url = require_redis(settings)
    broker = build_broker(url, settings.worker_heartbeat_timeout_s,
                          settings.broker_maintenance_chance)
    broker.add_middleware(ClosesJudgeClients(), after=AsyncIO)  # its after_ hooks run first
    _serve_metrics(metrics_port, settings)
    metrics().watch_queue_depth("work", lambda: broker.do_qsize(QUEUE_NAME))
    channel = RedisStreamChannel(redis_client(url))
    warn_if_not_persistent(broker.client, "worker")
    registry = RubricRegistry.load(settings.rubrics_dir)
    # wait_for_open_circuit: a judge outage delays evaluations here instead of failing them
    runtime = JudgeRuntime.from_settings(settings, wait_for_open_circuit=True)
    register_evaluate_actor(broker, WorkerContext(registry, channel, settings.judges_dir,
                                                  spend=RedisSpend(redis_client(url)),
                                                  settings=settings, runtime=runtime))
    stop = stop or _stop_event_on_signals()
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=IDLE_POLL_MS)
    # One message a thread, none waiting in memory (dramatiq fetches 2 a thread): a message
    # waits in Redis, where another worker can take it, until a thread is free.
    worker.queue_prefetch = threads
    worker.start()
    log.info("worker pid %s: %s threads consuming queue %r", os.getpid(), threads, QUEUE_NAME)
    try:
        stop.wait()
    finally:
        worker.stop()
        broker.close()


def run_workers(settings: Settings, processes: int, threads: int,
                metrics_port: int | None = None) -> int:
    """One process runs in place; more are started as child processes and supervised (child i
    serves metrics on metrics_port + i). Returns the exit code: see `supervisor.supervise`."""
    require_redis(settings)
    if processes <= 1:
        run_worker_process(settings, threads, metrics_port=metrics_port)
        return 0
    command = [sys.executable, "-m", "evaluator", "worker", "--processes", "1", "--threads", str(threads),
               "--no-preflight"]  # the parent checked the judge
    children = [subprocess.Popen(command if metrics_port is None
                                 else [*command, "--metrics-port", str(metrics_port + i)])
                for i in range(processes)]
    return supervise(children, _stop_event_on_signals())


def lake_retention(settings: Settings) -> LakeRetention | None:
    """EVALUATOR_HOT_DAYS with EVALUATOR_LAKE_DIR: the sink moves older days to the lake."""
    if settings.hot_days is None:
        return None
    if settings.lake_dir is None:
        raise ConfigError("EVALUATOR_HOT_DAYS needs EVALUATOR_LAKE_DIR: where older days go")
    return LakeRetention(settings.lake_dir, settings.hot_days)


def run_sink(settings: Settings, db_path: Path, stop: threading.Event | None = None,
             metrics_port: int | None = None,
             alongside: Callable[[threading.Event], None] | None = None) -> None:
    """The sink loop. `alongside` starts what runs beside it until `stop` is set (the CLI passes
    the alert schedule: monitoring sits above the worker, so it is handed in)."""
    url = require_redis(settings)
    client = redis_client(url)
    warn_if_not_persistent(client, "sink")
    channel = RedisStreamChannel(client)
    channel.ensure_group()
    stop = stop or _stop_event_on_signals()
    sweeper = build_producer_broker(url, heartbeat_timeout_s=settings.worker_heartbeat_timeout_s)
    Sweeper(sweeper, [QUEUE_NAME]).start(stop)  # gives dead workers' messages back
    _serve_metrics(metrics_port, settings)
    metrics().watch_queue_depth("results", channel.depth)
    if alongside is not None:
        alongside(stop)
    log.info("sink pid %s writing %s", os.getpid(), db_path)
    events = evaluation_events(settings)
    sink = Sink(channel, db_path, events=events, retention=lake_retention(settings))
    try:
        sink.run(stop)
    finally:
        if events is not None:
            events.shutdown()
    if sink.unstored is not None:
        raise ResultsNotStoredError(
            f"{sink.unstored.describe()} could not be stored in {db_path}: {sink.unstored.reason}. "
            "They stay unacknowledged in Redis: start `evaluator sink` again once the store can "
            "be written")
