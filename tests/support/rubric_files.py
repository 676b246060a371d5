"""Rubric folders for tests: the bundled rubrics with one more version of a criterion."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

BUNDLED = Path(__file__).resolve().parent.parent.parent / "rubrics"


def bundled_rubrics_with_v2(folder: Path, criterion: str, edit: Callable[[str], str]) -> Path:
    """A copy of the bundled rubrics under `folder`, plus `criterion`@v2: its v1 as `edit`
    changes it."""
    rubrics = folder / "rubrics"
    shutil.copytree(BUNDLED, rubrics)
    v1 = (rubrics / criterion / "v1.jinja").read_text(encoding="utf-8")
    (rubrics / criterion / "v2.jinja").write_text(edit(v1.replace("version: 1\n", "version: 2\n", 1)),
                                                  encoding="utf-8")
    return rubrics


def rubrics_with_a_system_block_that_does_not_render(folder: Path) -> Path:
    """The bundled rubrics and a relevance@v2 whose system block names a value it cannot see:
    it parses, and fails only when compiled (its system block rendered)."""
    return bundled_rubrics_with_v2(folder, "relevance", lambda text: text.replace(
        "{% block system %}", "{% block system %}{{ no_such_value }}", 1))
