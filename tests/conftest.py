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
import uuid
from collections.abc import Callable, Iterator
from typing import Any
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


def run_error_cases(cases: dict[str, tuple[list[str], Any]], tmp_path_factory: pytest.TempPathFactory,
                    workers: int = 4) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Run every ``cases[name][0]`` argument list in its own empty directory, a few at a time
    (they are independent; running them concurrently keeps the suite fast)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case: str) -> tuple[subprocess.CompletedProcess, Path]:
        cwd = tmp_path_factory.mktemp(f"err-{case}")
        return run_archscout(*cases[case][0], cwd=cwd), cwd

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(cases, pool.map(one, cases)))


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``run_cli("search", "--budget", "5", ...)`` -> CompletedProcess (text), cwd = tmp_path by default."""

    def run(*args: str, cwd: str | Path | None = None, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        return run_archscout(*args, cwd=cwd or tmp_path, timeout=timeout)

    return run


# ---------------------------------------------------------------------------------------------
# PostgreSQL (a real server: `eval "$(bash .ci/postgres.sh)"` starts one; .ci/run does it in CI)
# ---------------------------------------------------------------------------------------------
POSTGRES_ENV = "ARCHSCOUT_TEST_POSTGRES_URL"
POSTGRES_HOWTO = ('start a throwaway server with `eval "$(bash .ci/postgres.sh)"` (it sets the variable), '
                  'or point it at postgresql+psycopg://USER@HOST:PORT/DB')


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server URL from ARCHSCOUT_TEST_POSTGRES_URL, once a ``SELECT 1`` succeeds; else the test skips."""
    import sqlalchemy as sa

    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: {POSTGRES_HOWTO}")
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # any reason the server is unusable: bad URL, no driver, nothing listening
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        pytest.skip(f"PostgreSQL server at {POSTGRES_ENV} is not reachable ({reason}); {POSTGRES_HOWTO}")
    return url


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on that server, made for this test and dropped after it."""
    import sqlalchemy as sa

    name = f"archscout_test_{uuid.uuid4().hex[:12]}"
    server = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.DBAPIError as exc:
        server.dispose()
        pytest.fail(f"cannot create a test database through {POSTGRES_ENV} (its user needs CREATEDB): "
                    f"{str(exc.orig).strip().splitlines()[0]}")
    try:
        yield sa.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:  # end connections a test left open (an undisposed engine), then drop
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        server.dispose()
