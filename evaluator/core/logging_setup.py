"""Process logging: JSON lines for machines, readable lines for people, evaluation ids on both.

When stderr is not a terminal (a service under systemd, Docker or Kubernetes, a CI log), every
record is one JSON object a line. On a terminal it is a rich (or plain) line. Code that works on
one evaluation runs inside `evaluation_context(trace_id, evaluation_id)`; every record logged
meanwhile, by us or by a library, carries both ids. The context lives in contextvars, so each
asyncio task and thread keeps its own.

Log records never carry a trace's payload: a queue message logged by dramatiq (at DEBUG when a
worker receives it, at ERROR when it fails) is shown as its actor and id, and every DEBUG
record, whoever logs it (LiteLLM logs whole prompts), is PII-masked before it is written.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from evaluator.core.errors import ConfigError
from evaluator.core.settings import DEFAULTS, Settings

CONTEXT_FIELDS = ("trace_id", "evaluation_id")
CHATTY_LIBRARY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "LiteLLM", "LiteLLM Router")
"""They log a line per judge call at INFO (~1 record per evaluation, measurable CPU at load):
kept to WARNING unless the process logs at DEBUG."""

_trace_id: ContextVar[str | None] = ContextVar("evaluator_trace_id", default=None)
_evaluation_id: ContextVar[str | None] = ContextVar("evaluator_evaluation_id", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", *CONTEXT_FIELDS}


@contextmanager
def evaluation_context(trace_id: str, evaluation_id: str) -> Iterator[None]:
    """Tag every log record emitted inside the block with these ids."""
    trace_token = _trace_id.set(trace_id)
    evaluation_token = _evaluation_id.set(evaluation_id)
    try:
        yield
    finally:
        _evaluation_id.reset(evaluation_token)
        _trace_id.reset(trace_token)


class EvaluationContextFilter(logging.Filter):
    """Copies the current trace_id / evaluation_id onto records that do not set their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("trace_id", _trace_id), ("evaluation_id", _evaluation_id)):
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


def _without_payload(value: Any, levels: int = 3) -> Any:
    """A queue message or a work message (the dict an actor gets) as a short description;
    arguments (tuples, as dramatiq logs `args=%r`) with those replaced; anything else as is."""
    if hasattr(value, "message_id") and hasattr(value, "actor_name"):
        return f"<{value.actor_name} message {value.message_id}>"
    if isinstance(value, dict) and isinstance(value.get("items"), list):
        return f"<work message: {len(value['items'])} traces>"
    if levels and isinstance(value, tuple):
        return tuple(_without_payload(item, levels - 1) for item in value)
    return value


TextMasker = Callable[[str], str]
DebugMasker = Callable[[], TextMasker | None]
"""Builds the masker of DEBUG records (None: masking is off). Called at the first DEBUG record,
so a process that never logs at DEBUG never builds it: the entry point passes one made from
evaluator.pii.masking.payload_masker (core does not import pii)."""


class PayloadFilter(logging.Filter):
    """Keeps trace payloads out of log lines (see the module docstring). The masking of DEBUG
    records costs a PII scan per record, paid only when a process logs at DEBUG."""

    def __init__(self, debug_masker: DebugMasker | None = None) -> None:
        super().__init__()
        self._debug_masker = debug_masker
        self._mask: TextMasker | None = None
        self._built = False

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = _without_payload(record.args)
        if record.levelno <= logging.DEBUG and self._debug_masker is not None:
            if not self._built:
                self._mask, self._built = self._debug_masker(), True
            if self._mask is not None:
                record.msg, record.args = self._mask(record.getMessage()), None
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, ids, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and name not in entry and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """The readable line, with the evaluation ids appended when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS
                       if getattr(record, name, None) is not None)
        return f"{line} [{ids}]" if ids else line


def resolve_level(level: str | int | None, default: str = "WARNING") -> int:
    """`level` (--log-level, else Settings.log_level), else `default`."""
    value = level if level is not None else default
    if isinstance(value, int):
        return value
    number = logging.getLevelName(value.strip().upper())
    if not isinstance(number, int):
        raise ConfigError(f"unknown log level {value!r}: use DEBUG, INFO, WARNING or ERROR"
                          " (--log-level or EVALUATOR_LOG_LEVEL)")
    return number


def build_handler(stream: TextIO, json_lines: bool | None = None,
                  debug_masker: DebugMasker | None = None) -> logging.Handler:
    """JSON lines unless the stream is a terminal (or `json_lines` says otherwise); DEBUG records
    masked by what `debug_masker` builds."""
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    if json_lines:
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonLinesFormatter())
    else:
        try:
            # lazy: rich only for a terminal, and optional: plain lines without it
            from rich.console import Console
            from rich.logging import RichHandler

            handler = RichHandler(console=Console(file=stream), show_path=False, rich_tracebacks=False)
            handler.setFormatter(PlainFormatter("%(message)s"))
        except ImportError:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(EvaluationContextFilter())
    handler.addFilter(PayloadFilter(debug_masker))
    handler.set_name("evaluator")
    return handler


def configure_logging(level: str | int | None = None, stream: TextIO | None = None,
                      json_lines: bool | None = None, default_level: str = "WARNING",
                      settings: Settings = DEFAULTS, debug_masker: DebugMasker | None = None) -> None:
    """Install our handler on the root logger (replacing an earlier one of ours). The level is
    `level`, else settings.log_level (EVALUATOR_LOG_LEVEL), else `default_level`. DEBUG records
    are masked by what `debug_masker` builds (see DebugMasker); without one they are not."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "evaluator":
            root.removeHandler(existing)
    root.addHandler(build_handler(stream or sys.stderr, json_lines, debug_masker))
    root.setLevel(resolve_level(level if level is not None else settings.log_level, default_level))
    library_level = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
