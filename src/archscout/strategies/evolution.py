"""Regularized (aging) evolution, Real et al. 2019 (AmoebaNet)."""
from __future__ import annotations

from collections import deque

from ..problem import Problem
from ..space import Architecture
from ..trial import Trial
from .base import Strategy, require


class RegularizedEvolution(Strategy):
    """Tournament selection of ``sample_size`` from a population of ``population_size``;
    the winner is mutated; the oldest member dies. Until the population is full,
    architectures are sampled at random. Works asynchronously: each ask uses the
    population as it is at that moment.
    """

    name = "evolution"
    summary = "regularized (aging) evolution with tournament selection (Real et al. 2019)"

    def __init__(self, problem: Problem, seed: int = 0, population_size: int = 20, sample_size: int = 5) -> None:
        super().__init__(problem, seed)
        require(population_size >= 1, f"population_size must be >= 1, not {population_size}")
        require(1 <= sample_size, f"sample_size must be >= 1, not {sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[Trial] = deque()

    def _propose(self) -> Architecture | None:
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        idx = self.rng.choice(len(self.population), size=min(self.sample_size, len(self.population)), replace=False)
        parent = max((self.population[int(i)] for i in idx), key=self.fitness)
        return self.space.mutate(parent.arch, self.rng)

    def _observe(self, trial: Trial) -> None:
        self.population.append(trial)
        if len(self.population) > self.population_size:
            self.population.popleft()
