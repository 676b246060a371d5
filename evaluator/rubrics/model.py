"""The Rubric and RenderedPrompt records, and the limits every rubric lives under."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_PROMPT_CHARS = 1_000_000
LOCK_FILE_NAME = "rubrics.lock"
TEMPLATED_KINDS = ("judge", "pairwise")
PAIRWISE_LABELS = ("a_better", "tie", "b_better")
"""A pairwise rubric's menu: which of two outputs (A shown first) is better, or neither."""
"""Rubric kinds written as a Jinja template (`v<N>.jinja`); code scorers are `v<N>.yaml`."""


@dataclass(frozen=True)
class Rubric:
    """One published version of a rubric: a Jinja template plus its metadata."""

    criterion: str
    version: int
    description: str
    labels: dict[str, float]
    """Allowed labels and the score (0..1, 1 = desired) each one means."""
    pass_threshold: float
    template_source: str
    content_hash: str
    """sha256 of the rubric file's bytes: the version's identity in provenance and the lock."""
    required_inputs: tuple[str, ...] = ("output",)
    """Trace fields that must be non-empty, e.g. ("output", "context") or ("output", "expected");
    else `skipped`."""
    output_format: str = "json"
    kind: str = "judge"
    """`judge`: the template is rendered and a judge picks a label; `pairwise`: the judge
    compares two outputs (a replay run's and its baseline's); any other: a code scorer of that
    name scores the item with `params`, no template, no judge (evaluator.judges.scorers)."""
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    """A code scorer's settings (they are in the file, so in `content_hash`)."""
    offline: str | None = None
    """The offline judge's heuristic for this rubric (None: the one named like the criterion)."""
    claims: bool = False
    """The verdict lists the response's claims, each supported, unsupported or contradicted
    with its evidence; the evaluation's score is then the supported share."""
    path: Path | None = field(default=None, compare=False)
    body_line: int = field(default=1, compare=False)
    """File line where `template_source` starts, so template errors cite file line numbers."""

    @property
    def templated(self) -> bool:
        """A judge reads a rendered prompt (else a code scorer reads the item itself)."""
        return self.kind in TEMPLATED_KINDS

    @property
    def ref(self) -> str:
        return f"{self.criterion}@v{self.version}"

    def score_for(self, label: str) -> float:
        return self.labels[label]

    def passes(self, score: float) -> bool:
        return score >= self.pass_threshold


@dataclass(frozen=True)
class RenderedPrompt:
    """The exact messages a judge receives; static rubric text first, trace data last."""

    messages: tuple[dict[str, str], ...]
    prompt_hash: str
    """sha256 of the canonical JSON of `messages`: the cache and provenance key."""
    truncated: bool = False
