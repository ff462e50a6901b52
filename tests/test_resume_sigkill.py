"""The resume target: a search killed with SIGKILL at arbitrary points and rerun with the same
command ends exactly like an uninterrupted run of the same seed."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_env, run_archscout

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")]

POLL_S = 0.002
RUN_TIMEOUT_S = 240


def search_args(budget: int, batch_size: int = 1) -> list[str]:
    return ["search", "--budget", str(budget), "--strategy", "evolution", "--seed", "3", "--storage", "sqlite:///r.db",
            "--study", "k", "--no-progress", "--batch-size", str(batch_size)]


def start(cwd: Path, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archscout", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def n_complete(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'complete'").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def run_and_kill(cwd: Path, args: list[str], at_least: int) -> int | None:
    """Start the command and SIGKILL it once ``at_least`` trials are complete. Returns the
    count seen at the kill, or None if the process finished before the threshold was seen."""
    db = cwd / "r.db"
    proc = start(cwd, args)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while proc.poll() is None:
            seen = n_complete(db)
            if seen >= at_least:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return seen
            assert time.monotonic() < deadline, "search did not progress"
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return None


def kill_partway(cwd: Path, args: list[str], at_least: int) -> int:
    """Kill once past ``at_least`` complete trials; if the machine is so fast that the run
    finished first, start over in a fresh database and kill at the first trial seen."""
    seen = run_and_kill(cwd, args, at_least)
    if seen is not None:
        return seen
    for p in cwd.glob("r.db*"):
        p.unlink()
    seen = run_and_kill(cwd, args, 1)
    if seen is None:
        pytest.skip("the search finishes before it can be killed on this machine")
    return seen


def rows(db: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as conn:
        out = conn.execute("SELECT number, arch_key, state FROM trials ORDER BY number").fetchall()
    conn.close()
    return out


def report(cwd: Path) -> dict:
    proc = run_archscout("report", "--storage", "sqlite:///r.db", "--study", "k", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("batch_size,budget,kill_points", [(1, 300, (60, 150, 240)), (4, 80, (25, 50))],
                         ids=["sequential", "batch4"])
def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path: Path, batch_size: int, budget: int,
                                                      kill_points: tuple[int, ...]) -> None:
    args = search_args(budget, batch_size)
    ref_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    ref_dir.mkdir()
    killed_dir.mkdir()
    reference = start(ref_dir, args)  # uninterrupted, in parallel with the killed runs

    seen = []
    for point in kill_points:
        count = kill_partway(killed_dir, args, point)
        seen.append(count)
        assert count < budget
        # Whatever the moment of death, the database is consistent: numbers contiguous, keys unique.
        partial = rows(killed_dir / "r.db")
        assert [r[0] for r in partial] == list(range(len(partial)))
        assert len({r[1] for r in partial}) == len(partial)
        assert sum(r[2] == "running" for r in partial) <= batch_size
    assert seen == sorted(seen)

    final = run_archscout(*args, cwd=killed_dir, timeout=RUN_TIMEOUT_S)
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr

    assert reference.wait(timeout=RUN_TIMEOUT_S) == 0, reference.stderr.read() if reference.stderr else ""

    got = rows(killed_dir / "r.db")
    assert len(got) == budget
    assert [r[0] for r in got] == list(range(budget))
    assert len({r[1] for r in got}) == budget
    assert {r[2] for r in got} == {"complete"}

    expected = rows(ref_dir / "r.db")
    assert [r[1] for r in got] == [r[1] for r in expected], "resumed run diverged from the uninterrupted run"

    got_report, expected_report = report(killed_dir), report(ref_dir)
    assert got_report["n_complete"] == budget and got_report["n_running"] == 0
    assert got_report["best"] == expected_report["best"]
    assert got_report["pareto"] == expected_report["pareto"]
