"""What every weight-sharing or differentiable search method returns (no torch needed here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..space import Architecture


@dataclass
class OneShotResult:
    """The outcome of one supernet search.

    ``archs`` are the derived architectures, best first (valid members of the space);
    ``scores`` holds, per architecture, what the method measured on it (for example
    ``supernet_acc``, the accuracy with inherited weights, or ``flops``). ``search_s`` is
    the wall time of the whole search in seconds (on this process's CPU threads);
    ``history`` one record per epoch (losses, accuracies, architecture-weight entropy ...);
    ``info`` method-specific facts, such as what the collapse guard did.
    """

    method: str
    archs: list[Architecture]
    scores: list[dict[str, float]]
    search_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Architecture:
        """The first derived architecture."""
        return self.archs[0]
