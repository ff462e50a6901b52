"""Random search: uniform samples without replacement. The baseline every method must beat."""
from __future__ import annotations

from ..space import Architecture
from .base import Strategy


class RandomSearch(Strategy):
    name = "random"
    summary = "uniform random sampling without repeats (the baseline)"
    multi_objective = True

    def _propose(self) -> Architecture | None:
        return self.space.sample(self.rng)
