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
