"""Local search with first improvement and random restarts (White et al. 2021,
"Local search is state of the art for neural architecture search benchmarks")."""
from __future__ import annotations

from ..problem import Problem
from ..space import Architecture
from ..trial import Trial
from .base import Strategy


class LocalSearch(Strategy):
    """Start from the best of ``initial`` random architectures; evaluate the incumbent's
    one-edit neighbours in random order and move to the first that improves on it.
    At a local optimum (all neighbours seen, none better) restart: the next random
    architecture told becomes the incumbent.
    """

    name = "local-search"
    summary = "first-improvement hill climbing over one-edit neighbours, with random restarts"

    def __init__(self, problem: Problem, seed: int = 0, initial: int = 10) -> None:
        super().__init__(problem, seed)
        self.initial = max(1, initial)
        self.incumbent: Trial | None = None
        self._queue: list[Architecture] = []

    def _propose(self) -> Architecture | None:
        while self.incumbent is not None and self._queue:
            cand = self._queue.pop()
            if self.is_new(cand):
                return cand
        self.incumbent = None  # local optimum (or not started): restart at random
        return self.space.sample(self.rng)

    def _observe(self, trial: Trial) -> None:
        if len(self.trials) < self.initial:
            return
        if len(self.trials) == self.initial:
            self._move_to(max(self.trials, key=self.fitness))
        elif self.incumbent is None or self.fitness(trial) > self.fitness(self.incumbent):
            self._move_to(trial)

    def _move_to(self, trial: Trial) -> None:
        self.incumbent = trial
        neighbours = self.space.neighbours(trial.arch, self.rng)
        order = self.rng.permutation(len(neighbours))
        self._queue = [neighbours[i] for i in order]
