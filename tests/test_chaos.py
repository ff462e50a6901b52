"""Chaos: SIGKILL workers and the driver at random during a 200-trial study with process workers.

Run alone with ``python -m pytest -k chaos``. The driver is restarted with the same
command after each kill; the study must end with 200 complete, distinct trials and none
left running.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DRIVER = """
import sys
from archscout.problem import Objective, Problem
from archscout.strategies import make_strategy
from archscout.study import Storage, Study
from archscout.study.executors import ProcessExecutor
from slow_evaluators import SleepyEvaluator, small_space

problem = Problem(small_space(), [Objective("acc")])
study = Study.open(Storage(sys.argv[1]), "chaos", problem, lambda: make_strategy("evolution", problem, 0),
                   SleepyEvaluator(delay_s=0.1), {"strategy": "evolution", "seed": 0})
study.optimize(200, executor=ProcessExecutor(2))
"""
BUDGET = 200
KILLS = 20


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds worker processes through /proc (Linux)")
def test_chaos_random_sigkills_of_workers_and_driver(tmp_path: Path) -> None:
    db = tmp_path / "chaos.db"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    rng = random.Random(7)
    kills = {"driver": 0, "worker": 0}
    restarts = 0
    deadline = time.time() + 600
    driver = subprocess.Popen([sys.executable, str(script), f"sqlite:///{db}"], env=env)
    try:
        while kills["driver"] + kills["worker"] < KILLS and time.time() < deadline:
            time.sleep(rng.uniform(0.3, 0.8))
            if driver.poll() is not None:  # finished (or died) before all kills: start it again
                if driver.returncode == 0:
                    break
                driver = subprocess.Popen([sys.executable, str(script), f"sqlite:///{db}"], env=env)
                restarts += 1
                continue
            if rng.random() < 0.5:
                workers = _children(driver.pid)
                if workers:  # none yet while a restarted driver is still starting up
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    kills["worker"] += 1
            else:
                driver.send_signal(signal.SIGKILL)
                driver.wait()
                kills["driver"] += 1
                driver = subprocess.Popen([sys.executable, str(script), f"sqlite:///{db}"], env=env)
                restarts += 1
        # let the last driver finish; restart it if it was killed at the very end
        while driver.wait(timeout=max(1, deadline - time.time())) != 0:
            driver = subprocess.Popen([sys.executable, str(script), f"sqlite:///{db}"], env=env)
            restarts += 1
    finally:
        if driver.poll() is None:
            driver.kill()
    assert kills["driver"] + kills["worker"] == KILLS, kills
    assert kills["driver"] >= 3 and kills["worker"] >= 3, kills
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT number, arch_key, state, retries FROM trials ORDER BY number").fetchall()
    conn.close()
    assert [r[0] for r in rows] == list(range(BUDGET))
    assert len({r[1] for r in rows}) == BUDGET
    assert {r[2] for r in rows} == {"complete"}, sorted({r[2] for r in rows})
    print(f"chaos: {kills} kills, {restarts} driver starts, {sum(r[3] for r in rows)} trials re-run after a driver died")
