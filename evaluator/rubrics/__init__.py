"""Versioned rubric files: loading, the lock of published hashes, sandboxed rendering.

A rubric file is `rubrics/<criterion>/v<N>.jinja`: YAML front matter between two `---` lines,
then a Jinja template made of two blocks:

- `{% block system %}`: the judge's static instructions. It sees only `criterion` and `labels`,
  so it is rendered once per version and the system message is the same for every trace
  (provider prompt caching). The data-handling and reply-format instructions are appended by code.
- `{% block user %}`: presents one trace, data blocks last.

Trace text is data, not instructions: every trace-derived string is `neutralize`d before it
reaches the template (look-alike characters included), and `data_block` wraps it between
`<<<BEGIN NAME>>>` / `<<<END NAME>>>` markers that neutralized text cannot reproduce. Text too
long for the prompt is cut to fit, with a mark (`fit`), and the note naming the cut fields is
ours. Templates run under a step and size budget (`limits`, `budget`, `filters`).

May import: core.
"""


from evaluator.rubrics.files import RubricRegistry, load_rubric, parse_ref
from evaluator.rubrics.lock import update_lock, verify_lock
from evaluator.rubrics.model import LOCK_FILE_NAME, MAX_PROMPT_CHARS, RenderedPrompt, Rubric
from evaluator.rubrics.neutralize import data_block, neutralize
from evaluator.rubrics.render import compile_templates, missing_inputs, render

__all__ = [
    "LOCK_FILE_NAME", "MAX_PROMPT_CHARS", "RenderedPrompt", "Rubric", "RubricRegistry",
    "compile_templates", "data_block", "load_rubric", "missing_inputs", "neutralize", "parse_ref", "render",
    "update_lock", "verify_lock",
]
