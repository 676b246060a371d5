"""The one error tree of Evaluator. Every message says what to do next."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pydantic import ValidationError


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


class ResultsNotStoredError(StoreError):
    """Results the sink was given could not be written when it stopped: the run failed."""


class BrokerError(EvaluatorError):
    """The queue broker (Redis) is unreachable or misconfigured."""


class DatasetError(EvaluatorError):
    """A dataset file or item is invalid."""


class VerdictParseError(JudgeError):
    """A judge reply held no usable verdict (unparseable or off-menu label)."""


class FieldProblem(NamedTuple):
    """The first problem of a pydantic ValidationError, for messages naming the field to fix."""

    where: str
    """Dotted path of the field at fault (the caller's `root` when the whole value is)."""
    message: str
    kind: str
    """pydantic's error type, e.g. `missing`, `extra_forbidden`, `json_invalid`."""
    count: int  # type: ignore[assignment]  # shadows tuple.count(), which nobody calls on it
    """Problems in the error, this one included."""


def first_problem(error: ValidationError, root: str = "<root>") -> FieldProblem:
    """The first field at fault. For a field that may take several shapes (`str | list[...]`),
    pydantic reports one error per shape under a tag (`input.str`, `input.list[Message]`): the
    shape that got furthest is the one meant, and the tag is no field, so it is left out."""
    errors = error.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    branches = [e for e in errors if len(e["loc"]) > 1 and tuple(e["loc"][:1]) == loc[:1]]
    if len({e["loc"][1] for e in branches}) > 1:  # a union: position 1 names the shape
        deepest = max(branches, key=lambda e: len(e["loc"]))
        if len(deepest["loc"]) > 2:
            first, loc = deepest, (loc[0], *deepest["loc"][2:])
        else:
            loc = loc[:1]
            wanted = [e["msg"].removeprefix("Input should be ") for e in branches]
            first = {**first, "msg": "Input should be " + " or ".join(wanted)}
        count = error.error_count() - len(branches) + 1
    else:
        count = error.error_count()
    where = ".".join(str(part) for part in loc) or root
    return FieldProblem(where, first["msg"], first["type"], count)

