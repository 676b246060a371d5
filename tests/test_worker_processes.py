"""`evaluator worker --processes N` supervises its children the way dramatiq's CLI does: a child
that dies while the parent is running stops the rest, and the parent exits with that child's
code (never 0); a signal to the parent stops every child and the parent exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from evaluator.worker.supervisor import supervise

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # port 1: connection refused at once


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def _sleeper() -> subprocess.Popen:
    return _python("import time; time.sleep(60)")


def test_every_child_failing_makes_the_parent_fail():
    env = {**os.environ, "EVALUATOR_REDIS_URL": UNREACHABLE_REDIS}
    done = subprocess.run([sys.executable, "-m", "evaluator", "worker", "--processes", "2", "--no-preflight"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr  # the children's code: Redis unreachable
    assert "cannot reach Redis" in done.stderr


def test_one_dead_child_stops_the_others_and_the_parent_exits_with_its_code():
    survivor = _sleeper()
    children = [survivor, _python("import sys; sys.exit(3)")]
    assert supervise(children, threading.Event(), poll_s=0.05) == 3
    assert survivor.poll() is not None  # stopped, not left running


def test_a_child_that_exits_zero_on_its_own_still_fails_the_parent():
    survivor = _sleeper()
    assert supervise([survivor, _python("pass")], threading.Event(), poll_s=0.05) != 0
    assert survivor.poll() is not None


def test_a_child_killed_by_a_signal_fails_the_parent():
    victim, survivor = _sleeper(), _sleeper()
    threading.Timer(0.2, victim.send_signal, (signal.SIGKILL,)).start()
    assert supervise([victim, survivor], threading.Event(), poll_s=0.05) == 1  # dramatiq's RET_KILLED
    assert survivor.poll() is not None


def _stoppable(exit_code: int) -> subprocess.Popen:
    """A child that exits with exit_code on SIGTERM; returns once its handler is installed."""
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, sys, time\n"
                              f"signal.signal(signal.SIGTERM, lambda *_: sys.exit({exit_code}))\n"
                              "print('ready', flush=True)\n"
                              "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def test_a_stop_request_stops_every_child_and_exits_zero():
    children = [_stoppable(0), _stoppable(0)]
    stop = threading.Event()
    stop.set()  # as SIGTERM to the parent does
    assert supervise(children, stop, poll_s=0.05) == 0
    assert [child.poll() for child in children] == [0, 0]


def test_a_child_failing_while_stopping_makes_the_exit_code_non_zero():
    stop = threading.Event()
    stop.set()
    assert supervise([_stoppable(4), _stoppable(0)], stop, poll_s=0.05) == 4
