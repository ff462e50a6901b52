"""Trial records: one architecture, its metrics and its fate."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .space import Architecture


class TrialState(str, enum.Enum):
    RUNNING = "running"        # asked, not yet finished (re-run on resume)
    COMPLETE = "complete"      # evaluated, metrics recorded
    FAILED = "failed"          # evaluation raised, timed out or returned non-finite metrics
    INFEASIBLE = "infeasible"  # evaluated but violates a constraint on its metrics
    PRUNED = "pruned"          # stopped at a lower fidelity (successive halving, early stopping)

    @property
    def finished(self) -> bool:
        return self is not TrialState.RUNNING


@dataclass(frozen=True)
class Trial:
    """An immutable record. ``number`` counts trials of one study from 0.

    Times are UNIX seconds; ``duration_s`` is evaluation wall time in seconds.
    ``fidelity`` is the budget the metrics were measured at (epochs for training, None
    when the evaluator has a single fidelity); ``curve`` holds the metrics reported at
    each fidelity step on the way (the learning curve), steps ascending.
    """

    number: int
    arch: Architecture
    state: TrialState
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    fidelity: float | None = None
    curve: tuple[tuple[float, Mapping[str, float]], ...] = ()

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "arch": self.arch.to_dict(), "key": self.arch.key, "state": self.state.value,
                "metrics": dict(self.metrics), "error": self.error, "duration_s": self.duration_s,
                "fidelity": self.fidelity}
