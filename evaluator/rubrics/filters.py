"""Every filter and test of the rubric sandbox, bounded (see `budget`).

Each filter call is a step; it reads its input (checked against the size limit, so nested lists
sharing their items cannot stand in for a huge value, and counted: slow filters count twenty times)
and its result is checked and counted when it is built. Integer arguments are capped. Filters
whose result an argument sizes are checked before they run: center, indent, replace, format,
join, wordwrap, batch, slice, tojson, sum, urlize. Tests are steps.
"""

from __future__ import annotations

import functools
import inspect
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter

from evaluator.rubrics.budget import (
    charge,
    charge_value,
    check,
    check_ints,
    size_of,
    step,
)

_SLOW = frozenset({"dictsort", "groupby", "max", "min", "pprint", "sort", "striptags", "title",
                   "unique", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"})
"""Filters that take 10-100x longer per character than a copy (sort: 1.6 s for 1M characters)."""
_SLOW_WEIGHT = 20
_LAZY = frozenset({"abs", "attr", "count", "d", "default", "first", "last", "length", "map",
                   "random", "reject", "rejectattr", "safe", "select", "selectattr", "items"})
"""Filters that read their input only through later, counted steps (or not at all)."""
_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)")


def _joined_size(items: list[Any], separator: Any) -> int:
    return sum(map(size_of, items)) + size_of(separator) * max(0, len(items) - 1)


def replaced_size(text: str, old: str, new: str, count: Any = -1) -> int:
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _largest(values: Any) -> int:
    values = list(values.values()) if isinstance(values, Mapping) else values
    return max(map(size_of, values), default=0)


def check_printf(template: str, args: Any) -> None:
    """'%' formatting: its widths, and each conversion filled with the largest argument."""
    widths = 0
    for width in _PRINTF_WIDTH.findall(template):
        if width == "*":
            raise SecurityError("printf width * is not allowed in rubric templates")
        widths += int(width)
    uses = template.count("%")
    fill = _largest(args) if isinstance(args, (tuple, list, Mapping)) else size_of(args)
    check(len(template) + widths + uses * fill, "'%' formatting")


def check_format(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """str.format: its widths, and each field filled with the largest argument."""
    widths = fields = 0
    for _text, field, spec, _conversion in string.Formatter().parse(template):
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise SecurityError("nested format specs are not allowed in rubric templates")
        widths += sum(int(n) for n in re.findall(r"\d+", spec or ""))
    fill = max(_largest(args), _largest(kwargs))
    check(len(template) + widths + fields * fill, "str.format")


# --- pre-checks of the filters an argument sizes (arguments by name, may be replaced) ---------


def _center(a: dict[str, Any]) -> None:
    check(max(len(str(a["value"])), int(a.get("width", 80))), "the center filter")


def _indent(a: dict[str, Any]) -> None:
    width, text = a.get("width", 4), str(a["s"])
    pad = len(width) if isinstance(width, str) else int(width)
    check(len(text) + (text.count("\n") + 1) * pad, "the indent filter")


def _replace(a: dict[str, Any]) -> None:
    count = a.get("count")
    check(replaced_size(str(a["s"]), str(a["old"]), str(a["new"]), -1 if count is None else count),
          "the replace filter")


def _format(a: dict[str, Any]) -> None:
    check_printf(str(a["value"]), a.get("kwargs") or a.get("args", ()))


def _materialize(a: dict[str, Any], key: str, env: Any) -> list[Any]:
    """The iterable argument as a list (its attribute taken, if one is named)."""
    items = list(a[key])
    if a.get("attribute") is not None:
        items = [*map(make_attrgetter(env, a["attribute"]), items)]
        a["attribute"] = None
    a[key] = items
    return items


def _join(a: dict[str, Any]) -> None:
    items = _materialize(a, "value", a["eval_ctx"].environment)
    check(_joined_size(items, a.get("d", "")), "the join filter")


def _wordwrap(a: dict[str, Any]) -> None:
    text, width = str(a["s"]), max(1, int(a.get("width", 79)))
    lines = min(len(text), len(text) // width + text.count(" ") + text.count("\n")) + 1
    wrap = a.get("wrapstring")
    check(len(text) + lines * (1 if wrap is None else len(str(wrap))), "the wordwrap filter")


def _batch(a: dict[str, Any]) -> None:
    items = a["value"] = list(a["value"])
    padding = 0 if a.get("fill_with") is None else int(a["linecount"])
    check(size_of(items) + padding * size_of(a["fill_with"]), "the batch filter")


def _slice(a: dict[str, Any]) -> None:
    step(max(0, int(a["slices"])))  # each slice is a list built


def _tojson(a: dict[str, Any]) -> None:
    indent = a.get("indent")
    if indent:
        width = len(indent) if isinstance(indent, str) else int(indent)
        nodes, depth = _shape(a["value"])
        check(size_of(a["value"]) + nodes * (width * depth + 1), "the tojson filter")


def _sum(a: dict[str, Any]) -> None:
    items = _materialize(a, "iterable", a["environment"])
    start = a.get("start", 0)
    if not all(isinstance(v, (int, float)) for v in (start, *items)):
        total = size_of([start, *items]) - len(items) - 1
        check(total, "the sum filter")
        charge(len(items) * total // 2, "the sum filter (each addition copies the total)")


def _urlize(a: dict[str, Any]) -> None:
    text = str(a["value"])
    extra = sum(len(str(a.get(key) or "")) for key in ("target", "rel")) + 60
    check(2 * len(text) + (len(text.split()) + 1) * extra, "the urlize filter")


_PRE_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _center, "indent": _indent, "replace": _replace, "format": _format, "join": _join,
    "wordwrap": _wordwrap, "batch": _batch, "slice": _slice, "tojson": _tojson, "sum": _sum,
    "urlize": _urlize,
}


def _shape(value: Any, depth: int = 1) -> tuple[int, int]:
    """(nodes, depth) of a nested value, as JSON would lay it out one node a line."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, (list, tuple)):
        return 1, depth
    shapes = [_shape(item, depth + 1) for item in value]
    return 1 + sum(n for n, _ in shapes), max((d for _, d in shapes), default=depth)


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(func)
    takes_state = hasattr(func, "jinja_pass_arg")  # eval context or environment comes first
    weight = 0 if name in _LAZY else _SLOW_WEIGHT if name in _SLOW else 1
    pre_check = _PRE_CHECKS.get(name)
    what = f"the {name} filter"

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        step()
        check_ints(args, kwargs, what)
        value = args[1 if takes_state else 0]
        if weight:
            size = size_of(value)
            check(size, f"the input of {what}")
            charge(weight * size, what)
        if pre_check is not None:
            bound = signature.bind(*args, **kwargs)
            pre_check(bound.arguments)
            args, kwargs = bound.args, bound.kwargs
        result = func(*args, **kwargs)
        return result if result is value else charge_value(result, what)

    return guarded


def _guarded_test(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        step()
        charge(sum(map(size_of, args)), "a test")
        return func(*args, **kwargs)

    return guarded


def guard_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    return {name: _guarded_filter(name, func) for name, func in filters.items()}


def guard_tests(tests: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    return {name: _guarded_test(func) for name, func in tests.items()}

