"""Parallel speed-up: one 40-trial study of ~1 s CPU-bound evaluations, run four ways.

(a) in this process, no executor; (b) ProcessExecutor(1); (c) ProcessExecutor(2);
(d) RayExecutor(2), whose wall time includes starting a local Ray and its actors, and
shutting them down (``ray.init`` alone is reported too).
Each evaluation is busy pure-Python compute (an integer hash loop, never sleep) whose
size is calibrated at start so one evaluation takes ``--eval-s`` seconds here.

Speed-ups are over the 1-process-worker run (b), the like-for-like baseline: same
driver loop, same worker hand-off, one worker. The in-process run (a) is reported too.
Studies are in memory (no storage), so only evaluation and hand-off are timed.

Targets on a 2-core machine: process_speedup_2w >= 1.7, ray_speedup_2w >= 1.6.
Usage: python benchmarks/parallel.py [--quick] [--trials 40] [--eval-s 1.0]
Last line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from archscout.evaluators.base import Evaluator
from archscout.problem import Objective, Problem
from archscout.space import Architecture, Choice, IntRange, SearchSpace
from archscout.strategies import make_strategy
from archscout.study import Study
from archscout.study.executors import Executor, ProcessExecutor

OPS = ("conv", "pool", "attn", "mlp")


def burn(iterations: int, seed: int) -> int:
    """``iterations`` steps of a linear congruential generator: pure CPU, no memory traffic."""
    x = seed
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def calibrate(target_s: float) -> int:
    """Iterations of :func:`burn` that take ``target_s`` seconds in this process now."""
    n = 200_000
    while True:
        t0 = time.perf_counter()
        burn(n, 1)
        took = time.perf_counter() - t0
        if took >= 0.2:
            break
        n *= 4
    n = int(n * target_s / took)
    t0 = time.perf_counter()  # once more at the target size, to correct for warm-up
    burn(n, 1)
    return max(1, int(n * target_s / (time.perf_counter() - t0)))


class BusyEvaluator(Evaluator):
    """``acc`` depends on the architecture; each evaluation burns ``iterations`` LCG steps.

    ``eval_s`` is the evaluation's own duration measured where it ran (CPU contention shows
    there: two busy workers on two shared cores run slower than one).
    """

    name = "busy"
    metric_names = ("acc", "eval_s")

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations
        self._space = SearchSpace([Choice("op", list(OPS)), IntRange("width", 1, 100)])

    @property
    def space(self) -> SearchSpace:
        return self._space

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        t0 = time.perf_counter()
        x = burn(self.iterations, arch["width"] * 7 + OPS.index(arch["op"]))
        return {"acc": (x % 1000) / 1000.0, "eval_s": time.perf_counter() - t0}


def run(label: str, ev: BusyEvaluator, trials: int, executor: Executor | None) -> dict[str, Any]:
    problem = Problem(ev.space, [Objective("acc")])
    study = Study(problem, make_strategy("random", problem, seed=0), ev)
    stamps: list[float] = []
    t0 = time.perf_counter()
    study.optimize(trials, executor=executor, callback=lambda _s, _t: stamps.append(time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    done = list(study.trials.values())
    assert len(done) == trials and len({t.arch.key for t in done}) == trials, f"{label}: wrong trial count"
    bad = [t.error for t in done if t.error]
    assert not bad, f"{label}: failed trials: {bad[:3]}"
    mean_eval = sum(t.metrics["eval_s"] for t in done) / trials
    # Where the wall time goes: until the first result (start-up + one evaluation), and after
    # the last one (shutting the workers, or Ray, down).
    out = {"wall_s": round(wall, 3), "mean_eval_s": round(mean_eval, 3), "first_result_s": round(stamps[0], 3),
           "after_last_result_s": round(wall - stamps[-1], 3)}
    extra = ""
    startup = getattr(executor, "startup_s", None)
    if startup is not None:
        out["startup_s"] = round(startup, 3)
        extra = f", Ray start-up {startup:4.2f} s"
    print(f"{label:<24} wall {wall:7.2f} s   mean evaluation {mean_eval:5.3f} s   first result at "
          f"{stamps[0]:5.2f} s, last result to return {wall - stamps[-1]:4.2f} s{extra}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 trials of 0.2 s (a smoke run)")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--eval-s", type=float, default=1.0, help="seconds of CPU work per evaluation")
    args = parser.parse_args()
    trials, eval_s = (6, 0.2) if args.quick else (args.trials, args.eval_s)

    iterations = calibrate(eval_s)
    ev = BusyEvaluator(iterations)
    print(f"{trials} trials, {iterations:,} LCG steps per evaluation (~{eval_s:g} s here); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; in-memory studies", flush=True)

    results: dict[str, Any] = {}
    results["in_process"] = run("in process (no executor)", ev, trials, None)
    results["process_1w"] = run("ProcessExecutor(1)", ev, trials, ProcessExecutor(1))
    results["process_2w"] = run("ProcessExecutor(2)", ev, trials, ProcessExecutor(2))
    note = None
    try:
        import ray  # noqa: F401
    except ImportError:
        note = "ray is not installed (pip install 'archscout[ray]'): Ray run skipped"
        print(note)
    else:
        from archscout.study.ray_executor import RayExecutor

        results["ray_2w"] = run("RayExecutor(2)", ev, trials, RayExecutor(2))

    base = results["process_1w"]["wall_s"]
    process_speedup = base / results["process_2w"]["wall_s"]
    ray_speedup = base / results["ray_2w"]["wall_s"] if "ray_2w" in results else None
    print(f"speed-up over ProcessExecutor(1): 2 processes x{process_speedup:.2f} (target >= 1.7)"
          + (f", Ray 2 actors x{ray_speedup:.2f} (target >= 1.6, Ray start-up included)" if ray_speedup else ""))
    vs_here = {k: round(results["in_process"]["wall_s"] / v["wall_s"], 3) for k, v in results.items()}
    summary = {
        "process_speedup_2w": round(process_speedup, 3),
        "ray_speedup_2w": None if ray_speedup is None else round(ray_speedup, 3),
        "baseline": "ProcessExecutor(1)",
        "ray_startup_s": results.get("ray_2w", {}).get("startup_s"),
        "wall_s": {k: v["wall_s"] for k, v in results.items()},
        "mean_eval_s": {k: v["mean_eval_s"] for k, v in results.items()},
        "first_result_s": {k: v["first_result_s"] for k, v in results.items()},
        "after_last_result_s": {k: v["after_last_result_s"] for k, v in results.items()},
        "speedup_vs_in_process": vs_here,
        "trials": trials, "eval_s_target": eval_s, "iterations": iterations,
        "cpus": os.cpu_count(), "storage": "in-memory", "note": note,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
