"""The budget of one render: steps taken and characters handled, and how values are sized.

Every render of a rubric block runs inside `render_budget()`. Two counters bound it:
- steps (MAX_STEPS): loop iterations and calls (method calls, globals, filters, tests);
- characters handled (MAX_HANDLED_CHARS): what filters read (slow filters count twenty times)
  and what filters, calls, operators, concatenations, loop bodies and `{{ }}` outputs build.
So a render takes bounded time and builds bounded memory however its work is spread over
values each under the size limit (MAX_VALUE_CHARS). Outside a render there is no budget and
every guarded operation refuses to run: that keeps Jinja from evaluating constant expressions
while a rubric loads (its compile-time constant folding), out of any budget.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

from evaluator.rubrics.model import MAX_PROMPT_CHARS

MAX_STEPS = 50_000
"""Loop iterations plus calls in one render; a real rubric takes a few hundred."""
MAX_VALUE_CHARS = MAX_PROMPT_CHARS
"""The largest string (or list, counting its items' characters) a template may build, and the
largest integer argument it may pass (a width, a count, a length)."""
MAX_HANDLED_CHARS = 20 * MAX_PROMPT_CHARS
"""Characters read and built in one render; a bundled rubric on a full prompt handles ~8M."""

_SEQUENCES = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)


@dataclass
class _Budget:
    steps: int = MAX_STEPS
    chars: int = MAX_HANDLED_CHARS


_active: ContextVar[_Budget | None] = ContextVar("rubric_render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """Count the steps and characters of the renders made inside this block."""
    token = _active.set(_Budget())
    try:
        yield
    finally:
        _active.reset(token)


def _budget() -> _Budget:
    budget = _active.get()
    if budget is None:
        raise SecurityError("rubric templates run only inside a render (no constant folding)")
    return budget


def step(count: int = 1) -> None:
    budget = _budget()
    budget.steps -= count
    if budget.steps < 0:
        raise SecurityError(f"the template took more than {MAX_STEPS:,} steps (loop iterations "
                            "and calls); loop over less, or over the trace's own lists")


def charge(chars: int, what: str) -> None:
    """Count `chars` characters handled by `what` against the render's budget."""
    budget = _budget()
    budget.chars -= chars
    if budget.chars < 0:
        raise SecurityError(f"{what}: the template handled more than {MAX_HANDLED_CHARS:,} "
                            "characters in one render; build less, or fewer times")


def charge_value(value: Any, what: str) -> Any:
    """Check a value just built against the size limit, count it, and return it."""
    size = size_of(value)
    check(size, what)
    charge(size, what)
    return value


def check(size: int, what: str) -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would build {size:,} characters; rubric templates may build "
                            f"at most {MAX_VALUE_CHARS:,}")


def check_ints(args: tuple[Any, ...], kwargs: Mapping[str, Any], what: str) -> None:
    """Refuse integer arguments past MAX_VALUE_CHARS: widths, counts and lengths that size a
    result are the way to ask for a huge one."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE_CHARS:
            raise SecurityError(f"{what}: the argument {value:,} is larger than rubric templates "
                                f"may pass ({MAX_VALUE_CHARS:,})")


def size_of(value: Any, known: dict[int, int] | None = None) -> int:
    """Characters a value stands for when printed or joined: a string's (or bytes') length; a
    collection's items, shared ones counted each time they appear (as printing would)."""
    kind = type(value)
    if kind is str:
        return len(value)
    if value is None or kind is int or kind is float or kind is bool:  # before the ABC checks
        return 1
    if kind is list or kind is tuple:
        items: Any = value
    elif kind is dict:
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (str, bytes, bytearray)):
        return len(value)
    elif isinstance(value, Namespace):  # prints its attributes
        return size_of(object.__getattribute__(value, "_Namespace__attrs"), known)
    elif isinstance(value, Mapping):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, _SEQUENCES):
        items = value
    else:
        return 1
    known = {} if known is None else known
    if id(value) not in known:  # `value` outlives this call, so its id stays its own
        known[id(value)] = len(items) + sum(size_of(item, known) for item in items)
    return known[id(value)]
