"""Multi-fidelity schedules and early stopping over learning curves.

Fidelity is the evaluator's budget per architecture: epochs for the training evaluator.
A schedule runs *brackets*: ``n`` new architectures are evaluated at a low fidelity, the
best ``1/eta`` go on to ``eta`` times the fidelity, and so on up to the full fidelity
(successive halving, Jamieson & Talwalkar 2016). Hyperband (Li et al. 2017) cycles through
brackets that start at different fidelities, hedging against low-fidelity results that
mislead. With a training evaluator that keeps its checkpoints, a promoted architecture
continues training where it stopped instead of starting again.

A bracket's state is only ``(first trial number, size, rungs)``; everything else (which
trial reached which rung, with what result) is read back from the stored learning
curves, so a bracket interrupted by a crash resumes with the same decisions.

:class:`CurveStopper` stops single trials early from their partial learning curves.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ArchscoutError


@dataclass(frozen=True)
class Rung:
    """Evaluate the best ``keep`` architectures of the previous rung at ``fidelity``."""

    keep: int
    fidelity: float


@dataclass(frozen=True)
class Bracket:
    """Trials ``first .. first+size-1`` of a study, run through ``rungs`` in order."""

    first: int
    size: int
    rungs: tuple[Rung, ...]

    def members(self) -> range:
        return range(self.first, self.first + self.size)


class Schedule:
    """A sequence of successive-halving brackets over fidelities ``min_fidelity .. max_fidelity``."""

    name = ""

    def __init__(self, min_fidelity: float, max_fidelity: float, eta: float = 3.0) -> None:
        if not (max_fidelity > 0 and 0 < min_fidelity <= max_fidelity):
            raise ArchscoutError(f"fidelities must satisfy 0 < min ({min_fidelity}) <= max ({max_fidelity})")
        if eta <= 1:
            raise ArchscoutError(f"eta must be > 1, not {eta}")
        self.min_fidelity, self.max_fidelity, self.eta = float(min_fidelity), float(max_fidelity), float(eta)
        # number of halvings from the lowest fidelity to the full one
        self.s_max = int(math.floor(math.log(self.max_fidelity / self.min_fidelity, self.eta) + 1e-9))

    def ladder(self, s: int) -> list[float]:
        """Fidelities of a bracket with ``s`` halvings, ending at the full fidelity (whole units when possible)."""
        out = []
        for i in range(s + 1):
            f = self.max_fidelity * self.eta ** (i - s)
            out.append(float(round(f)) if self.max_fidelity == round(self.max_fidelity) and f >= 1 else f)
        return out

    def bracket_shape(self, index: int) -> tuple[int, int]:
        """(halvings s, initial size n) of the ``index``-th bracket of this schedule."""
        raise NotImplementedError

    def bracket(self, index: int, first: int, limit: int) -> Bracket:
        """The ``index``-th bracket, starting at trial ``first``, with at most ``limit`` architectures."""
        s, n = self.bracket_shape(index)
        n = max(1, min(n, limit))
        fids = self.ladder(s)
        rungs = []
        for i, f in enumerate(fids):
            keep = max(1, int(math.floor(n / self.eta ** i + 1e-9)))
            rungs.append(Rung(keep, f))
        return Bracket(first, n, tuple(rungs))

    def bracket_index(self, architectures_started: int) -> int:
        """Which bracket comes next once ``architectures_started`` trials have been asked."""
        index, total = 0, 0
        while total < architectures_started:
            total += self.bracket_shape(index)[1]
            index += 1
        return index

    def describe(self) -> dict[str, float | str]:
        return {"schedule": self.name, "min_fidelity": self.min_fidelity, "max_fidelity": self.max_fidelity,
                "eta": self.eta}


class SuccessiveHalving(Schedule):
    """Brackets of ``n`` architectures from ``min_fidelity`` up, keeping the best ``1/eta`` per rung.

    ``n`` defaults to ``eta ** s_max`` (one survivor reaches the full fidelity).
    """

    name = "sh"

    def __init__(self, min_fidelity: float, max_fidelity: float, eta: float = 3.0, n: int | None = None) -> None:
        super().__init__(min_fidelity, max_fidelity, eta)
        self.n = int(n) if n is not None else int(round(self.eta ** self.s_max))
        if self.n < 1:
            raise ArchscoutError(f"a bracket needs at least one architecture, not {n}")

    def bracket_shape(self, index: int) -> tuple[int, int]:
        return self.s_max, self.n


class Hyperband(Schedule):
    """Hyperband: brackets with ``s = s_max .. 0`` halvings in turn, sized as in Li et al. (2017)."""

    name = "hyperband"

    def bracket_shape(self, index: int) -> tuple[int, int]:
        s = self.s_max - index % (self.s_max + 1)
        n = int(math.ceil((self.s_max + 1) / (s + 1) * self.eta ** s))
        return s, n


def make_schedule(name: str, min_fidelity: float, max_fidelity: float, eta: float = 3.0) -> Schedule | None:
    """``none``, ``sh`` (successive halving) or ``hyperband``."""
    if name in ("none", "", None):
        return None
    if name in ("sh", "successive-halving"):
        return SuccessiveHalving(min_fidelity, max_fidelity, eta)
    if name == "hyperband":
        return Hyperband(min_fidelity, max_fidelity, eta)
    raise ArchscoutError(f"unknown multi-fidelity schedule {name!r}; use none, sh or hyperband")


def rank_for_rung(candidates: Sequence[int], results: Mapping[int, float | None], keep: int) -> list[int]:
    """The ``keep`` best trial numbers by ``results`` (higher is better; None = failed, never kept).

    Ties break towards the earlier trial so decisions are reproducible.
    """
    scored = [(results[n], n) for n in candidates if results.get(n) is not None and math.isfinite(results[n])]
    scored.sort(key=lambda p: (-p[0], p[1]))
    return [n for _, n in scored[:keep]]


class CurveStopper:
    """Stops hopeless trials from their partial learning curves.

    Two rules, each applied after ``grace`` steps and only once ``min_trials`` finished
    trials give a reference:

    - *median rule* (Golovin et al., Vizier 2017): stop when the trial's best score so far
      is below the median of what finished trials had reached at the same step;
    - *curve extrapolation*: fit ``score = a + b * log(step)`` to the curve so far and stop
      when even the optimistic extrapolation to the full fidelity (plus ``margin``) stays
      below the best final score seen.

    Scores are "higher is better" (objective scores, not raw metrics).
    """

    def __init__(self, max_fidelity: float, grace: float = 2, min_trials: int = 5, margin: float = 0.0,
                 rules: tuple[str, ...] = ("median", "extrapolate")) -> None:
        unknown = set(rules) - {"median", "extrapolate"}
        if unknown:
            raise ArchscoutError(f"unknown early-stopping rule {sorted(unknown)[0]!r}; use median or extrapolate")
        self.max_fidelity, self.grace, self.min_trials = float(max_fidelity), float(grace), int(min_trials)
        self.margin, self.rules = float(margin), tuple(rules)

    def should_stop(self, curve: Sequence[tuple[float, float]], finished: Sequence[Sequence[tuple[float, float]]]) -> bool:
        """``curve``: this trial's (step, score); ``finished``: curves of trials that ran to the full fidelity."""
        if not curve or curve[-1][0] < self.grace or curve[-1][0] >= self.max_fidelity:
            return False
        if len(finished) < self.min_trials:
            return False
        step = curve[-1][0]
        best_now = max(v for _, v in curve)
        if "median" in self.rules:
            at_step = [max((v for s, v in c if s <= step), default=-math.inf) for c in finished]
            if best_now < float(np.median(at_step)):
                return True
        if "extrapolate" in self.rules and len(curve) >= 3:
            steps = np.log(np.array([s for s, _ in curve], dtype=float))
            vals = np.array([v for _, v in curve], dtype=float)
            slope, intercept = np.polyfit(steps, vals, 1)
            projected = intercept + max(slope, 0.0) * math.log(self.max_fidelity)
            best_final = max(c[-1][1] for c in finished)
            if max(projected, best_now) + self.margin < best_final:
                return True
        return False
