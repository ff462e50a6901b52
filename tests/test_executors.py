"""Worker processes, shared studies and abandoned trials (SQLite; PostgreSQL in test_postgres.py)."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from archscout.errors import ArchscoutError, StudyError
from archscout.problem import Objective, Problem
from archscout.strategies import make_strategy
from archscout.study import Storage, Study
from archscout.study.executors import ProcessExecutor
from archscout.study.fidelity import CurveStopper
from archscout.study.study import PendingTrial
from archscout.study.liveness import is_abandoned, process_alive, process_identity
from archscout.trial import TrialState
from slow_evaluators import SleepyEvaluator, run_sharing_processes, small_space


def _problem() -> Problem:
    return Problem(small_space(), [Objective("acc")])


def _open(url: str, name: str = "s", strategy: str = "random", ev: Any = None) -> Study:
    p = _problem()
    return Study.open(Storage(url), name, p, lambda: make_strategy(strategy, p, 0), ev or SleepyEvaluator(),
                      {"strategy": strategy, "seed": 0})


def _rows(db: Path) -> list[tuple[int, str, str, str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT number, arch_key, state, error FROM trials ORDER BY number").fetchall()
    conn.close()
    return rows


def test_process_workers_finish_the_budget_with_the_same_results_as_in_process(tmp_path: Path) -> None:
    study = _open(f"sqlite:///{tmp_path}/a.db", ev=SleepyEvaluator(delay_s=0.01))
    study.optimize(24, executor=ProcessExecutor(2))
    rows = _rows(tmp_path / "a.db")
    assert [r[0] for r in rows] == list(range(24))
    assert len({r[1] for r in rows}) == 24 and {r[2] for r in rows} == {"complete"}
    here = SleepyEvaluator()
    for t in study.trials.values():
        assert t.metrics == here.evaluate(t.arch)


def test_failures_crashes_and_hangs_stay_contained(tmp_path: Path) -> None:
    ev = SleepyEvaluator(raises=True, crash=(5, 6), hang=(8,))
    p = _problem()
    study = Study(p, make_strategy("random", p, 0), ev)
    study.max_retries = 1
    archs = [p.space.make({"op": op, "width": w}) for op, w in
             [("attn", 14), ("conv", 5), ("pool", 8), ("conv", 9), ("mlp", 6), ("pool", 2)]]
    for a in archs:  # evaluate exactly these (ask would draw random ones)
        study.strategy.mark_pending(a)
    for i, a in enumerate(archs):
        study._running[i] = PendingTrial(i, a, time.time())
    study._next_number = len(archs)
    t0 = time.time()
    study.optimize(6, executor=ProcessExecutor(2, trial_timeout_s=2.0))
    assert time.time() - t0 < 30
    by_width = {t.arch["width"]: t for t in study.trials.values()}
    assert by_width[14].state is TrialState.FAILED and "diverged at width 14" in by_width[14].error
    assert by_width[5].state is TrialState.FAILED and "worker process died (exit code 3)" in by_width[5].error
    assert "(2 times)" in by_width[5].error  # run again once (max_retries=1), then given up
    assert by_width[8].state is TrialState.FAILED and "timed out after 2 s" in by_width[8].error
    assert by_width[9].state is TrialState.COMPLETE and by_width[2].state is TrialState.COMPLETE


def test_executor_option_errors() -> None:
    with pytest.raises(ArchscoutError):
        ProcessExecutor(0)
    with pytest.raises(ArchscoutError):
        ProcessExecutor(2, trial_timeout_s=0)
    p = _problem()
    study = Study(p, make_strategy("random", p, 0), SleepyEvaluator())
    with pytest.raises(StudyError, match="driver process"):
        study.optimize(3, executor=ProcessExecutor(2), stopper=CurveStopper(3))
    unpicklable = SleepyEvaluator()
    unpicklable.hook = lambda: None  # type: ignore[attr-defined]
    study = Study(p, make_strategy("random", p, 0), unpicklable)
    with pytest.raises(ArchscoutError, match="cannot be sent to worker processes"):
        study.optimize(3, executor=ProcessExecutor(2, start_method="spawn"))


def test_processes_sharing_one_sqlite_study_split_the_budget_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    assert run_sharing_processes(url, 120, 4) == [0, 0, 0, 0]
    rows = _rows(tmp_path / "shared.db")
    assert [r[0] for r in rows] == list(range(120))
    assert len({r[1] for r in rows}) == 120
    assert {r[2] for r in rows} == {"complete"}


def test_trials_of_a_dead_driver_are_taken_over_and_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/d.db"
    study = _open(url)
    asked = study.ask(3)
    dead = subprocess.run([sys.executable, "-c", "from archscout.study.liveness import process_identity as p; "
                           "print(p())"], capture_output=True, text=True, check=True).stdout.strip()
    assert process_alive(dead) is False and process_alive(process_identity()) is True
    remote = "elsewhere:123:456"
    with sqlite3.connect(tmp_path / "d.db") as conn:  # trial 0: dead local driver; 1: silent remote; 2: live remote
        conn.execute("UPDATE trials SET owner=? WHERE number=0", (dead,))
        conn.execute("UPDATE trials SET owner=?, heartbeat_at=? WHERE number=1", (remote, time.time() - 3600))
        conn.execute("UPDATE trials SET owner=?, heartbeat_at=? WHERE number=2", (remote, time.time()))
    conn.close()
    study.storage.dispose()
    again = _open(url)
    assert sorted(again._running) == [0, 1] and list(again._others) == [2]
    with sqlite3.connect(tmp_path / "d.db") as conn:
        assert conn.execute("SELECT number, retries FROM trials ORDER BY number").fetchall() == [(0, 1), (1, 1), (2, 0)]
    conn.close()
    # the live remote driver finishes its trial while we work: we wait for it instead of overshooting
    again.optimize(2)
    assert sorted(again.trials) == [0, 1]
    assert len(asked) == 3


def test_abandoned_rule() -> None:
    class Row:
        def __init__(self, owner: str | None, beat: float | None) -> None:
            self.owner, self.heartbeat_at = owner, beat

    now = time.time()
    assert is_abandoned(Row(None, None))
    assert not is_abandoned(Row(process_identity(), None))
    assert is_abandoned(Row("far:1:1", now - 120), now, stale_after_s=60)
    assert not is_abandoned(Row("far:1:1", now - 5), now, stale_after_s=60)
    assert is_abandoned(Row("junk", now))


def test_cli_workers_and_two_cli_processes_sharing_a_study(tmp_path: Path) -> None:
    from conftest import cli_env
    from test_cli import assert_one_line_error

    args = [sys.executable, "-m", "archscout", "search", "--strategy", "random", "--budget", "40", "--no-progress",
            "--storage", "sqlite:///s.db", "--study", "together", "--workers", "2"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = _rows(tmp_path / "s.db")
    assert [r[0] for r in rows] == list(range(40)) and len({r[1] for r in rows}) == 40
    assert {r[2] for r in rows} == {"complete"}
    bad = subprocess.run([sys.executable, "-m", "archscout", "search", "--trial-timeout", "0", "--workers", "2",
                          "--storage", "sqlite:///t.db"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert_one_line_error(bad, "--trial-timeout")
    assert not (tmp_path / "t.db").exists()
