"""REINFORCE policy-gradient controller (Williams 1992; Zoph & Le 2017) with the
MnasNet reward accuracy x (cost / target) ** w (Tan et al. 2019)."""
from __future__ import annotations

import math

import numpy as np

from ..problem import Problem
from ..space import Architecture
from ..trial import Trial, TrialState
from .base import Strategy, require

CONTINUOUS_BINS = 10  # continuous decisions are sampled from this many equal bins


class Reinforce(Strategy):
    """A factorised categorical policy: one softmax per genotype decision.

    Reward: the first objective (accuracy). When a second objective is a cost to be
    minimised (latency, FLOPs, parameters), the MnasNet reward ``acc * (cost/target)**w``
    is used with ``w = -0.07`` (soft constraint) and ``target`` taken from a
    ``cost<=target`` constraint when given, else the median cost seen so far.
    Update: ``theta += lr * (R - baseline) * grad log pi(a)`` with an exponential
    moving-average baseline (decay ``baseline_decay``) and advantage normalisation.
    """

    name = "rl"
    summary = "REINFORCE policy gradient over decisions, MnasNet reward acc*(cost/target)^w"
    multi_objective = True

    def __init__(self, problem: Problem, seed: int = 0, lr: float = 0.2, baseline_decay: float = 0.9,
                 w: float = -0.07, target: float | None = None) -> None:
        super().__init__(problem, seed)
        require(lr > 0, f"lr must be > 0, not {lr}")
        require(0.0 <= baseline_decay < 1.0, f"baseline_decay must be in [0, 1), not {baseline_decay}")
        self.lr, self.baseline_decay, self.w = lr, baseline_decay, w
        self.sizes = [d.n or CONTINUOUS_BINS for d in self.space.dims]
        self.logits = [np.zeros(n) for n in self.sizes]
        self.baseline: float | None = None
        self.reward_var = 1e-4
        self.target = target if target is not None else self._target_from_constraints()

    def _target_from_constraints(self) -> float | None:
        if len(self.problem.objectives) < 2:
            return None
        cost = self.problem.objectives[1].metric
        for c in self.problem.constraints:
            text = c.text.replace(" ", "")
            for op in ("<=", "<"):
                if text.startswith(cost + op):
                    try:
                        return float(text[len(cost) + len(op):])
                    except ValueError:
                        return None
        return None

    def _propose(self) -> Architecture | None:
        genotype: list[float | int] = []
        for d, logit in zip(self.space.dims, self.logits):
            p = np.exp(logit - logit.max())
            p /= p.sum()
            k = int(self.rng.choice(len(p), p=p))
            genotype.append(k if d.n else (k + self.rng.random()) / CONTINUOUS_BINS)
        return self.space.from_genotype(genotype)

    def reward(self, trial: Trial) -> float:
        """The MnasNet reward (higher is better)."""
        acc = trial.metrics.get(self.problem.objectives[0].metric, -math.inf)
        if not self.problem.objectives[0].maximize:
            acc = -acc
        if len(self.problem.objectives) < 2 or self.problem.objectives[1].maximize:
            return float(acc)
        cost_name = self.problem.objectives[1].metric
        cost = float(trial.metrics.get(cost_name, math.nan))
        target = self.target
        if target is None:
            costs = [t.metrics[cost_name] for t in self.trials if t.state is TrialState.COMPLETE and cost_name in t.metrics]
            target = float(np.median(costs)) if costs else cost
        if not (cost > 0 and target and target > 0):
            return float(acc)
        return float(acc) * (cost / target) ** self.w

    def _observe(self, trial: Trial) -> None:
        if trial.state is not TrialState.COMPLETE:
            return
        r = self.reward(trial)
        if not math.isfinite(r):
            return
        if self.baseline is None:
            self.baseline = r
            return
        adv = r - self.baseline
        self.reward_var = self.baseline_decay * self.reward_var + (1 - self.baseline_decay) * adv * adv
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * r
        scaled = adv / math.sqrt(self.reward_var + 1e-12)
        genotype = self.space.genotype(trial.arch)
        for pos in self.space.active_positions(trial.arch):
            d, logit = self.space.dims[pos], self.logits[pos]
            k = int(genotype[pos]) if d.n else min(int(genotype[pos] * CONTINUOUS_BINS), CONTINUOUS_BINS - 1)
            p = np.exp(logit - logit.max())
            p /= p.sum()
            grad = -p
            grad[k] += 1.0
            logit += self.lr * scaled * grad
