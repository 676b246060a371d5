"""Named extension points: the built-ins registered by our modules, third parties through Python
entry points (importlib.metadata), the way simonw/llm and inspect_ai find their plugins.

Each extension point is a `Registry` over one entry-point group (`evaluator.scorers`,
`evaluator.judges`, `evaluator.alert_sinks`). A plugin package declares, in its pyproject.toml:

    [project.entry-points."evaluator.scorers"]
    word_count = "my_package.scorers:WordCount"

Entry points are loaded once per process, on the first lookup of their group. A plugin that
fails to load (import error, wrong type, a name a built-in already has) is logged once, as one
line naming the package and the error, and left out: the other plugins and every built-in keep
working. `evaluator plugins` lists what loaded and what did not.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from evaluator.core.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
BUILT_IN = "built-in"


@dataclass(frozen=True)
class Plugin:
    """One registered name of an extension point, as `evaluator plugins` shows it."""

    group: str
    name: str
    origin: str
    """`built-in`, or the distribution that declared the entry point (name and version)."""
    target: str
    """Where it comes from: `module:attribute`."""
    problem: str | None = None
    """Why it is not usable (it failed to load); None when it is."""


def _origin(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown distribution"


class Registry(Generic[T]):
    """The built-in and plugin entries of one extension point, by name.

    `check(value)` returns why a loaded entry point is not usable here (wrong type), or None.
    """

    def __init__(self, group: str, what: str, check: Callable[[object], str | None]):
        self.group = group
        self.what = what
        self._check = check
        self._builtins: dict[str, tuple[T, str]] = {}
        self._plugins: dict[str, T] | None = None
        self._listing: list[Plugin] = []
        self._lock = threading.Lock()

    def register(self, name: str, value: T, target: str = "") -> T:
        """A built-in entry (our own modules call this at import)."""
        self._builtins[name] = (value, target or _target_of(value))
        return value

    def get(self, name: str) -> T:
        """The entry called `name`; ConfigError listing the known names when there is none."""
        if name in self._builtins:
            return self._builtins[name][0]
        plugins = self._loaded()
        if name in plugins:
            return plugins[name]
        broken = next((p for p in self._listing if p.name == name and p.problem), None)
        if broken is not None:
            raise ConfigError(f"{self.what} '{name}' is a plugin that failed to load: {broken.problem}")
        raise ConfigError(f"unknown {self.what} '{name}'; known: {', '.join(self.names())} (install "
                          f"a plugin that registers it under the entry-point group {self.group})")

    def names(self) -> list[str]:
        return sorted({*self._builtins, *self._loaded()})

    def listing(self) -> list[Plugin]:
        """Every entry, built-in or plugin, usable or not."""
        self._loaded()
        builtins = [Plugin(self.group, name, BUILT_IN, target)
                    for name, (_, target) in sorted(self._builtins.items())]
        return builtins + sorted(self._listing, key=lambda p: p.name)

    def reload(self) -> None:
        """Forget the loaded plugins (tests that install one, long-lived shells)."""
        with self._lock:
            self._plugins = None
            self._listing = []

    def _loaded(self) -> dict[str, T]:
        with self._lock:
            if self._plugins is None:
                self._plugins, self._listing = {}, []
                for entry_point in _entry_points(self.group):
                    self._load(entry_point)
            return self._plugins

    def _load(self, entry_point: importlib.metadata.EntryPoint) -> None:
        assert self._plugins is not None
        origin = _origin(entry_point)
        problem = None
        if entry_point.name in self._builtins:
            problem = f"the name '{entry_point.name}' is a built-in {self.what}; rename the entry point"
        else:
            try:
                value = entry_point.load()
            except Exception as exc:  # a broken plugin must not take the others down
                problem = f"{type(exc).__name__}: {exc}"
            else:
                problem = self._check(value)
                if problem is None:
                    self._plugins[entry_point.name] = value
        if problem is not None:
            log.warning("plugin %s '%s' (%s, from %s) is not loaded: %s", self.group,
                        entry_point.name, entry_point.value, origin, problem)
        self._listing.append(Plugin(self.group, entry_point.name, origin, entry_point.value, problem))


def _entry_points(group: str) -> Iterator[importlib.metadata.EntryPoint]:
    seen: set[str] = set()
    for entry_point in importlib.metadata.entry_points(group=group):
        if entry_point.name not in seen:  # a package installed twice on the path lists it twice
            seen.add(entry_point.name)
            yield entry_point


def _target_of(value: object) -> str:
    module = getattr(value, "__module__", None) or type(value).__module__
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{module}:{name}"


def needs_callable(value: object) -> str | None:
    """The usual check: the entry point must name a class or function."""
    return None if callable(value) else f"expected a class or function, got {type(value).__name__}"
