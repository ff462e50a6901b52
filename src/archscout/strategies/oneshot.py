"""Weight-sharing searches as strategies: the derived architectures become ordinary trials.

``darts``, ``pc-darts``, ``gdas``, ``fbnet``, ``proxyless`` (differentiable), ``spos`` and
``bignas`` (one-shot) train a supernet of the study's space on the strategy's data the first
time they are asked, then propose their derived architecture(s), best first (``top`` of
them; for the differentiable methods' pool guard, the derived one and the next best pool
members), which the study's evaluator scores like any other trial (a tabular benchmark
looks them up, ``train`` trains them stand-alone). When the derived list is used up the
strategy proposes nothing more and the study ends.

The supernet search runs in this process and needs the torch extra (imported only then).
Its result (derived architectures, ``search_s`` and the method's own scores, such as
``supernet_acc``) is part of the strategy's snapshot, so a resumed study does not search
again. Data: ``use_data(name_or_TaskData)`` before the first ask (the CLI passes
``--dataset``, or the dataset a reference benchmark was trained on).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import ArchscoutError
from ..evaluators.base import Evaluator
from ..oneshot.base import finalists
from ..problem import Problem
from ..space import Architecture
from .base import Strategy, require


class OneShotStrategy(Strategy):
    """Base for supernet methods: search once, then propose the derived architectures in order."""

    method: ClassVar[str] = ""

    def __init__(self, problem: Problem, seed: int = 0, epochs: int = 0, batch_size: int = 64, top: int = 1,
                 threads: int = 1) -> None:
        super().__init__(problem, seed)
        require(epochs >= 0, f"epochs must be >= 0 (0: the method's default), not {epochs}")
        require(batch_size >= 1, f"batch_size must be >= 1, not {batch_size}")
        require(top >= 1, f"top must be >= 1, not {top}")
        require(threads >= 1, f"threads must be >= 1, not {threads}")
        self.epochs, self.batch_size, self.top, self.threads = epochs, batch_size, top, threads
        self.data: Any = None
        self.progress = False
        self.derived: list[dict[str, Any]] | None = None   # arch values, best first
        self.derived_scores: list[dict[str, float]] = []
        self.search_s: float | None = None
        self.info: dict[str, Any] = {}
        self._next_index = 0

    def use_data(self, data: Any, progress: bool = False) -> None:
        """The dataset (a name such as ``"mnist1d"`` or a TaskData) the supernet trains on."""
        self.data = data
        self.progress = progress

    def method_options(self) -> dict[str, Any]:
        """Keyword options for the method's runner (subclasses add theirs)."""
        out: dict[str, Any] = {"batch_size": self.batch_size, "seed": self.seed, "threads": self.threads,
                               "progress": self.progress}
        if self.epochs:
            out["epochs"] = self.epochs
        return out

    def _search(self) -> None:
        if self.data is None:
            raise ArchscoutError(f"strategy {self.name!r} needs data to train its supernet (use_data / --dataset)")
        try:
            from ..oneshot.runner import run_method
        except ImportError as exc:
            raise ArchscoutError(f"strategy {self.name!r} needs PyTorch and the torch extra ({exc}); "
                                 "pip install 'archscout[torch]'") from None
        result = run_method(self.method, self.space, self.data, constraints=[c.text for c in self.problem.constraints],
                            **self.method_options())
        # the first ``top`` derived architectures; with a candidate pool (the differentiable
        # methods' default guard) the derived one and then the next best pool members, so the
        # study's evaluator judges the finalists, as DARTS picks among its candidate cells
        chosen = finalists(self.space, result, self.top)
        self.derived = [a.to_dict() for a, _ in chosen]
        self.derived_scores = [scores for _, scores in chosen]
        self.search_s = float(result.search_s)
        self.info = _plain(result.info)

    def _propose(self) -> Architecture | None:
        if self.derived is None:
            self._search()
        while self.derived is not None and self._next_index < len(self.derived):
            arch = self.space.make(self.derived[self._next_index])
            self._next_index += 1
            if self.is_new(arch):
                return arch
        return None

    def _next(self) -> Architecture | None:
        # derived architectures are proposed even when a budget check would refuse them: the
        # study records them as infeasible, which is what the user needs to see
        return self._propose()

    def extra_metrics(self, arch: Architecture) -> dict[str, float]:
        """What the supernet search measured on ``arch`` (plus ``search_s``), for the trial's metrics."""
        out: dict[str, float] = {}
        if self.derived is None:
            return out
        key = arch.key
        for values, scores in zip(self.derived, self.derived_scores):
            if self.space.make(values).key == key:
                out.update({k: float(v) for k, v in scores.items() if isinstance(v, (int, float))})
        if self.search_s is not None:
            out["search_s"] = self.search_s
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(data=None, progress=False)
        return state


def _plain(value: Any) -> Any:
    """JSON-able copy of a result's info (numbers, text, lists, dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class _Differentiable(OneShotStrategy):
    """Options shared by the differentiable methods (see ``oneshot.differentiable.run_differentiable``):
    ``order`` (darts, pc-darts), ``guard``, ``w_lr``/``a_lr`` (0: the method's default),
    ``partial_channels`` (pc-darts; 0: default), ``latency_weight`` (fbnet, proxyless; < 0:
    default) and the pool guard's ``pool_size``, ``pool_steps`` and ``pool_repeats``. With the
    pool guard, ``top`` > 1 proposes the derived architecture and then the next best pool
    members (:func:`~archscout.oneshot.base.finalists`), for the study's evaluator to judge."""

    # Class-level defaults so snapshots pickled before these options existed still load.
    partial_channels, latency_weight = 0, -1.0
    pool_size, pool_steps, pool_repeats = 50, 1500, 1

    def __init__(self, problem: Problem, seed: int = 0, epochs: int = 0, batch_size: int = 64, top: int = 1,
                 threads: int = 1, order: int = 1, guard: str = "pool", w_lr: float = 0.0,
                 a_lr: float = 0.0, partial_channels: int = 0, latency_weight: float = -1.0,
                 pool_size: int = 50, pool_steps: int = 1500, pool_repeats: int = 1) -> None:
        super().__init__(problem, seed, epochs, batch_size, top, threads)
        require(order in (1, 2), f"order must be 1 or 2, not {order}")
        require(order == 1 or self.method in ("darts", "pc-darts"), "order=2 applies to darts and pc-darts only")
        require(guard in ("pool", "perturbation", "darts+", "none"),
                f"guard must be pool, perturbation, darts+ or none, not {guard!r}")
        require(w_lr >= 0 and a_lr >= 0, "w_lr and a_lr must be >= 0 (0: the method's default)")
        require(partial_channels >= 0, f"partial_channels must be >= 0 (0: default), not {partial_channels}")
        require(partial_channels == 0 or self.method == "pc-darts", "partial_channels applies to pc-darts only")
        require(latency_weight < 0 or self.method in ("fbnet", "proxyless"),
                "latency_weight applies to fbnet and proxyless only")
        require(pool_size >= 1 and pool_steps >= 0 and pool_repeats >= 1,
                "pool_size and pool_repeats must be >= 1, pool_steps >= 0")
        self.order, self.guard, self.w_lr, self.a_lr = order, guard, w_lr, a_lr
        self.partial_channels, self.latency_weight = partial_channels, latency_weight
        self.pool_size, self.pool_steps, self.pool_repeats = pool_size, pool_steps, pool_repeats

    def method_options(self) -> dict[str, Any]:
        out = super().method_options()
        out.update(guard=self.guard, pool_size=self.pool_size, pool_steps=self.pool_steps,
                   pool_repeats=self.pool_repeats)
        if self.method in ("darts", "pc-darts"):
            out["order"] = self.order
        if self.w_lr:
            out["w_lr"] = self.w_lr
        if self.a_lr:
            out["a_lr"] = self.a_lr
        if self.partial_channels:
            out["partial_channels"] = self.partial_channels
        if self.latency_weight >= 0:
            out["latency_weight"] = self.latency_weight
        return out


class DARTS(_Differentiable):
    name = method = "darts"
    summary = "DARTS (first/second order), collapse guard on: supernet, derived architecture as a trial"


class PCDARTS(_Differentiable):
    name = method = "pc-darts"
    summary = "PC-DARTS: partial channels + edge normalisation (cells spaces)"


class GDAS(_Differentiable):
    name = method = "gdas"
    summary = "GDAS: hard Gumbel-softmax sampling of one path per step"


class FBNet(_Differentiable):
    name = method = "fbnet"
    summary = "FBNet: Gumbel-softmax relaxation with a latency-lookup-table loss"


class ProxylessNAS(_Differentiable):
    name = method = "proxyless"
    summary = "ProxylessNAS: binarized two-path sampling with a latency term"


class SPOS(OneShotStrategy):
    name = method = "spos"
    summary = "SPOS: uniform single-path supernet, then evolution on inherited accuracy under the budgets"

    def __init__(self, problem: Problem, seed: int = 0, epochs: int = 0, batch_size: int = 64, top: int = 1,
                 threads: int = 1, search_budget: int = 100) -> None:
        super().__init__(problem, seed, epochs, batch_size, top, threads)
        require(search_budget >= 1, f"search_budget must be >= 1, not {search_budget}")
        self.search_budget = search_budget

    def method_options(self) -> dict[str, Any]:
        return {**super().method_options(), "search_budget": self.search_budget, "top": self.top}


class BigNAS(OneShotStrategy):
    name = method = "bignas"
    summary = "BigNAS/OFA: elastic supernet, sandwich rule + in-place distillation, constrained evolution"

    def __init__(self, problem: Problem, seed: int = 0, epochs: int = 0, batch_size: int = 64, top: int = 1,
                 threads: int = 1, n_random: int = 2, population: int = 16, generations: int = 5) -> None:
        super().__init__(problem, seed, epochs, batch_size, top, threads)
        require(n_random >= 0, f"n_random must be >= 0, not {n_random}")
        require(population >= 2, f"population must be >= 2, not {population}")
        require(generations >= 1, f"generations must be >= 1, not {generations}")
        self.n_random, self.population, self.generations = n_random, population, generations

    def method_options(self) -> dict[str, Any]:
        return {**super().method_options(), "top_k": self.top, "n_random": self.n_random,
                "population": self.population, "generations": self.generations}


ONESHOT_STRATEGIES: tuple[type[OneShotStrategy], ...] = (DARTS, PCDARTS, GDAS, FBNet, ProxylessNAS, SPOS, BigNAS)


class WithSearchMetrics(Evaluator):
    """Wraps the study's evaluator so a supernet strategy's own measurements of a derived
    architecture (``supernet_acc``, ``search_s`` ...) are stored with the trial's metrics.

    ``strategy`` is set once the study has its (possibly restored) strategy.
    """

    def __init__(self, inner: Evaluator, strategy: OneShotStrategy | None = None) -> None:
        self.inner = inner
        self.strategy = strategy
        self.name = inner.name
        self.metric_names = tuple(inner.metric_names) + tuple(
            m for m in ("search_s", "supernet_acc") if m not in inner.metric_names)
        self.default_objectives = inner.default_objectives

    @property
    def space(self) -> Any:
        return self.inner.space

    def __getattr__(self, name: str) -> Any:  # data, dataset, artifacts ... of the wrapped evaluator
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        metrics = dict(self.inner.evaluate(arch, fidelity))
        if self.strategy is not None:
            for key, value in self.strategy.extra_metrics(arch).items():
                metrics.setdefault(key, value)
        return metrics

    def cheap_metrics(self, arch: Architecture) -> Mapping[str, float]:
        return self.inner.cheap_metrics(arch)

    def contains(self, arch: Architecture) -> bool:
        return self.inner.contains(arch)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()
