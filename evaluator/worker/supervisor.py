"""Supervising worker child processes with dramatiq's process-model semantics (`dramatiq.cli.main`):
a child that exits while the parent is running is a failure, so the parent stops the others and
exits with that child's code; a stop request (SIGINT/SIGTERM to the parent) stops every child and
the parent exits with the first failing child's code, or 0."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)

RET_KILLED = 1
"""The parent's exit code for a child that died of a signal or exited 0 on its own (dramatiq's)."""


def _failure_code(code: int) -> int:
    return code if code > 0 else RET_KILLED


def _first_unexpected_exit(children: Sequence[subprocess.Popen]) -> int | None:
    for child in children:
        code = child.poll()
        if code is not None:
            log.critical("worker pid %s exited unexpectedly (code %s): stopping the other workers",
                         child.pid, code)
            return code
    return None


def supervise(children: Sequence[subprocess.Popen], stop: threading.Event, poll_s: float = 1.0) -> int:
    """Wait until `stop` is set or a child exits, then terminate the rest and wait for them all.
    Returns the exit code for the parent, never 0 when a child died on its own."""
    unexpected = _first_unexpected_exit(children)
    while unexpected is None and not stop.wait(poll_s):
        unexpected = _first_unexpected_exit(children)
    for child in children:
        if child.poll() is None:
            child.terminate()
    codes = [child.wait() for child in children]
    if unexpected is not None:
        return _failure_code(unexpected)
    # After a stop, a child ended by the SIGTERM the parent sent it (one still starting up, before
    # its handler was installed) was stopped as asked; any other code is a failure.
    failures = [code for code in codes if code not in (0, -signal.SIGTERM)]
    return _failure_code(failures[0]) if failures else 0
