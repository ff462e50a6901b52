"""NAS-Bench-Graph (Qin et al., NeurIPS 2022 Datasets & Benchmarks) from its PyPI package.

The space: a 4-node computing DAG; node ``i`` takes one input from the graph input or
an earlier node and applies one of 9 GNN operations (5 for ``proteins``); leaves feed
the output. 26,206 distinct architectures (2,021 for proteins). Metrics keep the
benchmark's names: ``valid_perf`` (validation accuracy, the search signal), ``perf``
(test accuracy; report only), ``latency`` (seconds per inference pass), ``para``
(parameters, millions). ``latency`` and ``para`` are costs known without training, so
budgets on them are enforced before evaluation.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..errors import UnknownNameError
from ..space import Architecture, Cell, SearchSpace, register_equivalence
from .base import TabularEvaluator

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")
OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
PROTEINS_OPS = ("gcn", "sage", "arma", "fc", "skip")


def _arch_module() -> Any:
    try:
        from nas_bench_graph import architecture
    except ImportError:  # pragma: no cover - a hard dependency, but say so clearly
        raise UnknownNameError("nas-bench-graph is not installed (pip install nas-bench-graph)") from None
    return architecture


def _benchmark_hash(cell: Cell, nodes: Sequence[Mapping[str, Any]]) -> int:
    """The benchmark's own identity of a cell: its ``Arch.valid_hash`` (equivalent
    link/op orderings and skip placements collapse exactly as the benchmark defines)."""
    arch = _arch_module().Arch([n["inputs"][0] for n in nodes], [n["op"] for n in nodes])
    return int(arch.valid_hash())


def _decode(h: int) -> list[dict[str, Any]]:
    """The benchmark's representative of hash ``h``: its link-pattern index, then one
    base-10 digit per op (index into the full op list)."""
    link = _arch_module().link_list[h // 10_000]
    return [{"inputs": [lk], "op": OPS[int(d)]} for lk, d in zip(link, f"{h % 10_000:04d}")]


def _representative(cell: Cell, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _decode(_benchmark_hash(cell, nodes))


register_equivalence("nasbench-graph", _benchmark_hash, _representative)


def nasbench_graph_space(dataset: str = "cora") -> SearchSpace:
    """The NAS-Bench-Graph space (``proteins`` uses its reduced op set)."""
    ops = PROTEINS_OPS if dataset == "proteins" else OPS
    cell = Cell("cell", nodes=4, ops=list(ops), inputs=1, op_on="node", cell_inputs=1,
                identity_ops=["skip"], output="leaves", equivalence="nasbench-graph")
    return SearchSpace([cell], name=f"nasbench-graph-{'proteins' if dataset == 'proteins' else 'default'}")


@lru_cache(maxsize=None)
def _load(dataset: str) -> dict[int, dict[str, float]]:
    try:
        from nas_bench_graph import light_read
    except ImportError:  # pragma: no cover
        raise UnknownNameError("nas-bench-graph is not installed (pip install nas-bench-graph)") from None
    raw = light_read(dataset)
    return {int(k): {m: float(v) for m, v in rec.items()} for k, rec in raw.items()}


class NasBenchGraph(TabularEvaluator):
    """Look-ups in the light NAS-Bench-Graph tables (no training, no network)."""

    metric_names = ("valid_perf", "perf", "latency", "para")
    default_objectives = ("valid_perf:max",)

    def __init__(self, dataset: str = "cora") -> None:
        if dataset not in DATASETS:
            raise UnknownNameError(f"unknown NAS-Bench-Graph dataset {dataset!r} (choose from {', '.join(DATASETS)})")
        self.dataset = dataset
        self.name = f"nasbench-graph:{dataset}"
        self._space = nasbench_graph_space(dataset)
        self._table = _load(dataset)

    @property
    def space(self) -> SearchSpace:
        return self._space

    def _record(self, arch: Architecture) -> dict[str, float] | None:
        return self._table.get(_benchmark_hash(self._space.params[0], arch["cell"]))  # type: ignore[arg-type]

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        rec = self._record(arch)
        if rec is None:
            raise KeyError(f"architecture {arch.to_json()} is not in {self.name}")
        return dict(rec)

    def cheap_metrics(self, arch: Architecture) -> Mapping[str, float]:
        rec = self._record(arch)
        return {"latency": rec["latency"], "para": rec["para"]} if rec else {}

    def cheap_metric_names(self) -> tuple[str, ...]:
        return ("latency", "para")

    def contains(self, arch: Architecture) -> bool:
        return self._record(arch) is not None

    def entries(self) -> Iterator[tuple[Architecture, Mapping[str, float]]]:
        for arch in _enumerated(self.dataset):
            rec = self._record(arch)
            if rec is not None:
                yield arch, rec

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


@lru_cache(maxsize=None)
def _enumerated(dataset: str) -> tuple[Architecture, ...]:
    """One architecture per table entry, decoded from the benchmark's hash."""
    space = nasbench_graph_space(dataset)
    return tuple(space.make({"cell": _decode(h)}) for h in sorted(_load(dataset)))
