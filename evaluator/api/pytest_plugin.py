"""The pytest plugin (entry point `pytest11`): assert quality inside your own test suite.

    def test_answer(evaluator):
        answer = my_app("How far is the Moon?")
        evaluator.assert_passes(answer, rubric="relevance", input="How far is the Moon?")

`assert_passes` fails the test with the judge's label, score and reasoning; each check adds
`evaluator.<rubric>.label` and `.score` to the test's JUnit properties. Options:
`--evaluator-judge NAME` (default $EVALUATOR_JUDGE, else offline) and `--evaluator-db FILE`,
which stores the session's checks as a replay run (item = test id) that `evaluator gate` can
compare with another session's run.

Loaded in every pytest session of an environment where Evaluator is installed, so it imports
nothing of Evaluator until a test asks for the fixture, and does nothing else without it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from evaluator.api.evaluate import Evaluated
    from evaluator.core.records import Evaluation
    from evaluator.judges.base import JudgeClient

_STATE = pytest.StashKey["_Session"]()


@dataclass
class _Check:
    item_id: str
    payload: dict[str, Any]
    result: Evaluated


@dataclass
class _Session:
    judge_name: str | None
    db: str | None
    run_id: str = field(default_factory=lambda: time.strftime("pytest-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
    judge: JudgeClient | None = None
    checks: list[_Check] = field(default_factory=list)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("evaluator", "Evaluator quality checks")
    group.addoption("--evaluator-judge", default=None, metavar="NAME",
                    help="Judge config for evaluator.assert_passes [default: $EVALUATOR_JUDGE, else offline].")
    group.addoption("--evaluator-db", default=None, metavar="FILE",
                    help="Store the session's checks in this DuckDB file as a replay run, for `evaluator gate`.")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE] = _Session(config.getoption("evaluator_judge"), config.getoption("evaluator_db"))


class EvaluatorCheck:
    """What the `evaluator` fixture gives a test."""

    def __init__(self, session: _Session, node: pytest.Item):
        self._session = session
        self._node = node

    def assert_passes(self, output: str, rubric: str, **inputs: Any) -> Evaluation:
        """Score `output` with `rubric` (NAME or NAME@vN); `inputs`: input, context, expected,
        system, metadata. Fails the test unless the evaluation is scored and passes."""
        from evaluator.api.evaluate import evaluate
        from evaluator.core.settings import Settings  # lazy: nothing of ours loads until a test checks

        session = self._session
        settings = Settings.from_env()
        if session.judge is None:
            # lazy: nothing of ours loads until a test checks (a pytest plugin in every session)
            from evaluator.api.evaluate import judge_for

            session.judge = judge_for(session.judge_name or settings.judge, settings)
        item_id = self._item_id()
        payload = {"output": output, **inputs}
        if session.db is not None:  # the trace id a replay run gives its items
            # lazy: nothing of ours loads until a test checks (a pytest plugin in every session)
            from evaluator.api.pytest_run import trace_id_for

            payload["id"] = trace_id_for(session.run_id, item_id)
        result = evaluate(payload, rubrics=[rubric], judge=session.judge,
                          run_id=session.run_id if session.db is not None else None)
        session.checks.append(_Check(item_id, payload, result))
        [evaluation] = result.evaluations
        name = f"evaluator.{evaluation.rubric}"
        self._node.user_properties.extend([(f"{name}.label", evaluation.label or evaluation.status),
                                           (f"{name}.score", evaluation.score)])
        if not (evaluation.status == "scored" and evaluation.passed):
            pytest.fail(_failure(evaluation), pytrace=False)
        return evaluation

    def _item_id(self) -> str:
        taken = sum(check.item_id.startswith(self._node.nodeid) for check in self._session.checks)
        return self._node.nodeid if not taken else f"{self._node.nodeid}#{taken + 1}"


def _failure(evaluation: Evaluation) -> str:
    ref = f"{evaluation.rubric}@v{evaluation.rubric_version}"
    if evaluation.status != "scored":
        return f"{ref} by {evaluation.judge}: {evaluation.status}: {evaluation.reason}"
    score = "" if evaluation.score is None else f", score {evaluation.score:g}"
    return (f"{ref} by {evaluation.judge}: {evaluation.label}{score} (does not pass)\n"
            f"reasoning: {evaluation.reasoning}")


@pytest.fixture
def evaluator(request: pytest.FixtureRequest) -> EvaluatorCheck:
    """`evaluator.assert_passes(output, rubric=..., **inputs)`: see evaluator.api.pytest_plugin."""
    return EvaluatorCheck(request.config.stash[_STATE], request.node)


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or state.db is None or not state.checks:
        return
    from evaluator.api.pytest_run import store_run  # lazy: DuckDB only with --evaluator-db

    store_run(state.db, state.run_id, [(c.item_id, c.payload, c.result) for c in state.checks],
              str(session.config.rootpath))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.db is not None and state.checks:
        terminalreporter.write_line(f"evaluator: {len(state.checks)} checks stored as replay run "
                                    f"{state.run_id} in {state.db} (compare: evaluator gate --db "
                                    f"{state.db} --run {state.run_id} --baseline OTHER_RUN)")
