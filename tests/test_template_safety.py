"""Rubric templates that try to escape the sandbox, or to burn CPU and memory, fail with a clear
RubricError, quickly and in little memory; the worker keeps going.

The corpus is tests/data/escape_templates/: attribute walks to __class__/__subclasses__ and
__globals__, os/subprocess/open by name, imports, includes and extends of files, unbounded and
quadratic loops, runaway and exponential recursion, and values built to be huge.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from evaluator.core.errors import RubricError
from evaluator.core.records import Trace
from evaluator.rubrics import load_rubric, render
from tests.support.figures import record

CORPUS_DIR = Path(__file__).parent / "data" / "escape_templates"
CORPUS = sorted(CORPUS_DIR.glob("*.jinja"))
FRONT_MATTER = (CORPUS_DIR / "front_matter.yaml").read_text(encoding="utf-8")
"""The rubric header each template of the corpus is put under (scripts/template_attacks.py too)."""
TRACE = Trace(trace_id="t", input="What is the refund window?", context=["Refunds: 30 days."],
              output="Refunds are accepted within 30 days. " * 300)
"""An ordinary trace with an 11,100-character answer for the templates to loop and pad over."""
CPU_SECONDS = 10.0
"""A template's render may use this much CPU time (the render's thread's own: a busy machine
or a parallel test run does not count against it)."""
HANG_S = 60.0
"""Wall-clock time after which a render that has not ended counts as hung."""
MEMORY_BYTES = 64 * 2**20
OUTCOMES: dict[str, str] = {}
# test_zz_record_figures reads what the corpus tests left in OUTCOMES: one worker runs them all,
# in order, under pytest-xdist (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("template_safety")


def _attempt(template: Path, directory: Path) -> tuple[str, float, int]:
    """Load and render one template in a watched thread: (error message, CPU seconds, peak
    bytes)."""
    rubric_file = directory / "escape" / "v1.jinja"
    rubric_file.parent.mkdir(parents=True)
    rubric_file.write_text(FRONT_MATTER + template.read_text(encoding="utf-8"), encoding="utf-8")
    outcome: dict[str, object] = {}

    def load_and_render() -> None:
        started = time.thread_time()
        try:
            outcome["prompt"] = render(load_rubric(rubric_file), TRACE)
        except RubricError as exc:
            outcome["error"] = str(exc)
        except BaseException as exc:  # anything but a RubricError is a failure of the sandbox
            outcome["crash"] = exc
        outcome["cpu_s"] = time.thread_time() - started

    tracemalloc.start()
    worker = threading.Thread(target=load_and_render, daemon=True)
    worker.start()
    worker.join(HANG_S)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert not worker.is_alive(), f"{template.name}: still running after {HANG_S:g} s"
    assert "crash" not in outcome, f"{template.name}: raised {outcome.get('crash')!r}"
    assert "prompt" not in outcome, f"{template.name}: rendered without an error"
    return str(outcome["error"]), float(outcome["cpu_s"]), peak


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("template", CORPUS, ids=[path.stem for path in CORPUS])
def test_escape_attempt_fails_with_a_clear_rubric_error(template, tmp_path):
    error, cpu_s, peak = _attempt(template, tmp_path)
    OUTCOMES[template.stem] = error
    assert error.startswith(("rubric escape@v1", str(tmp_path))), error
    assert "escape" in error and len(error) < 700, error
    assert "Traceback" not in error
    assert cpu_s < CPU_SECONDS and peak < MEMORY_BYTES, f"{cpu_s:.1f} s of CPU, {peak:,} bytes"


def test_zz_record_figures(tmp_path_factory):
    """How many templates were stopped, and by which guard. Cases not run yet in this process
    (run alone, or pytest-xdist scheduled this first) are tried here."""
    for template in CORPUS:
        if template.stem not in OUTCOMES:
            OUTCOMES[template.stem] = _attempt(template, tmp_path_factory.mktemp(template.stem))[0]
    by_guard = _by_guard(OUTCOMES.values())
    assert set(OUTCOMES) == {path.stem for path in CORPUS}
    assert by_guard["other"] == 0, "a template was stopped by no guard the figures name"
    record("template_safety", templates=len(CORPUS), failed_with_rubric_error=len(OUTCOMES),
           escaped=0, by_guard=by_guard)


def _by_guard(errors) -> dict[str, int]:
    guards = {  # the first marker found in the message names the guard that stopped it
        "sandbox: unsafe attribute or call": ("unsafe", "cannot make bytes"),
        "undefined name": ("is undefined",),
        "no loader: import/include/extends": ("no loader", "outside the blocks"),
        "size limit": ("would build", "exponent", "printf width", "format spec"),
        "integer argument cap": ("may pass",),
        "characters-handled budget": ("handled more than",),
        "step limit": ("steps",),
        "prompt length": ("renders past",),
        "recursion limit": ("RecursionError",),
    }
    counts = dict.fromkeys([*guards, "other"], 0)
    for error in errors:
        found = next((name for name, markers in guards.items()
                      if any(marker in error for marker in markers)), "other")
        counts[found] += 1
    return counts


def test_loading_a_rubric_evaluates_none_of_its_expressions(tmp_path):
    """Jinja folds constant expressions while it compiles a template; a rubric's are not folded,
    so everything they cost is paid inside the render's budget, where it is refused."""
    rubric_file = tmp_path / "escape" / "v1.jinja"
    rubric_file.parent.mkdir()
    rubric_file.write_text(FRONT_MATTER + "{% block system %}Judge.{% endblock %}{% block user %}"
                           "{{ [1]|batch(900000, 'x')|list|length }}"
                           "{{ 'ab'|center(999999)|sort|join|sort|join|length }}{% endblock %}",
                           encoding="utf-8")
    tracemalloc.start()
    rubric = load_rubric(rubric_file)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * 2**20, f"loading allocated {peak:,} bytes"
    with pytest.raises(RubricError, match="would build|handled more than"):
        render(rubric, TRACE)
