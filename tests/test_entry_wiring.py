"""What the entry point hands down to lower layers, which do not import the higher ones: the PII
masker of DEBUG log records (core does not import pii)."""

from __future__ import annotations

import io
import logging

from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.logging_setup import CHATTY_LIBRARY_LOGGERS, configure_logging


def test_the_cli_masks_debug_log_records():
    root = logging.getLogger()
    level = root.level
    try:
        result = CliRunner().invoke(cli, ["--log-level", "DEBUG", "rubrics", "--help"])
        assert result.exit_code == 0, result.output
        handler = next(h for h in root.handlers if h.get_name() == "evaluator")
        record = logging.LogRecord("LiteLLM", logging.DEBUG, __file__, 1, "prompt from %s",
                                   ("jane.doe@example.com",), None)
        assert handler.filter(record)
        assert "jane.doe@example.com" not in record.getMessage()
        assert "prompt from" in record.getMessage()
    finally:
        configure_logging("WARNING", stream=io.StringIO())
        root.removeHandler(next(h for h in root.handlers if h.get_name() == "evaluator"))
        root.setLevel(level)
        for name in CHATTY_LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
