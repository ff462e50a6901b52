"""Storage throughput and sharing: SQLite write rate, and 4 processes sharing one study.

(a) Completed trials written per second to a file SQLite database: ``Study.ask`` +
    ``Study.tell`` of ``--trials`` trials (random strategy; each ask and each tell is one
    transaction that also writes the pickled strategy state, so this is what a study really
    pays) — the headline figure, ``sqlite_writes_per_s``; and the raw rate of
    ``Storage.add_trials`` + ``Storage.finish_trial`` without a strategy state.
(b) 4 processes sharing one SQLite study, twice: 4 spawned processes that each open the
    study and, released together by a barrier, run ``optimize(400)`` (random strategy, an
    evaluator that sleeps ``--nap-ms`` so their asks and tells really interleave); then 4
    ``archscout search --budget 400`` processes started at once (the default benchmark,
    nasbench-graph:cora: lookups take microseconds, so the first process to load it may do
    most trials — the CLI path, little contention). Each time the study must hold exactly
    400 complete trials numbered 0..399 with 400 distinct architectures and none running;
    ``sqlite_shared_ok`` is true when both runs pass.
(c) The same on PostgreSQL: ARCHSCOUT_TEST_POSTGRES_URL, else a throwaway server from
    .ci/postgres.sh (stopped afterwards) -> ``postgres_shared_ok`` (null when no server).

Target: >= 500 completed-trial writes/s on SQLite.
Usage: python benchmarks/storage.py [--quick] [--trials 2000] [--budget 400] [--procs 4]
Last line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from archscout.evaluators.base import Evaluator
from archscout.problem import Objective, Problem
from archscout.space import Architecture, Choice, IntRange, SearchSpace
from archscout.strategies import make_strategy
from archscout.study import Storage, Study, TrialState

REPO = Path(__file__).resolve().parents[1]
OPS = ["conv", "pool", "attn", "mlp"]
SHARED = "shared"  # the shared study's name
CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def metrics_of(arch: Architecture) -> dict[str, float]:
    """A trivial evaluator: microseconds, so the storage is all that is timed."""
    return {"acc": math.sin(arch["width"] / 10) + OPS.index(arch["op"]) / 10, "cost": float(arch["width"])}


def space_for(n: int) -> SearchSpace:
    return SearchSpace([Choice("op", OPS), IntRange("width", 1, max(1000, n))])  # >= 4n architectures


def rates(stamps: list[float], n: int) -> tuple[float, float, float]:
    """(overall, first tenth, last tenth) completed trials per second from per-trial end times."""
    tenth = max(1, n // 10)
    overall = n / stamps[-1]
    first = tenth / stamps[tenth - 1]
    last = tenth / (stamps[-1] - stamps[-tenth - 1])
    return overall, first, last


def study_level(tmp: Path, n: int) -> dict[str, Any]:
    """ask + tell through a stored Study (strategy state written with each)."""
    space = space_for(n)
    problem = Problem(space, [Objective("acc")])
    storage = Storage(f"sqlite:///{tmp}/study_level.db")
    study = Study.open(storage, "bench", problem, lambda: make_strategy("random", problem, 0), None,
                       {"strategy": "random", "seed": 0})
    stamps = []
    t0 = time.perf_counter()
    for _ in range(n):
        (pending,) = study.ask(1)
        study.tell(pending.number, metrics_of(pending.arch))
        stamps.append(time.perf_counter() - t0)
    state = storage.load_state(study.study_id) or b""
    rows = storage.load_trials(study.study_id)
    storage.dispose()
    assert len(rows) == n and all(r.state is TrialState.COMPLETE for r in rows)
    overall, first, last = rates(stamps, n)
    print(f"Study ask+tell   {n} trials in {stamps[-1]:6.2f} s: {overall:7.1f} trials/s "
          f"(first tenth {first:.0f}/s, last tenth {last:.0f}/s; strategy state at the end {len(state):,} bytes)",
          flush=True)
    return {"trials": n, "wall_s": round(stamps[-1], 3), "per_s": round(overall, 1),
            "first_tenth_per_s": round(first, 1), "last_tenth_per_s": round(last, 1),
            "final_state_bytes": len(state), "transactions_per_trial": 2}


def raw_level(tmp: Path, n: int) -> dict[str, Any]:
    """Storage.add_trials + Storage.finish_trial, no strategy state."""
    space = space_for(n)
    archs = [space.make({"op": OPS[i % 4], "width": i // 4 + 1}) for i in range(n)]
    storage = Storage(f"sqlite:///{tmp}/raw.db")
    study_id = storage.create_study("raw", {"strategy": "none"})
    stamps = []
    t0 = time.perf_counter()
    for arch in archs:
        (number,) = storage.add_trials(study_id, [arch], None, owner="bench")
        now = time.time()
        storage.finish_trial(study_id, number, TrialState.COMPLETE, metrics_of(arch), None, now, now, None,
                             owner="bench")
        stamps.append(time.perf_counter() - t0)
    storage.dispose()
    overall, first, last = rates(stamps, n)
    print(f"Storage raw      {n} trials in {stamps[-1]:6.2f} s: {overall:7.1f} trials/s "
          f"(first tenth {first:.0f}/s, last tenth {last:.0f}/s)", flush=True)
    return {"trials": n, "wall_s": round(stamps[-1], 3), "per_s": round(overall, 1),
            "first_tenth_per_s": round(first, 1), "last_tenth_per_s": round(last, 1)}


class NapEvaluator(Evaluator):
    """A cheap evaluator for the sharing test: ``metrics_of`` after ``nap_s`` seconds of sleep,
    so that the processes' asks and tells interleave instead of one finishing first."""

    name = "nap"
    metric_names = ("acc", "cost")

    def __init__(self, n: int, nap_s: float) -> None:
        self._space, self.nap_s = space_for(n), nap_s

    @property
    def space(self) -> SearchSpace:
        return self._space

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        time.sleep(self.nap_s)
        return metrics_of(arch)


def _share(url: str, budget: int, nap_s: float, barrier: Any, errors: Any) -> None:
    """One process of the contended test: open the shared study, wait for the others, run."""
    try:
        ev = NapEvaluator(budget, nap_s)
        problem = Problem(ev.space, [Objective("acc")])
        study = Study.open(Storage(url), SHARED, problem, lambda: make_strategy("random", problem, 0), ev,
                           {"strategy": "random", "seed": 0})
        barrier.wait(120)
        study.optimize(budget)
    except BaseException as exc:  # noqa: BLE001 - reported by the parent, exactly
        errors.put(f"{type(exc).__name__}: {exc}".strip().splitlines()[0])
        raise SystemExit(1) from None


def run_processes(url: str, budget: int, procs: int, nap_s: float, timeout_s: float) -> tuple[list[int], list[str]]:
    """``procs`` spawned processes calling ``Study.open(...).optimize(budget)``, released together."""
    ctx = mp.get_context("spawn")
    barrier, errors = ctx.Barrier(procs), ctx.Queue()
    running = [ctx.Process(target=_share, args=(url, budget, nap_s, barrier, errors)) for _ in range(procs)]
    for proc in running:
        proc.start()
    t0 = time.perf_counter()
    for proc in running:
        proc.join(max(1.0, timeout_s - (time.perf_counter() - t0)))
        if proc.is_alive():
            proc.kill()
            proc.join()
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    return [proc.exitcode for proc in running], messages


def run_cli(url: str, budget: int, procs: int, cwd: Path, timeout_s: float) -> tuple[list[int], list[str]]:
    """``procs`` ``archscout search`` subprocesses on one study, started at once."""
    cmd = [sys.executable, "-m", "archscout", "search", "--storage", url, "--study", SHARED, "--strategy", "random",
           "--budget", str(budget), "--no-progress", "--json"]
    env = dict(os.environ, **CHILD_ENV)
    t0 = time.perf_counter()
    running = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(procs)]
    exits, errors = [], []
    for proc in running:
        try:
            _out, err = proc.communicate(timeout=max(1.0, timeout_s - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            err = f"killed after {timeout_s:g} s\n{err}"
        exits.append(proc.returncode)
        lines = [line for line in err.strip().splitlines() if line.strip()]
        if proc.returncode != 0 or any("Traceback" in line or "locked" in line for line in lines):
            errors.append(lines[-1] if lines else f"exit code {proc.returncode}")
    return exits, errors


def shared_study(url: str, budget: int, procs: int, label: str, how: str, cwd: Path, timeout_s: float,
                 nap_s: float) -> dict[str, Any]:
    """Run ``procs`` processes on one study (``how``: "processes" or "cli"); check what it holds afterwards."""
    Storage(url).dispose()  # the schema exists before they race to open it
    t0 = time.perf_counter()
    if how == "processes":
        exits, errors = run_processes(url, budget, procs, nap_s, timeout_s)
    else:
        exits, errors = run_cli(url, budget, procs, cwd, timeout_s)
    wall = time.perf_counter() - t0
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT t.number, t.arch_key, t.state, t.owner, t.retries FROM trials t "
                                        "JOIN studies s ON s.id = t.study_id WHERE s.name = :name ORDER BY t.number"),
                                {"name": SHARED}).all()
    finally:
        engine.dispose()
    numbers = [r[0] for r in rows]
    states = Counter(r[2] for r in rows)
    out = {
        "how": how, "budget": budget, "processes": procs, "wall_s": round(wall, 2), "exit_codes": exits,
        "trials": len(rows), "distinct_archs": len({r[1] for r in rows}), "states": dict(states),
        "numbers_ok": numbers == list(range(budget)), "running": states.get("running", 0),
        "retried": sum(1 for r in rows if (r[4] or 0) > 0),
        "trials_per_process": sorted(Counter(r[3] for r in rows).values(), reverse=True), "errors": errors,
    }
    out["ok"] = (exits == [0] * procs and len(rows) == budget and out["distinct_archs"] == budget
                 and out["numbers_ok"] and dict(states) == {"complete": budget})
    # Correct sharing is the test; how the work was split is reported beside it.
    out["processes_that_ran_trials"] = len(out["trials_per_process"])
    print(f"{label}: {'OK' if out['ok'] else 'NOT OK'} in {wall:.1f} s: {len(rows)} trials, "
          f"{out['distinct_archs']} distinct, states {dict(states)}, numbers 0..{budget - 1} "
          f"{'yes' if out['numbers_ok'] else 'no'}, exits {exits}, trials per process {out['trials_per_process']}"
          + (f", errors {errors}" if errors else ""), flush=True)
    if rows and out["trials_per_process"][0] > 0.9 * len(rows):
        print(f"  note: one process ran {out['trials_per_process'][0]} of {len(rows)} trials; "
              f"the others did little of the work", flush=True)
    return out


def sharing(urls: dict[str, str], budget: int, procs: int, cwd: Path, backend: str, timeout_s: float,
            nap_s: float) -> dict[str, Any]:
    """Both sharing runs, each on its own empty database ``urls[how]``: contended processes, then CLI searches."""
    out = {}
    for how, target in urls.items():
        label = (f"{backend}, {procs} processes Study.open(...).optimize({budget}), {nap_s * 1000:g} ms evaluations"
                 if how == "processes" else f"{backend}, {procs} x archscout search --budget {budget}")
        out[how] = shared_study(target, budget, procs, label, how, cwd, timeout_s, nap_s)
    out["ok"] = all(r["ok"] for r in out.values())
    return out


def start_postgres() -> tuple[str | None, dict[str, str], str]:
    """(server URL, its environment from .ci/postgres.sh (to stop it), how it was found)."""
    url = os.environ.get("ARCHSCOUT_TEST_POSTGRES_URL")
    if url:
        return url, {}, "ARCHSCOUT_TEST_POSTGRES_URL"
    proc = subprocess.run(["bash", str(REPO / ".ci" / "postgres.sh")], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export "):
            for item in shlex.split(line[len("export "):]):
                key, _, value = item.partition("=")
                found[key] = value
    if proc.returncode != 0 or "ARCHSCOUT_TEST_POSTGRES_URL" not in found:
        why = [line for line in proc.stderr.splitlines() if "WARNING" in line or "postgres.sh" in line]
        return None, found, f"no PostgreSQL server: {why[-1] if why else 'postgres.sh failed'}"
    return found["ARCHSCOUT_TEST_POSTGRES_URL"], found, "started with .ci/postgres.sh"


def stop_postgres(found: dict[str, str]) -> None:
    if found.get("ARCHSCOUT_PG_DIR"):
        subprocess.run(["bash", str(REPO / ".ci" / "postgres.sh"), "stop", found["ARCHSCOUT_PG_DIR"]], cwd=REPO,
                       env=dict(os.environ, **found), capture_output=True, timeout=120)


def postgres_shared(budget: int, procs: int, cwd: Path, timeout_s: float,
                    nap_s: float) -> tuple[dict[str, Any] | None, str]:
    url, found, how = start_postgres()
    if url is None:
        print(f"PostgreSQL: skipped ({how})", flush=True)
        return None, how
    tag = uuid.uuid4().hex[:10]
    names = [f"archscout_bench_shared_p_{tag}", f"archscout_bench_shared_c_{tag}"]
    server = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        urls = {how: sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
                for how, name in zip(("processes", "cli"), names)}
        try:
            return sharing(urls, budget, procs, cwd, f"PostgreSQL ({how})", timeout_s, nap_s), how
        finally:
            with server.connect() as conn:
                for name in names:
                    conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        server.dispose()
        stop_postgres(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 trials, a 40-trial shared study")
    parser.add_argument("--trials", type=int, default=2000, help="trials written in the rate test")
    parser.add_argument("--budget", type=int, default=400, help="trials of the shared study")
    parser.add_argument("--procs", type=int, default=4, help="processes sharing the study")
    parser.add_argument("--nap-ms", type=float, default=5.0, help="sleep per evaluation in the contended run (ms)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL part")
    args = parser.parse_args()
    n, budget = (200, 40) if args.quick else (args.trials, args.budget)
    timeout_s = 900.0

    with tempfile.TemporaryDirectory(prefix="archscout-storage-bench-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"SQLite files in {tmp}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
        study_rate = study_level(tmp, n)
        raw_rate = raw_level(tmp, n)
        urls = {how: f"sqlite:///{tmp}/shared_{how}.db" for how in ("processes", "cli")}
        sqlite = sharing(urls, budget, args.procs, tmp, "SQLite", timeout_s, args.nap_ms / 1000)
        if args.no_postgres:
            postgres, pg_note = None, "skipped (--no-postgres)"
        else:
            postgres, pg_note = postgres_shared(budget, args.procs, tmp, timeout_s, args.nap_ms / 1000)

    print(f"headline: {study_rate['per_s']:.0f} completed trials/s through Study.ask/tell on SQLite over {n} trials "
          f"(target >= 500); raw storage {raw_rate['per_s']:.0f}/s", flush=True)
    print(json.dumps({
        "sqlite_writes_per_s": study_rate["per_s"],
        "sqlite_shared_ok": sqlite["ok"],
        "postgres_shared_ok": None if postgres is None else postgres["ok"],
        "sqlite_raw_writes_per_s": raw_rate["per_s"],
        "study_level": study_rate, "raw_level": raw_rate,
        "sqlite_shared": sqlite, "postgres_shared": postgres, "postgres_note": pg_note,
    }))


if __name__ == "__main__":
    main()
