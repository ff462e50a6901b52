"""Small picklable evaluators for executor, sharing and chaos tests (importable from worker processes)."""
from __future__ import annotations

import math
import os
import time

from archscout.evaluators.base import Evaluator
from archscout.space import Architecture, Choice, IntRange, SearchSpace


def small_space() -> SearchSpace:
    return SearchSpace([Choice("op", ["conv", "pool", "attn", "mlp"]), IntRange("width", 1, 100)])


class SleepyEvaluator(Evaluator):
    """``acc`` is a fixed function of the architecture; each evaluation sleeps ``delay_s``.

    Misbehaviour on purpose, by architecture: ``op == "attn"`` and ``width % 7 == 0`` raises;
    ``width in crash`` kills the worker process; ``width in hang`` sleeps for an hour.
    """

    name = "sleepy"
    metric_names = ("acc", "cost")

    def __init__(self, delay_s: float = 0.0, crash: tuple[int, ...] = (), hang: tuple[int, ...] = (),
                 raises: bool = False) -> None:
        self._space = small_space()
        self.delay_s, self.crash, self.hang, self.raises = delay_s, tuple(crash), tuple(hang), raises

    @property
    def space(self) -> SearchSpace:
        return self._space

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        width = arch["width"]
        if width in self.crash:
            os._exit(3)  # what a segfault or the OOM killer looks like to the driver
        if width in self.hang:
            time.sleep(3600)
        if self.raises and arch["op"] == "attn" and width % 7 == 0:
            raise RuntimeError(f"diverged at width {width}")
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"acc": math.sin(width / 10) + {"conv": 0.3, "pool": 0.0, "attn": 0.2, "mlp": 0.1}[arch["op"]],
                "cost": float(width)}


def share_study(url: str, budget: int, workers: int) -> None:
    """One process of a shared study: open it (creating it if first) and run it to ``budget``."""
    from archscout.problem import Objective, Problem
    from archscout.strategies import make_strategy
    from archscout.study import Storage, Study
    from archscout.study.executors import ProcessExecutor

    problem = Problem(small_space(), [Objective("acc")])
    study = Study.open(Storage(url), "shared", problem, lambda: make_strategy("random", problem, 0),
                       SleepyEvaluator(delay_s=0.002), {"strategy": "random", "seed": 0})
    study.optimize(budget, executor=ProcessExecutor(workers) if workers > 1 else None)


def run_sharing_processes(url: str, budget: int, processes: int, timeout_s: float = 120) -> list[int | None]:
    """Start ``processes`` spawned processes sharing one study at once (1 or 2 workers each); exit codes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=share_study, args=(url, budget, 1 + i % 2)) for i in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout_s)
    return [proc.exitcode for proc in procs]
