"""The evaluator contract: (architecture, fidelity) -> flat metrics dict."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..space import Architecture, SearchSpace


class Evaluator(ABC):
    """Turns architectures into metrics. ``metric_names`` lists what ``evaluate`` returns."""

    name: str = ""
    metric_names: tuple[str, ...] = ()
    default_objectives: tuple[str, ...] = ()
    supports_fidelity: bool = False  # True when ``fidelity`` (e.g. epochs) changes the evaluation

    @property
    def space(self) -> SearchSpace | None:
        """The space this evaluator defines (benchmarks), or None when the user supplies one."""
        return None

    @abstractmethod
    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        """Metrics for ``arch``; may raise (the study records the failure)."""

    def evaluate_curve(self, arch: Architecture, fidelity: float | None,
                       on_step: Callable[[float, Mapping[str, float]], bool]) -> dict[str, float]:
        """Evaluate and report intermediate metrics on the way (one call of ``on_step`` per step).

        ``on_step(step, metrics)`` returning True asks the evaluator to stop early and
        return the latest metrics. The default has no intermediate steps.
        """
        return self.evaluate(arch, fidelity)

    def cheap_metrics(self, arch: Architecture) -> Mapping[str, float]:
        """Metrics known without the expensive evaluation (costs); used to enforce budgets early."""
        return {}

    def contains(self, arch: Architecture) -> bool:
        """False when the evaluator cannot score ``arch`` at all (e.g. missing from a table)."""
        return True

    def describe(self) -> dict[str, Any]:
        """Settings that identify this evaluator in a study's configuration."""
        return {"name": self.name}


class TabularEvaluator(Evaluator):
    """An evaluator backed by a finite table of measured architectures."""

    @abstractmethod
    def entries(self) -> Iterator[tuple[Architecture, Mapping[str, float]]]:
        """Every (architecture, metrics) pair in the table, one per canonical architecture."""

    def cheap_metric_names(self) -> tuple[str, ...]:
        return ()
