"""The one error tree of Evaluator. Every message says what to do next."""


class EvaluatorError(Exception):
    """Base class for every error Evaluator raises on purpose."""


class ConfigError(EvaluatorError):
    """A configuration file or setting is missing or invalid."""


class InvalidTraceError(EvaluatorError):
    """A trace payload could not be turned into a valid Trace."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class RubricError(EvaluatorError):
    """A rubric file is malformed, unknown, or failed to render."""


class RubricLockError(RubricError):
    """A published rubric version changed: publish a new version file instead."""


class JudgeError(EvaluatorError):
    """A judge call failed in a way the caller must handle."""


class JudgeUnavailableError(JudgeError):
    """The judge could not be reached after all retries (or its circuit is open)."""


class StoreError(EvaluatorError):
    """The DuckDB store could not be opened, migrated or written."""


class BrokerError(EvaluatorError):
    """The queue broker (Redis) is unreachable or misconfigured."""


class DatasetError(EvaluatorError):
    """A dataset file or item is invalid."""


class VerdictParseError(JudgeError):
    """A judge reply held no usable verdict (unparseable or off-menu label)."""
