"""The ask/tell protocol every strategy implements.

A strategy proposes architectures (``ask``) and learns from finished trials
(``tell``). The base class guarantees what every strategy must: no architecture is
proposed twice (canonical keys), hard budgets that can be checked before evaluation
are honoured, batch asks return distinct architectures, and all randomness comes from
one seeded ``numpy.random.Generator`` so a run is reproducible and its state can be
pickled for resume. Subclasses implement ``_propose`` and ``_observe``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from ..problem import Problem
from ..space import Architecture
from ..trial import Trial, TrialState

PROPOSE_TRIES = 200          # proposals tried before falling back to random samples
RANDOM_TRIES = 2000          # random samples tried before enumerating what is left
ENUMERATE_LIMIT = 1_000_000  # enumerate the remainder only for spaces this small


class Strategy(ABC):
    """Base class. ``name`` is the CLI name; ``summary`` a one-line description."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    multi_objective: ClassVar[bool] = False  # True when it natively handles several objectives
    # A cheap score known before evaluation (higher = predicted better, e.g. a training-free proxy);
    # strategies that support one use it for warm starts, features or filters. Never pickled.
    prior: Callable[[Architecture], float] | None = None

    def __init__(self, problem: Problem, seed: int = 0) -> None:
        self.problem = problem
        self.space = problem.space
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.trials: list[Trial] = []           # finished trials, in the order told
        self._seen: set[str] = set()            # keys asked or told
        self._pending: dict[str, Architecture] = {}
        self.rejected = 0                       # candidates refused before evaluation by budgets
        self._remaining: list[Architecture] | None = None
        self.prior = None

    def use_prior(self, score_fn: Callable[[Architecture], float] | None) -> None:
        """Attach a prior (``Architecture -> float``, higher = predicted better), or None to drop it.

        Snapshots never contain it: re-attach it after resuming. Strategies without prior
        support ignore it.
        """
        if score_fn is not None and not callable(score_fn):
            raise TypeError("a prior must be a callable Architecture -> float")
        self.prior = score_fn

    # -- the protocol -------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        """Up to ``n`` new, distinct, admissible architectures (fewer when the space is exhausted)."""
        out: list[Architecture] = []
        for _ in range(n):
            arch = self._next()
            if arch is None:
                break
            self.mark_pending(arch)
            out.append(arch)
        return out

    def mark_pending(self, arch: Architecture) -> None:
        """Record ``arch`` as asked and running (also used when resuming a study)."""
        self._seen.add(arch.key)
        self._pending[arch.key] = arch

    def release(self, arch: Architecture) -> None:
        """Forget that ``arch`` is running here (it was not stored: another process has it, or
        the budget is spent); it stays seen, so it is not proposed again."""
        self._pending.pop(arch.key, None)

    def tell(self, trial: Trial) -> None:
        """Record a finished trial (from this strategy's ask, another worker, or a user)."""
        if not trial.state.finished:
            raise ValueError("tell() takes finished trials only")
        self._pending.pop(trial.arch.key, None)
        self._seen.add(trial.arch.key)
        self.trials.append(trial)
        self._observe(trial)

    @property
    def pending(self) -> list[Architecture]:
        """Architectures asked but not yet told (running on workers)."""
        return list(self._pending.values())

    # -- hooks ----------------------------------------------------------------------
    @abstractmethod
    def _propose(self) -> Architecture | None:
        """A candidate; may be one already seen (the base class filters it)."""

    def _observe(self, trial: Trial) -> None:
        """Learn from a finished trial (default: nothing beyond the history)."""

    # -- helpers for subclasses -----------------------------------------------------------
    def is_new(self, arch: Architecture) -> bool:
        return arch.key not in self._seen

    def admissible(self, arch: Architecture) -> bool:
        """New and not known to violate a budget; refused candidates are never asked again."""
        if arch.key in self._seen:
            return False
        if not self.problem.prefilter(arch):
            self._seen.add(arch.key)
            self.rejected += 1
            return False
        return True

    def fitness(self, trial: Trial) -> float:
        """Scalar quality for single-objective logic (higher is better, -inf if not complete).

        With several objectives this is minus the number of finished trials that
        dominate it, so single-objective strategies still favour the Pareto front.
        """
        if trial.state is not TrialState.COMPLETE:
            return -math.inf
        scores = self.problem.scores(trial.metrics)
        if len(scores) == 1:
            return scores[0]
        return -float(sum(1 for t in self.trials if t.state is TrialState.COMPLETE
                          and _dominates(self.problem.scores(t.metrics), scores)))

    def complete_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.state is TrialState.COMPLETE]

    def model_trials(self, min_points: int) -> list[Trial]:
        """Observations to fit a model on (BOHB's rule under multi-fidelity schedules).

        Without learning curves, or with at least ``min_points`` complete trials, these are
        the complete trials. Otherwise they are the results at the highest fidelity that
        at least ``min_points`` trials reached, including trials pruned later (Falkner et
        al. 2018), each presented as a complete trial at that fidelity.
        """
        complete = self.complete_trials()
        if len(complete) >= min_points or not any(t.curve for t in self.trials):
            return complete
        by_step: dict[float, list[Trial]] = {}
        for t in self.trials:
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                for step, metrics in t.curve:
                    if all(o.metric in metrics for o in self.problem.objectives):
                        by_step.setdefault(step, []).append(
                            Trial(t.number, t.arch, TrialState.COMPLETE, metrics, fidelity=step))
        for step in sorted(by_step, reverse=True):
            if len(by_step[step]) >= min_points:
                return by_step[step]
        return complete

    def _next(self) -> Architecture | None:
        for _ in range(PROPOSE_TRIES):
            cand = self._propose()
            if cand is None:
                break
            if self.admissible(cand):
                return cand
        for _ in range(RANDOM_TRIES):
            cand = self.space.sample(self.rng)
            if self.admissible(cand):
                return cand
        return self._from_remaining()

    def _from_remaining(self) -> Architecture | None:
        """Last resort in small spaces: draw from the enumerated unseen architectures."""
        if self.space.size() > ENUMERATE_LIMIT:
            return None
        if self._remaining is None:
            self._remaining = list(self.space.enumerate())
        self._remaining = [a for a in self._remaining if a.key not in self._seen]
        while self._remaining:
            arch = self._remaining.pop(int(self.rng.integers(len(self._remaining))))
            if self.admissible(arch):
                return arch
        return None

    # -- persistence ----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # The history (told trials, keys seen, pending) is left out: it grows with the study and
        # is rebuilt from the stored trials by attach(), so a snapshot stays small and cheap.
        state = dict(self.__dict__)
        state.update(problem=None, space=None, _remaining=None, trials=None, _seen=None, _pending=None, prior=None)
        return state

    def attach(self, problem: Problem, trials: Sequence[Trial] | None = None) -> None:
        """Re-bind the problem after unpickling a saved strategy state, and rebuild the history
        from ``trials`` (the stored trials the snapshot was written with): finished ones in the
        order they finished, every stored architecture seen, running ones pending."""
        self.problem = problem
        self.space = problem.space
        if trials is not None or self.trials is None:
            trials = list(trials or ())
            finished = [t for t in trials if t.state.finished]
            self.trials = sorted(finished, key=lambda t: (t.finished_at or 0.0, t.number))
            self._seen = {t.arch.key for t in trials}
            self._pending = {t.arch.key: t.arch for t in trials if not t.state.finished}


def require(condition: bool, message: str) -> None:
    """Validate a strategy option (make_strategy turns the ValueError into a one-line error)."""
    if not condition:
        raise ValueError(message)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """True when ``a`` is at least as good everywhere and better somewhere (maximisation)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))
