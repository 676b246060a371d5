"""Listening: bind the page (127.0.0.1 unless told otherwise) and say where to open it."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

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


def login_url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/login?token={token}"


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
