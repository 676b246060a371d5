"""Pairwise judging for the gate: both orders, a tie when they disagree, a sign test that decides.

The judge is the real LLM judge over HTTP against the local server, which answers the label an
`EXPECT_LABEL=` marker names (the last one in the prompt): an output carrying a marker makes
the judge's answer depend on which output is shown where, as a position-biased judge's does.
"""

from __future__ import annotations

import json

import pytest
from scipy.stats import binomtest

from evaluator.cli import main
from evaluator.core.settings import Settings
from evaluator.regression.pairwise import sign_test
from evaluator.regression.replay import start_replay
from evaluator.store import Store
from tests.support.judging import KEY, KEY_ENV, judge_config, write_judge
from tests.support.openai_server import OpenAIServer


def baseline_target(question: str) -> str:
    return f"A full answer to {question}. EXPECT_LABEL=b_better" if "better" in question else "Same."


def candidate_target(question: str) -> str:
    if "better" in question:  # shown second, either output wins: the baseline, in both orders
        return f"A worse answer to {question}. EXPECT_LABEL=a_better"
    if "biased" in question:  # the same label in both orders: the orders disagree
        return "Either. EXPECT_LABEL=a_better"
    return "Same. EXPECT_LABEL=tie"  # a tie the two orders agree on


def dataset(path) -> None:
    questions = [f"question {n} better" for n in range(8)] + ["question 8 biased", "question 9 same"]
    path.write_text("".join(json.dumps({"id": f"q{n}", "input": q, "label_source": "human"}) + "\n"
                            for n, q in enumerate(questions)))


def test_a_run_losing_in_both_orders_is_a_pairwise_regression(tmp_path, monkeypatch, capsys):
    db, items = tmp_path / "gate.duckdb", tmp_path / "items.jsonl"
    dataset(items)
    settings = Settings.from_env()
    runs = [start_replay(items, db, settings, ["refusal"], "offline", target=f"tests.test_pairwise:{target}",
                         run_id=f"run-{target}").run_id
            for target in ("baseline_target", "candidate_target")]
    with OpenAIServer() as server:
        write_judge(tmp_path / "judges", judge_config(server, "pair-judge"))
        monkeypatch.setenv(KEY_ENV, KEY)
        monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(tmp_path / "judges"))
        monkeypatch.setattr("sys.argv", ["evaluator", "gate", "--db", str(db), "--run", runs[1],
                                         "--baseline", runs[0], "--pairwise", "preference",
                                         "--judge", "pair-judge", "--json"])
        with pytest.raises(SystemExit) as exit_:
            main()
        requests = len(server.stats.requests)
    result = json.loads(capsys.readouterr().out)
    assert exit_.value.code == 1
    assert (result["wins"], result["losses"], result["ties"], result["unscored"]) == (0, 8, 2, 0)
    assert result["sign_test_p"] == pytest.approx(0.5 ** 8) and result["regression"]
    assert requests == 20  # every pair asked in both orders
    with Store(db, read_only=True) as store:
        stored = {e.trace_id.split("/")[-1]: e for e in store.evaluations(runs[1], rubric="preference")}
        calls = store.conn.execute("SELECT count(*) FROM judge_calls WHERE rubric = 'preference'").fetchone()
    assert stored["q0"].label == "b_better" and not stored["q0"].passed
    assert stored["q8"].label == "tie" and "the two orders disagree" in stored["q8"].reason
    assert stored["q9"].label == "tie" and stored["q9"].reason is None
    assert calls == (20,)
    # the comparisons are the run's evaluations too, yet the per-rubric gate leaves them out
    monkeypatch.setattr("sys.argv", ["evaluator", "gate", "--db", str(db), "--run", runs[1],
                                     "--baseline", runs[0], "--min-items", "1", "--json"])
    with pytest.raises(SystemExit):
        main()
    assert [r["rubric"] for r in json.loads(capsys.readouterr().out)["rubrics"]] == ["refusal"]


@pytest.mark.parametrize(("wins", "losses"), [(0, 0), (3, 3), (1, 9), (9, 1), (0, 12)])
def test_the_sign_test_is_scipys_one_sided_binomial_test(wins, losses):
    expected = None if wins + losses == 0 else binomtest(losses, wins + losses, 0.5, alternative="greater").pvalue
    assert sign_test(wins, losses) == pytest.approx(expected)


def test_a_pairwise_rubric_is_not_run_on_single_traces(tmp_path, monkeypatch, capsys):
    traces = tmp_path / "t.jsonl"
    traces.write_text(json.dumps({"trace_id": "t-1", "input": "q", "output": "a"}) + "\n")
    monkeypatch.setattr("sys.argv", ["evaluator", "run", "--traces", str(traces), "--db",
                                     str(tmp_path / "x.duckdb"), "--rubric", "preference"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "preference@v1 is a pairwise rubric" in capsys.readouterr().err
