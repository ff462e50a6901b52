"""What a search optimises: a space, named objectives, and hard budgets."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ArchscoutError
from .space import Architecture, SearchSpace
from .space.constraints import Constraint

CheapMetrics = Callable[[Architecture], Mapping[str, float]]


@dataclass(frozen=True)
class Objective:
    """A metric name and whether to maximise it."""

    metric: str
    maximize: bool = True

    @classmethod
    def parse(cls, text: str) -> "Objective":
        """Read ``name:max`` or ``name:min`` (a bare name means max)."""
        name, _, direction = str(text).partition(":")
        direction = direction.strip().lower() or "max"
        if not name.strip() or direction not in ("max", "min", "maximize", "minimize"):
            raise ArchscoutError(f"objective {text!r} must look like 'metric:max' or 'metric:min'")
        return cls(name.strip(), direction.startswith("max"))

    def __str__(self) -> str:
        return f"{self.metric}:{'max' if self.maximize else 'min'}"

    def score(self, metrics: Mapping[str, Any]) -> float:
        """The metric oriented for maximisation (-inf when missing or not finite)."""
        try:
            v = float(metrics[self.metric])
        except (KeyError, TypeError, ValueError):
            return -math.inf
        if not math.isfinite(v):
            return -math.inf
        return v if self.maximize else -v


@dataclass
class Problem:
    """A search space, objectives and constraints, plus an optional cheap-metric oracle.

    ``cheap_metrics`` returns metrics known *before* an expensive evaluation (latency
    from a lookup table, parameter counts, a tabular benchmark's stored costs); any
    constraint it can decide is applied before evaluation, so a known violator is
    never evaluated. ``admissible`` is an extra membership test (e.g. "present in the
    tabular benchmark").
    """

    space: SearchSpace
    objectives: list[Objective]
    constraints: list[Constraint] = field(default_factory=list)
    cheap_metrics: CheapMetrics | None = None
    admissible: Callable[[Architecture], bool] | None = None

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ArchscoutError("at least one objective is needed")
        names = [o.metric for o in self.objectives]
        if len(set(names)) != len(names):
            raise ArchscoutError("an objective is listed twice")

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def scores(self, metrics: Mapping[str, Any]) -> tuple[float, ...]:
        """Objective values oriented for maximisation."""
        return tuple(o.score(metrics) for o in self.objectives)

    def feasible_metrics(self, metrics: Mapping[str, Any]) -> bool:
        """True when all constraints hold for these metrics."""
        return all(c(metrics) for c in self.constraints)

    def prefilter(self, arch: Architecture) -> bool:
        """False when the architecture is known to be inadmissible before evaluating it."""
        if self.admissible is not None and not self.admissible(arch):
            return False
        if self.constraints and self.cheap_metrics is not None:
            cheap = self.cheap_metrics(arch)
            for c in self.constraints:
                if c.can_check(cheap) and not c(cheap):
                    return False
        return True


def parse_objectives(texts: Sequence[str]) -> list[Objective]:
    return [Objective.parse(t) for t in texts]


def parse_constraints(texts: Sequence[str]) -> list[Constraint]:
    return [Constraint(t) for t in texts]
