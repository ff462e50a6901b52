"""Random search: uniform samples without replacement. The baseline every method must beat.

With a prior (``Strategy.use_prior``, e.g. a training-free proxy) and ``prior_filter`` = k > 1,
each proposal is the best-by-prior of k uniform draws not seen yet: a cheap filter in front of
an expensive evaluator. Without a prior, or with k = 1, it is plain random search.
"""
from __future__ import annotations

import math

from ..problem import Problem
from ..space import Architecture
from .base import Strategy, require


class RandomSearch(Strategy):
    name = "random"
    summary = "uniform random sampling without repeats (the baseline)"
    multi_objective = True
    prior_filter = 1  # class-level default for snapshots pickled before the option existed

    def __init__(self, problem: Problem, seed: int = 0, prior_filter: int = 1) -> None:
        super().__init__(problem, seed)
        require(prior_filter >= 1, "prior_filter must be >= 1")
        self.prior_filter = prior_filter

    def _propose(self) -> Architecture | None:
        if self.prior is None or self.prior_filter <= 1:
            return self.space.sample(self.rng)
        draws = [self.space.sample(self.rng) for _ in range(self.prior_filter)]
        fresh = [a for a in draws if self.is_new(a)]
        if not fresh:
            return draws[0]  # all seen: the base class moves on to its fallbacks
        best, best_score = fresh[0], -math.inf
        for a in fresh:
            v = float(self.prior(a))
            if math.isfinite(v) and v > best_score:
                best, best_score = a, v
        return best
