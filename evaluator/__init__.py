"""Evaluator: LLM-as-judge quality evaluation for traced LLM applications.

`from evaluator import evaluate` (and `evaluate_async`, `Evaluated`) is the Python API
(evaluator.api); it is imported on first use, so `import evaluator` (the span exporter's host
app does it) loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = ("Evaluated", "evaluate", "evaluate_async")
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("evaluator.api"), name)
    raise AttributeError(f"module 'evaluator' has no attribute {name!r}")
