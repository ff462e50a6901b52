"""The Ray executor: studies on Ray actors, failures, dead workers, timeouts, and the CLI.

One local Ray is started for the whole module (``ray_cluster``); executors find it running,
use it and leave it running. The CLI test starts its own Ray in its subprocess.
"""
from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'archscout[ray]')")

from archscout.errors import ArchscoutError  # noqa: E402
from archscout.evaluators.base import Evaluator  # noqa: E402
from archscout.problem import Objective, Problem  # noqa: E402
from archscout.space import Architecture, Choice, IntRange, SearchSpace  # noqa: E402
from archscout.strategies import make_strategy  # noqa: E402
from archscout.study import Storage, Study, TrialState  # noqa: E402
from archscout.study.ray_executor import RayExecutor, ray_init_options  # noqa: E402

pytestmark = pytest.mark.ray

OPS = ["conv", "pool", "attn", "mlp"]


class ProbeEvaluator(Evaluator):
    """``acc`` is a fixed function of the architecture; misbehaves on purpose for chosen ones.

    ``raise_op``: that op raises; ``crash_width``: the worker process kills itself (what the
    OOM killer or a segfault looks like); ``hang_width``: sleeps for an hour. Module-level,
    so the Ray workers can unpickle it (they get the driver's sys.path, which holds tests/).
    """

    name = "probe"
    metric_names = ("acc", "cost")

    def __init__(self, raise_op: str | None = None, crash_width: int | None = None,
                 hang_width: int | None = None) -> None:
        self._space = SearchSpace([Choice("op", OPS), IntRange("width", 1, 3)])  # 12 architectures
        self.raise_op, self.crash_width, self.hang_width = raise_op, crash_width, hang_width

    @property
    def space(self) -> SearchSpace:
        return self._space

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        op, width = arch["op"], arch["width"]
        if width == self.crash_width and op == "conv":
            os.kill(os.getpid(), 9)
        if width == self.hang_width and op == "pool":
            time.sleep(3600)
        if op == self.raise_op:
            raise RuntimeError(f"diverged on {op}")
        return {"acc": math.sin(width) + OPS.index(op) / 10, "cost": float(width), "pid": float(os.getpid())}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local 2-CPU Ray for this module (started once: ~3 s), shut down after its last test."""
    if ray.is_initialized():
        yield
        return
    ray.init(**ray_init_options(2))
    try:
        yield
    finally:
        ray.shutdown()


def _study(ev: ProbeEvaluator, url: str | None = None) -> Study:
    p = Problem(ev.space, [Objective("acc")])
    if url is None:
        return Study(p, make_strategy("random", p, 0), ev)
    return Study.open(Storage(url), "ray", p, lambda: make_strategy("random", p, 0), ev,
                      {"strategy": "random", "seed": 0})


def test_constructor_starts_nothing_and_checks_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ray.init called by the constructor")

    monkeypatch.setattr(ray, "init", boom)
    ex = RayExecutor(3, address="auto", trial_timeout_s=5)
    assert (ex.workers, ex.address, ex.trial_timeout_s, ex.free(), ex.in_flight()) == (3, "auto", 5, 0, [])
    ex.shutdown()  # never started: nothing to do
    with pytest.raises(ArchscoutError, match="workers must be >= 1"):
        RayExecutor(0)
    with pytest.raises(ArchscoutError, match="timeout must be positive"):
        RayExecutor(2, trial_timeout_s=0)


def test_missing_ray_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ArchscoutError, match=r"needs Ray: pip install 'archscout\[ray\]'"):
        RayExecutor(2).start(ProbeEvaluator())
    code = "import sys; sys.modules['ray'] = None; import archscout.study.ray_executor"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_an_unreachable_cluster_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh CLI process
    t0 = time.monotonic()
    with pytest.raises(ArchscoutError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        RayExecutor(2, address="127.0.0.1:1").start(ProbeEvaluator())
    assert time.monotonic() - t0 < 10  # ray.init alone would retry for many minutes


def test_study_on_two_actors_reaches_its_budget_with_distinct_trials(ray_cluster: None, tmp_path: Path) -> None:
    ev = ProbeEvaluator()
    study = _study(ev, f"sqlite:///{tmp_path}/r.db")
    ex = RayExecutor(2)
    study.optimize(10, executor=ex)
    assert ray.is_initialized()  # the module's Ray was used, and left running
    trials = sorted(study.trials.values(), key=lambda t: t.number)
    assert [t.number for t in trials] == list(range(10))
    assert len({t.arch.key for t in trials}) == 10
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    for t in trials:
        expected = ev.evaluate(t.arch)
        assert t.metrics["acc"] == expected["acc"] and t.metrics["cost"] == expected["cost"]
    pids = {t.metrics["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids  # two actor processes, not this one
    with sqlite3.connect(tmp_path / "r.db") as conn:
        states = conn.execute("SELECT state, count(*) FROM trials GROUP BY state").fetchall()
    conn.close()
    assert states == [("complete", 10)]


def test_evaluation_errors_are_recorded_and_the_study_continues(ray_cluster: None) -> None:
    study = _study(ProbeEvaluator(raise_op="attn"))
    study.optimize(12, executor=RayExecutor(2))
    assert len(study.trials) == 12
    failed = [t for t in study.trials.values() if t.state is TrialState.FAILED]
    assert sorted(t.arch["width"] for t in failed) == [1, 2, 3]
    assert all(t.arch["op"] == "attn" and t.error == "RuntimeError: diverged on attn" for t in failed)
    assert sum(t.state is TrialState.COMPLETE for t in study.trials.values()) == 9


def test_a_trial_that_kills_its_worker_is_lost_retried_then_failed(ray_cluster: None) -> None:
    study = _study(ProbeEvaluator(crash_width=2))
    study.max_retries = 1  # run again once, then give up
    t0 = time.monotonic()
    study.optimize(12, executor=RayExecutor(2))
    assert time.monotonic() - t0 < 40
    assert len(study.trials) == 12  # every architecture of the space, the killer included
    (bad,) = [t for t in study.trials.values() if t.state is not TrialState.COMPLETE]
    assert (bad.arch["op"], bad.arch["width"], bad.state) == ("conv", 2, TrialState.FAILED)
    assert bad.error.startswith("ray worker died (") and bad.error.endswith("(2 times)")


def test_a_trial_past_the_timeout_is_stopped_and_its_actor_replaced(ray_cluster: None) -> None:
    study = _study(ProbeEvaluator(hang_width=3))
    t0 = time.monotonic()
    study.optimize(12, executor=RayExecutor(2, trial_timeout_s=2.0))
    assert time.monotonic() - t0 < 30
    assert len(study.trials) == 12
    (bad,) = [t for t in study.trials.values() if t.state is not TrialState.COMPLETE]
    assert (bad.arch["op"], bad.arch["width"]) == ("pool", 3)
    assert bad.state is TrialState.FAILED and bad.error == "timed out after 2 s"


def broken_factory() -> Evaluator:
    """An evaluator factory that fails in every worker (a missing dataset, say)."""
    raise FileNotFoundError("no dataset at /nowhere")


def test_an_evaluator_that_cannot_be_built_fails_its_trials_with_the_reason(ray_cluster: None) -> None:
    study = _study(ProbeEvaluator())
    study.max_retries = 0
    study.optimize(2, executor=RayExecutor(2), evaluator_factory=broken_factory)
    assert len(study.trials) == 2
    for t in study.trials.values():
        assert t.state is TrialState.FAILED
        assert t.error.startswith("ray worker died (its evaluator could not be built: FileNotFoundError: no dataset")


def test_cli_search_on_ray(tmp_path: Path) -> None:
    from conftest import run_archscout

    proc = run_archscout("search", "--executor", "ray", "--workers", "2", "--budget", "6",
                         "--storage", "sqlite:///x.db", "--no-progress", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    with sqlite3.connect(tmp_path / "x.db") as conn:
        rows = conn.execute("SELECT number, arch_key, state FROM trials ORDER BY number").fetchall()
    conn.close()
    assert [r[0] for r in rows] == list(range(6))
    assert len({r[1] for r in rows}) == 6 and {r[2] for r in rows} == {"complete"}
