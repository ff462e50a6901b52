"""NSGA-II (Deb et al. 2002), steady-state: each told trial competes for a place in the
population by non-dominated rank, then crowding distance."""
from __future__ import annotations

import numpy as np

from ..analysis.pareto import crowding_distance, nondominated_sort
from ..problem import Problem
from ..space import Architecture
from ..trial import Trial, TrialState
from .base import Strategy, require


class NSGA2(Strategy):
    """Parents by binary tournament on (rank, crowding); child by uniform crossover
    (probability ``crossover_prob``) followed by a mutation that changes one decision
    plus each other with probability ``mutation_rate``. Infeasible and failed trials
    never enter the population.
    """

    name = "nsga2"
    summary = "NSGA-II multi-objective evolution: non-dominated sorting + crowding distance"
    multi_objective = True

    def __init__(self, problem: Problem, seed: int = 0, population_size: int = 20, crossover_prob: float = 0.9,
                 mutation_rate: float = 0.05) -> None:
        super().__init__(problem, seed)
        require(population_size >= 2, f"population_size must be >= 2, not {population_size}")
        require(0.0 <= crossover_prob <= 1.0, f"crossover_prob must be in [0, 1], not {crossover_prob}")
        require(0.0 <= mutation_rate <= 1.0, f"mutation_rate must be in [0, 1], not {mutation_rate}")
        self.population_size = population_size
        self.crossover_prob = crossover_prob
        self.mutation_rate = mutation_rate
        self.population: list[Trial] = []
        self._rank = np.zeros(0)
        self._crowd = np.zeros(0)

    def _propose(self) -> Architecture | None:
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        p1, p2 = self._tournament(), self._tournament()
        child = p1.arch
        if self.rng.random() < self.crossover_prob and p1.arch.key != p2.arch.key:
            child = self.space.crossover(p1.arch, p2.arch, self.rng)
        return self.space.mutate(child, self.rng, rate=self.mutation_rate)

    def _tournament(self) -> Trial:
        i, j = (int(x) for x in self.rng.integers(len(self.population), size=2))
        if (self._rank[i], -self._crowd[i]) <= (self._rank[j], -self._crowd[j]):
            return self.population[i]
        return self.population[j]

    def _observe(self, trial: Trial) -> None:
        if trial.state is not TrialState.COMPLETE:
            return
        pool = self.population + [trial]
        pts = np.array([self.problem.scores(t.metrics) for t in pool])
        chosen: list[int] = []
        rank = np.zeros(len(pool))
        crowd = np.zeros(len(pool))
        for r, front in enumerate(nondominated_sort(pts)):
            d = crowding_distance(pts[front])
            rank[front], crowd[front] = r, d
            if len(chosen) + len(front) <= self.population_size:
                chosen += front
            else:
                order = np.argsort(-d, kind="stable")
                chosen += [front[k] for k in order[: self.population_size - len(chosen)]]
                break
        self.population = [pool[i] for i in chosen]
        self._rank, self._crowd = rank[chosen], crowd[chosen]
