"""One-way pipes between the processes of one run, with room for many chunks in flight."""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext

PIPE_BYTES = 1024 * 1024
"""The pipe buffer asked for (Linux's default limit for unprivileged processes): a few dozen
chunks of traces or results, so neither end waits on the other for each one (64 KB, the
default, holds two; each wait costs a wake-up, long on a busy machine)."""


def roomy_pipe(context: BaseContext) -> tuple[Connection, Connection]:
    """(receiving end, sending end) of a one-way pipe, its buffer PIPE_BYTES where the system
    lets a pipe grow (else its default)."""
    receiving, sending = context.Pipe(duplex=False)
    try:
        fcntl.fcntl(sending.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):  # not Linux, or above the system's limit
        pass
    return receiving, sending


def picklable(exc: BaseException, stand_in: Callable[[str], BaseException]) -> BaseException:
    """`exc` when it survives the pipe to the parent, else `stand_in` of its type and text."""
    import pickle  # lazy: only a failed process needs it

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return stand_in(f"{type(exc).__name__}: {exc}")
