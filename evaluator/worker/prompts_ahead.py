"""Prompts rendered ahead of the judge, by the process that hands work to a judging process.

Rendering a rubric's prompt costs about a third of judging a trace (the sandboxed Jinja render,
fitting the trace text, the prompt hash), and a judging process of its own is what bounds a big
embedded run. The process handing it work has CPU to spare, so it renders there: each work item
carries the prompts (or the render errors) of the rubrics that will be rendered for it, by
rubric content hash, and the pipeline takes them instead of rendering again (`prompt_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from evaluator.core.errors import EvaluatorError, RubricError
from evaluator.core.work import WorkItem
from evaluator.rubrics import RenderedPrompt, Rubric, missing_inputs, render


def with_prompts(item: WorkItem, rubrics: Sequence[Rubric]) -> WorkItem:
    """`item` with the prompt of each rubric the pipeline will render for it: templated,
    sampled for that rubric and with the inputs it requires (the others are never rendered)."""
    prompts: dict[str, RenderedPrompt | str] = {}
    for rubric in rubrics:
        if not rubric.templated or missing_inputs(rubric, item.trace):
            continue
        if not item.decision.for_rubric(rubric.criterion, item.trace.trace_id).sampled:
            continue
        try:
            prompts[rubric.content_hash] = render(rubric, item.trace)
        except EvaluatorError as exc:  # the pipeline stores the error with its message
            prompts[rubric.content_hash] = str(exc)
    return replace(item, prompts=prompts)


def prompt_for(item: WorkItem, rubric: Rubric) -> RenderedPrompt:
    """The prompt rendered ahead for this rubric, else rendered now; raises the render's error
    (an EvaluatorError, with the same message) either way."""
    ready = item.prompts.get(rubric.content_hash) if item.prompts else None
    if ready is None:
        return render(rubric, item.trace)
    if isinstance(ready, RenderedPrompt):
        return ready
    raise RubricError(str(ready))
