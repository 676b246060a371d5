"""Listening: bind the page (127.0.0.1 unless told otherwise) and say where to open it."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

from evaluator.core.errors import ConfigError

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def login_url(host: str, port: int, token: str) -> str:
    return f"{base_url(host, port)}/login?token={token}"


async def serve(app: web.Application, host: str, port: int,
                on_ready: Callable[[int], None], stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or forever); `on_ready` gets the port once it listens (the
    one the system chose when `port` is 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): "
                              "pass another --port, or stop what uses it") from exc
        on_ready(runner.addresses[0][1])
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


@contextmanager
def serving(app: web.Application, host: str = LOOPBACK, port: int = 0) -> Iterator[str]:
    """The page served from a thread while the caller drives it (a browser in a test or a
    script); yields its base URL."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    ports: list[int] = []
    failures: list[BaseException] = []

    def on_ready(bound: int) -> None:
        ports.append(bound)
        ready.set()

    def run() -> None:
        try:
            loop.run_until_complete(serve(app, host, port, on_ready, stop))
        except BaseException as exc:  # handed to the caller's thread below
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="annotate-page", daemon=True)
    thread.start()
    ready.wait()
    if failures:
        raise failures[0]
    try:
        yield base_url(host, ports[0])
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()
