"""One line for an operating-system error on a path the user gave (an output file in a directory
that cannot exist, a --db under a file, no permission), instead of a traceback."""

from __future__ import annotations

import errno
import sys

_HINTS = {
    errno.EEXIST: "a file stands where a directory is needed",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.ENOENT: "a directory on the way does not exist and cannot be created",
    errno.EISDIR: "it is a directory: give a file name",
    errno.EACCES: "no permission",
    errno.EPERM: "no permission",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
}


def os_error_line(exc: OSError) -> str:
    """`PATH: what went wrong (why); what to do`, without the Python exception."""
    where = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or exc.__class__.__name__
    hint = _HINTS.get(exc.errno)  # type: ignore[arg-type]
    return (f"cannot use {where}: {what}{f' ({hint})' if hint else ''}; give a path in a "
            "directory you can write, or fix the path's permissions")


def out_of_memory(exc: BaseException) -> bool:
    """DuckDB ran out of the memory it may use (only when DuckDB is loaded: `--help` does not)."""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.OutOfMemoryException)
