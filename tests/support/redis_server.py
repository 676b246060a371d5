"""A throwaway Redis of the test's own: its own port and data directory. Persistent by default,
every write fsynced to the append-only file, so it can be SIGKILLed and started again with its
data (the machine's shared Redis on 6379 runs without persistence: restarting it loses the
queue). Its own server also keeps a test apart from other test runs sharing that Redis.

    with RedisServer(tmp_path / "redis") as server:
        server.url        # "redis://127.0.0.1:PORT/0"
        server.kill()     # SIGKILL, like a crash
        server.start()    # same port, same directory, same data
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_redis_server() -> str:
    """The redis-server binary; skipped without one, except in CI (CI=true) where it fails."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: CI needs it for the crash-safety tests")
        pytest.skip(message)
    return binary


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None, persistent: bool = True,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.persistent = persistent
        self.extra_args = extra_args
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("this Redis is already running")
        command = [
            require_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "", "--logfile", str(self.directory / "redis.log"),
            *(["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
              else ["--appendonly", "no"]),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} did not come up:\n{log}")
            time.sleep(0.05)
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, only what the append-only file already holds survives."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def restart(self, hard: bool = True, down_s: float = 0.0) -> None:
        """Kill (or stop) it, stay down `down_s`, start it again with the same port and data."""
        self.kill() if hard else self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=30)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


@pytest.fixture
def persistent_redis(tmp_path):
    """A persistent RedisServer of this test's own, started; killed at the end."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def private_redis_url(tmp_path):
    """The URL of a Redis no other test run shares (no persistence)."""
    with RedisServer(tmp_path / "redis", persistent=False) as server:
        yield server.url
