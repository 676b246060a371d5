"""What each label of a rubric means, in the rubric author's words, for people who label by hand.

The definitions are the template's bullets `- **label**: what it means`, continued on the lines
indented under them (the shape every bundled rubric's "## Labels" section has). They are text to
show, never rendered: a label without such a bullet simply has no definition.
"""

from __future__ import annotations

import re

from evaluator.rubrics.model import Rubric

_BULLET = re.compile(r"^- \*\*(?P<label>[^*]+)\*\*:\s*(?P<text>.*)$")


def label_definitions(rubric: Rubric) -> dict[str, str]:
    """{label: definition} for the rubric's labels that its template defines, in menu order (the
    first bullet of a label wins)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in rubric.template_source.splitlines():
        bullet = _BULLET.match(line)
        if bullet and bullet["label"] in rubric.labels and bullet["label"] not in found:
            current = found[bullet["label"]] = [bullet["text"]]
        elif current is not None and line.startswith("  ") and line.strip():
            current.append(line)
        else:
            current = None
    return {label: " ".join(" ".join(found[label]).split()) for label in rubric.labels
            if label in found}
