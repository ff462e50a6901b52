"""Shared fixtures: the cached NAS-Bench-Graph evaluator, problems over it, and a CLI runner."""
from __future__ import annotations

import os

# Multi-threaded OpenBLAS is pathologically slow on small CPU quotas (a 640x640 solve in the
# "bo" strategy takes ~0.2 s instead of ~6 ms on a 2-core CI box). Results do not depend on it;
# pin BLAS to one thread here and in every CLI subprocess.
BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
for _k, _v in BLAS_ENV.items():
    os.environ.setdefault(_k, _v)
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from archscout.evaluators.nasbench_graph import NasBenchGraph
from archscout.problem import Objective, Problem, parse_constraints

CLI_TIMEOUT_S = 300
try:  # in case numpy was imported before this file (threadpoolctl comes with scikit-learn)
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def nbg() -> NasBenchGraph:
    """NAS-Bench-Graph on Cora (26,206 architectures); loaded once per session."""
    return NasBenchGraph("cora")


def nbg_problem(ev: NasBenchGraph, objectives: list[str] | None = None, constraints: list[str] | None = None) -> Problem:
    """A Problem over NAS-Bench-Graph wired the way the CLI wires it (budgets checked before evaluation)."""
    return Problem(ev.space, [Objective.parse(o) for o in (objectives or ["valid_perf:max"])],
                   parse_constraints(constraints or []), cheap_metrics=ev.cheap_metrics, admissible=ev.contains)


@pytest.fixture(scope="session")
def make_nbg_problem(nbg: NasBenchGraph) -> Callable[..., Problem]:
    def make(objectives: list[str] | None = None, constraints: list[str] | None = None) -> Problem:
        return nbg_problem(nbg, objectives, constraints)

    return make


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: os.environ.get(k, v) for k, v in BLAS_ENV.items()})
    env["MPLBACKEND"] = "Agg"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONWARNINGS", None)
    return env


def run_archscout(*args: str, cwd: str | Path, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``python -m archscout ARGS`` in ``cwd``; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "archscout", *map(str, args)], cwd=str(cwd), env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli("search", "--budget", "5", ...)`` -> CompletedProcess (text), cwd = tmp_path by default."""

    def run(*args: str, cwd: str | Path | None = None, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        return run_archscout(*args, cwd=cwd or tmp_path, timeout=timeout)

    return run
