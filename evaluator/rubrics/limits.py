"""Resource limits for rubric templates: a template may take neither a worker's time nor its memory.

Jinja's sandbox stops attribute walks and unsafe calls, but not a template that loops for ever or
builds a gigabyte before anything is printed. On top of it:
- a step budget per render: every loop iteration and every call counts (MAX_STEPS);
- every way of building a big value is checked before the value exists (MAX_VALUE_CHARS): the
  `*`, `**`, `+` and `%` operators, `~` concatenation, str.format widths, the center, indent,
  replace, format and join filters, and the str methods that pad, replace or join.
Loops and `~` have no hook in Jinja, so `bound_template` rewrites a template's syntax tree before
it is compiled: each loop iterates through a counting wrapper, each `~` becomes a checked call.
Breaking a limit raises jinja2's SecurityError, which rendering reports as a RubricError.
"""

from __future__ import annotations

import functools
import re
import string
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from evaluator.rubrics.model import MAX_PROMPT_CHARS

MAX_STEPS = 50_000
"""Loop iterations plus calls in one render; a real rubric takes a few hundred."""
MAX_VALUE_CHARS = MAX_PROMPT_CHARS
"""The largest string (or list, counting its items' characters) a template may build."""

_LOOP = "_rubric_loop"
_CONCAT = "_rubric_concat"
_steps_left: ContextVar[list[int] | None] = ContextVar("rubric_steps_left", default=None)
_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)")
_SPEC_NUMBER = re.compile(r"\d+")


@contextmanager
def step_budget(limit: int = MAX_STEPS) -> Iterator[None]:
    """Count the steps of the renders made inside this block against `limit`."""
    token = _steps_left.set([limit])
    try:
        yield
    finally:
        _steps_left.reset(token)


def _step() -> None:
    left = _steps_left.get()
    if left is not None:
        left[0] -= 1
        if left[0] < 0:
            raise SecurityError(f"the template took more than {MAX_STEPS:,} steps (loop iterations "
                                "and calls); loop over less, or over the trace's own lists")


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _step()
        yield item


def _size(value: Any, known: dict[int, int] | None = None) -> int:
    """Characters a value stands for: a string's length; a list's items, shared ones counted
    each time they appear (as printing or joining the list would)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if not isinstance(value, (list, tuple, set, frozenset)):
        return 1
    known = {} if known is None else known
    if id(value) not in known:
        known[id(value)] = len(value) + sum(_size(item, known) for item in value)
    return known[id(value)]


def _check(size: int, what: str) -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would build {size:,} characters; rubric templates may build "
                            f"at most {MAX_VALUE_CHARS:,}")


def _check_printf(template: str, args: Any) -> None:
    for width in _PRINTF_WIDTH.findall(template):
        if width == "*" or int(width) > MAX_VALUE_CHARS:
            raise SecurityError(f"printf width {width} is not allowed in rubric templates")
    _check(len(template) + _size(args), "'%' formatting")


def _check_format_string(template: str) -> None:
    for _text, field, spec, _conversion in string.Formatter().parse(template):
        if field is not None and spec:
            if "{" in spec:
                raise SecurityError("nested format specs are not allowed in rubric templates")
            if any(int(n) > MAX_VALUE_CHARS for n in _SPEC_NUMBER.findall(spec)):
                raise SecurityError(f"format spec {spec!r} asks for more than {MAX_VALUE_CHARS:,}")


def _concat(parts: list[Any]) -> str:
    pieces = [str(part) for part in parts]
    _check(sum(map(len, pieces)), "'~' concatenation")
    return "".join(pieces)


def _joined_size(items: list[Any], separator: Any) -> int:
    return sum(len(str(item)) for item in items) + len(str(separator)) * max(0, len(items) - 1)


def _replaced_size(text: str, old: str, new: str, count: Any = -1) -> int:
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str method call whose result would be too big; returns the (materialized) args."""
    name, text = method.__name__, method.__self__
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _check(args[0], f"str.{name}")
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        _check(len(text) + text.count("\t") * max(0, int(tab)), "str.expandtabs")
    elif name == "replace" and len(args) >= 2:
        _check(_replaced_size(text, str(args[0]), str(args[1]), *args[2:3]), "str.replace")
    elif name == "join" and args:
        items = list(args[0])
        _check(_joined_size(items, text), "str.join")
        return (items, *args[1:])
    return args


def _bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The filters that can multiply their input, each checking its result size first."""
    center, indent, replace = filters["center"], filters["indent"], filters["replace"]
    format_, join = filters["format"], filters["join"]

    @functools.wraps(center)
    def bounded_center(value: Any, width: int = 80) -> str:
        _check(max(len(str(value)), int(width)), "the center filter")
        return center(value, width)

    @functools.wraps(indent)
    def bounded_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> str:
        pad = len(width) if isinstance(width, str) else int(width)
        text = str(value)
        _check(len(text) + (text.count("\n") + 1) * pad, "the indent filter")
        return indent(value, width, *args, **kwargs)

    @functools.wraps(replace)
    def bounded_replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> str:
        _check(_replaced_size(str(value), str(old), str(new), count if count is not None else -1),
               "the replace filter")
        return replace(eval_ctx, value, old, new, count)

    @functools.wraps(format_)
    def bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
        _check_printf(str(value), kwargs or args)
        return format_(value, *args, **kwargs)

    @functools.wraps(join)
    def bounded_join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        if attribute is None:
            _check(_joined_size(items, d), "the join filter")
        return join(eval_ctx, items, d, attribute)

    return {**filters, "center": bounded_center, "indent": bounded_indent,
            "replace": bounded_replace, "format": bounded_format, "join": bounded_join}


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox rubric templates run in (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = _bounded_filters(self.filters)
        self.globals.pop("lipsum", None)  # it writes as much text as it is asked for
        self.globals[_LOOP] = _counted
        self.globals[_CONCAT] = _concat

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and right > 256:
            raise SecurityError("exponents above 256 are not allowed in rubric templates")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            _check(left.bit_length() * right // 3, "'**'")
        elif operator == "*":
            sized, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(times, int) and not isinstance(sized, (int, float)):
                _check(_size(sized) * times, "repeating a value")
            elif isinstance(left, int) and isinstance(right, int):
                _check((left.bit_length() + right.bit_length()) // 3, "'*'")
        elif operator == "+" and not isinstance(left, (int, float)):
            _check(_size(left) + _size(right), "'+'")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _step()
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(__obj.__self__, str):
            args = _check_str_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            _check_format_string(value.__self__)
        return wrapper


class _Bounded(NodeTransformer):
    """Loops iterate through the step counter; `~` concatenations become size-checked calls."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name(_LOOP, "load"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Call(nodes.Name(_CONCAT, "load"), [nodes.List(node.nodes)], [], None, None,
                          lineno=node.lineno)


def bound_template(tree: nodes.Template) -> nodes.Template:
    """Rewrite a parsed template so loops count their steps and `~` checks its size."""
    return _Bounded().visit(tree)
