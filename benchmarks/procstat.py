"""Process measurements from /proc (no psutil here), and the child processes benchmarks start.

CPU is utime + stime of /proc/<pid>/stat; memory is VmRSS of /proc/<pid>/status. `Process`
wraps a benchmark's subprocess with its own process group, so stopping it stops its children.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A `python -m <module> ...` child in its own process group, output kept in a log file."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")
        self.popen = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=dict(env),
                                      stdout=self._out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.pid = self.popen.pid

    def wait_for_output(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text(errors="replace"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.log.name}: never printed {text!r}:\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM the group, wait, then SIGKILL what is left. Returns the exit code."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self._out.close()
        return self.popen.returncode


def judge_server(latency_ms: float, workdir: Path) -> tuple[Process, str]:
    """The local OpenAI-compatible server (tests.support.openai_server) and its base URL."""
    port = free_port()
    server = Process(["tests.support.openai_server", "--port", str(port), "--latency-ms",
                      f"{latency_ms:g}"], os.environ, workdir / "judge_server.log")
    server.wait_for_output("listening on")
    return server, f"http://127.0.0.1:{port}/v1"
