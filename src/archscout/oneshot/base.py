"""What every weight-sharing or differentiable search method returns (no torch needed here)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..space import Architecture, SearchSpace


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


def pool_ranking(pool: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The members of a differentiable search's candidate pool (``info["pool"]``), best first.

    The order the pool guard picks by: members not collapsed to parameter-free ops first,
    then higher pool validation accuracy, lower validation loss, higher probability under
    the architecture weights; ties keep the pool's own order."""
    return sorted(pool, key=lambda r: (bool(r["collapsed"]), -r["valid_acc"], r["valid_loss"], -r["log_prob"]))


def finalists(space: SearchSpace, result: OneShotResult, top: int) -> list[tuple[Architecture, dict[str, float]]]:
    """Up to ``top`` architectures to evaluate, best first, each with what the search measured.

    With a candidate pool (``info["pool"]``, the differentiable methods' default guard): the
    derived architecture, then the next best pool members by :func:`pool_ranking`, each with
    its pool accuracy as ``pool_acc`` -- the finalists DARTS would train to pick among.
    Otherwise the result's own ``archs`` and ``scores``."""
    pool = result.info.get("pool")
    if not pool:
        return [(a, dict(sc)) for a, sc in zip(result.archs[:top], result.scores[:top])]
    first = result.archs[0]
    ranked = [(space.make(r["arch"]), float(r["valid_acc"])) for r in pool_ranking(pool)]
    head = dict(result.scores[0])
    rest = []
    for arch, acc in ranked:
        if arch.key == first.key:
            head["pool_acc"] = acc
        else:
            rest.append((arch, {"pool_acc": acc}))
    return [(first, head), *rest[: top - 1]]
