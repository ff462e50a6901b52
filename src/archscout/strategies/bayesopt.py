"""Predictor-guided Bayesian optimisation (BANANAS / Neural Predictor style)."""
from __future__ import annotations

import numpy as np

from ..problem import Problem
from ..space import Architecture
from ..trial import Trial, TrialState
from .base import Strategy


class PredictorBO(Strategy):
    name = "bo"
    summary = "predictor-guided Bayesian optimisation over architecture encodings"
    multi_objective = True

    def __init__(self, problem: Problem, seed: int = 0, initial: int = 10, pool: int = 500) -> None:
        super().__init__(problem, seed)
        self.initial, self.pool = initial, pool
        self._features: dict[str, np.ndarray] = {}

    def _feat(self, arch: Architecture) -> np.ndarray:
        f = self._features.get(arch.key)
        if f is None:
            f = np.concatenate([self.space.encode(arch, "onehot"), self.space.encode(arch, "path")])
            self._features[arch.key] = f
        return f

    def _propose(self) -> Architecture | None:
        done = [t for t in self.trials if t.state is TrialState.COMPLETE]
        if len(done) < self.initial:
            return self.space.sample(self.rng)
        X = np.array([self._feat(t.arch) for t in done])
        y = np.array([self.fitness(t) for t in done])
        top = sorted(done, key=self.fitness, reverse=True)[:10]
        cands = [self.space.mutate(t.arch, self.rng) for t in top for _ in range(20)]
        cands += [self.space.sample(self.rng) for _ in range(100)]
        cands = [c for c in cands if self.is_new(c)]
        if not cands:
            return None
        C = np.array([self._feat(c) for c in cands])
        lam = 1.0
        w = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ (y - y.mean()))
        return cands[int(np.argmax(C @ w))]

    def _observe(self, trial: Trial) -> None:
        pass
