"""Resource limits for rubric templates: a template may take neither a worker's time nor its memory.

Jinja's sandbox stops attribute walks and unsafe calls, but not a template that loops for ever,
builds a gigabyte before anything is printed, or spreads the same work over many small steps.
On top of it, every render runs inside `budget.render_budget()` (steps, characters handled):
- every call, filter and test is a step and counts what it reads and builds (`filters`);
- every way of building a big value is checked before the value exists (MAX_VALUE_CHARS): the
  `*`, `**`, `+` and `%` operators, `~` concatenation, str.format and printf widths and fields,
  the filters an argument sizes, and the str methods that pad, replace, join or translate;
  integer arguments are capped, and nothing may produce bytes;
- `{{ }}` outputs, slices and comparisons count the characters they print, copy or read.
Loops, `~` and comparisons have no hook in Jinja, so `bound_template` rewrites a template's syntax
tree before it is compiled: each loop iterates through a counting wrapper that also counts its
body's template text, each `~` becomes a checked call, and each compared value is counted.
Outside a render every guarded operation refuses to run, so Jinja cannot fold constant
expressions while a rubric loads. Breaking a limit raises jinja2's SecurityError, which rendering
reports as a RubricError.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from evaluator.rubrics.budget import (
    charge,
    charge_value,
    check,
    check_ints,
    render_budget,
    size_of,
    step,
)
from evaluator.rubrics.filters import (
    check_format,
    check_printf,
    guard_filters,
    guard_tests,
    replaced_size,
)

__all__ = ["LimitedSandbox", "bound_template", "render_budget"]

_LOOP = "_rubric_loop"
_CONCAT = "_rubric_concat"
_READ = "_rubric_read"
_SHORT_LITERAL = 1_000
"""Compared literals up to this size are not counted (a comparison reads at most that much)."""


def _counted(iterable: Iterable[Any], body_chars: int) -> Iterator[Any]:
    for item in iterable:
        step()
        charge(body_chars, "a loop's template text")
        yield item


def _concat(parts: list[Any]) -> str:
    check(sum(map(size_of, parts)), "'~' concatenation")
    return charge_value("".join(map(str, parts)), "'~' concatenation")


def _read(value: Any) -> Any:
    charge(size_of(value), "a comparison")
    return value


def _output(value: Any) -> Any:
    """The environment's finalize: a printed value is sized before it becomes text."""
    return charge_value(value, "printing a value")


def _check_str_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str method call whose result would be too big; returns the (materialized) args."""
    name, text = method.__name__, method.__self__
    if name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        check(len(text) + text.count("\t") * max(0, int(tab)), "str.expandtabs")
    elif name == "replace" and len(args) >= 2:
        check(replaced_size(text, str(args[0]), str(args[1]), *args[2:3]), "str.replace")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        check(len(text) * max(1, longest), "str.translate")
    elif name == "join" and args:
        items = list(args[0])
        check(sum(map(size_of, items)) + len(text) * max(0, len(items) - 1), "str.join")
        return (items, *args[1:])
    return args


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox rubric templates run in (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_output, **options)
        self.filters = guard_filters(self.filters)
        # jinja's typing gives DEFAULT_TESTS the value type `function`, which Callable does not match
        self.tests = guard_tests(self.tests)  # type: ignore[arg-type,assignment]
        self.globals.pop("lipsum", None)  # it writes as much text as it is asked for
        self.filters.update({_LOOP: _counted, _CONCAT: _concat, _READ: _read})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        step()
        if operator == "**" and isinstance(right, int) and right > 256:
            raise SecurityError("exponents above 256 are not allowed in rubric templates")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            check(left.bit_length() * right // 3, "'**'")
        elif operator == "*":
            sized, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(times, int) and not isinstance(sized, (int, float)):
                check(size_of(sized) * times, "repeating a value")
            elif isinstance(left, int) and isinstance(right, int):
                check((left.bit_length() + right.bit_length()) // 3, "'*'")
        elif operator == "+" and not isinstance(left, (int, float)):
            check(size_of(left) + size_of(right), "'+'")
        elif operator == "%" and isinstance(left, str):
            check_printf(left, right)
        result = super().call_binop(context, operator, left, right)
        return result if isinstance(result, (int, float)) else charge_value(result, f"'{operator}'")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        step()
        passed = kwargs
        if "_block_vars" in kwargs:  # Jinja's own, not an argument
            passed = {key: value for key, value in kwargs.items() if key != "_block_vars"}
        check_ints(args, passed, "a call")
        receiver = getattr(__obj, "__self__", None)
        read = size_of(receiver) + len(args) + sum(map(size_of, args))
        if passed:
            read += size_of(list(passed.values()))
        charge(read, "a call's arguments")
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(receiver, str):
            args = _check_str_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, (bytes, bytearray)):
            raise SecurityError("rubric templates cannot make bytes")
        if result is receiver or any(result is arg for arg in args):
            return result
        return charge_value(result, "a call")

    def getitem(self, obj: Any, argument: Any) -> Any:
        result = super().getitem(obj, argument)
        return charge_value(result, "a slice") if isinstance(argument, slice) else result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> str:
            check_format(template, args, kwargs)
            return wrapper(*args, **kwargs)

        return bounded


class _Bounded(NodeTransformer):
    """Loops count their steps and template text; `~` checks its size; comparisons count reads.
    The counting functions are applied as filters (direct calls, not sandboxed calls)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # rewrites the children in place
        body_chars = sum(len(data.data) for child in node.body
                         for data in child.find_all(nodes.TemplateData))
        node.iter = self._apply(_LOOP, node.iter, nodes.Const(body_chars))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._apply(_CONCAT, nodes.List(node.nodes, lineno=node.lineno))

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = self._read(node.expr)
        for operand in node.ops:
            operand.expr = self._read(operand.expr)
        return node

    def _read(self, node: nodes.Expr) -> nodes.Expr:
        if isinstance(node, nodes.Const) and size_of(node.value) <= _SHORT_LITERAL:
            return node
        return self._apply(_READ, node)

    @staticmethod
    def _apply(name: str, node: nodes.Node, *args: nodes.Expr) -> nodes.Filter:
        return nodes.Filter(node, name, list(args), [], None, None, lineno=node.lineno)


def bound_template(tree: nodes.Template) -> nodes.Template:
    """Rewrite a parsed template so loops, `~` and comparisons are counted and checked."""
    return _Bounded().visit(tree)
