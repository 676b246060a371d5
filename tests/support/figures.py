"""Figures the reliability tests measured, for RELIABILITY.md.

Each test calls `record("crash_safety", traces=2000, lost=0, ...)`. With the environment variable
EVALUATOR_RELIABILITY_FIGURES set to a file path, one JSON object a line is appended to it;
without it nothing is written. Either way the figures are printed (visible with `pytest -s`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

FIGURES_ENV = "EVALUATOR_RELIABILITY_FIGURES"


def record(name: str, **figures: Any) -> None:
    entry = {"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    line = json.dumps(entry, sort_keys=True, default=str)
    print(f"\nfigures {line}")
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
