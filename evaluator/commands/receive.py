"""`evaluator receive`: the OTLP/HTTP receiver, so a Collector feeds Evaluator."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: $EVALUATOR_RECEIVER_ADDR, "
                                           "else 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port [default: $EVALUATOR_RECEIVER_PORT, else 4318, OTLP/HTTP's].")
@click.option("--embedded", is_flag=True,
              help="Judge and store in this process (one machine, no Redis) instead of enqueuing.")
@click.option("--judge", default=None, help="Judge config name [default: $EVALUATOR_JUDGE, else offline].")
@click.option("--sample-rate", type=float, default=None, help="Random sampling rate [default: 0.10].")
@click.option("--rubric", "rubrics", multiple=True, help="Rubric ref; repeatable [default: all].")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file (--embedded).")
def receive(host, port, embedded, judge, sample_rate, rubrics, db) -> None:
    """Accept OTLP/HTTP spans and GenAI log records (POST /v1/traces, /v1/logs; protobuf or
    JSON, gzip or not) and sample, mask and enqueue them as the in-app span exporter does.
    Runs until SIGINT or SIGTERM, then hands on every buffered trace."""
    import signal  # lazy: the receiver's imports (aiohttp) are for this command only
    import threading

    from evaluator.commands.context import current_settings
    from evaluator.worker.receive_job import ReceiverService

    settings = current_settings()
    service = ReceiverService(
        settings, host=host or settings.receiver_addr,
        port=settings.receiver_port if port is None else port, judge=judge or settings.judge,
        sample_rate=settings.sample_rate if sample_rate is None else sample_rate, rubrics=rubrics,
        embedded=embedded, db_path=db)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"receiving OTLP/HTTP on http://{host or settings.receiver_addr}:{service.port} "
               f"(/v1/traces, /v1/logs); {'judging here' if embedded else 'enqueuing to Redis'}",
               err=True)
    try:
        stop.wait()
    finally:
        service.stop()
