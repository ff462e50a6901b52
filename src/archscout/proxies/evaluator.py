"""An evaluator that scores architectures by a training-free proxy, and proxy priors for strategies.

:class:`ProxyEvaluator` builds each architecture untrained (weights from ``seed``) and reports
``{proxy: score, "params": count, "flops": per sample}`` plus any requested cost metrics, in
milliseconds per architecture instead of minutes of training. Its default objective is
``<proxy>:max`` (every proxy is "higher = predicted better").

:func:`make_prior` wraps the same computation as a plain ``Architecture -> float`` function with
a per-``arch.key`` cache, the form strategies take in ``Strategy.use_prior`` (warm starts,
prior features, proxy filters).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import ArchscoutError
from ..evaluators.base import Evaluator
from ..space import Architecture, SearchSpace
from .names import check_proxy, min_batch_size

# Costs that need an extra artefact (a latency table or predictor) are not offered here.
_UNSUPPORTED_COSTS = ("lut_latency_ms", "pred_latency_ms")


class ProxyEvaluator(Evaluator):
    """Scores architectures of ``space`` by ``proxy`` on a minibatch of ``dataset``'s training split.

    ``dataset`` is a built-in name or user path (``archscout.training.data.load_dataset``, split
    by ``seed``) or a loaded ``TaskData``; ``batch_size`` samples are picked by ``seed``, which
    also seeds the network's initial weights. ``costs`` names extra cost metrics to report
    (``archscout.hardware.COST_METRICS`` except the table- and predictor-based latencies); they
    are also cheap metrics, so budgets on them are checked before a proxy is computed.
    Scores are cached per canonical architecture key.
    """

    supports_fidelity = False

    def __init__(self, space: SearchSpace, dataset: Any = "mnist1d", proxy: str = "synflow", *,
                 batch_size: int = 64, seed: int = 0, costs: Iterable[str] = ()) -> None:
        from ..build import model_family
        from ..hardware import COST_METRICS
        from ..training.data import TaskData, load_dataset

        check_proxy(proxy)
        model_family(space)  # a space without a model section fails here
        if int(batch_size) < min_batch_size(proxy):
            raise ArchscoutError(f"proxy batch_size must be >= {min_batch_size(proxy)} for {proxy}, not {batch_size}")
        self._space = space
        self.proxy = proxy
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.data = dataset if isinstance(dataset, TaskData) else load_dataset(str(dataset), seed=self.seed)
        self.costs = tuple(dict.fromkeys(str(c) for c in costs))
        for c in self.costs:
            if c not in COST_METRICS or c in _UNSUPPORTED_COSTS:
                usable = [m for m in COST_METRICS if m not in _UNSUPPORTED_COSTS]
                raise ArchscoutError(f"proxy evaluator: unsupported cost metric {c!r} (use {', '.join(usable)})")
        self.name = f"proxy:{proxy}"
        self.metric_names = tuple(dict.fromkeys((proxy, "params", "flops", *self.costs)))
        self.default_objectives = (f"{proxy}:max",)
        self._scores: dict[str, float] = {}
        self._cost_cache: dict[str, dict[str, float]] = {}

    @property
    def space(self) -> SearchSpace:
        return self._space

    def build(self, arch: Architecture) -> Any:
        """The untrained network of ``arch`` (weights from ``seed``)."""
        from ..build import build_model

        return build_model(self._space, arch, self.data.input_shape, self.data.num_classes,
                           vocab_size=self.data.vocab_size, seed=self.seed)

    def score(self, arch: Architecture, model: Any = None) -> float:
        """The proxy score of ``arch`` (cached per key)."""
        cached = self._scores.get(arch.key)
        if cached is None:
            from .scores import compute_proxy

            cached = compute_proxy(self.proxy, model if model is not None else self.build(arch), self.data,
                                   batch_size=self.batch_size, seed=self.seed)
            self._scores[arch.key] = cached
        return cached

    def _cost_metrics(self, arch: Architecture, model: Any, which: tuple[str, ...]) -> dict[str, float]:
        cached = self._cost_cache.setdefault(arch.key, {})
        missing = [c for c in which if c not in cached]
        if missing:
            from ..hardware import cost_metrics

            if model is None:
                model = self.build(arch)
            cached.update({k: float(v) for k, v in cost_metrics(model, self.data.input_shape, missing).items()})
        return {c: cached[c] for c in which}

    def cheap_metrics(self, arch: Architecture) -> dict[str, float]:
        return self._cost_metrics(arch, None, self.costs) if self.costs else {}

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        needs_model = arch.key not in self._scores or any(
            c not in self._cost_cache.get(arch.key, {}) for c in ("params", "flops", *self.costs))
        model = self.build(arch) if needs_model else None
        out = {self.proxy: self.score(arch, model)}
        out.update(self._cost_metrics(arch, model, tuple(dict.fromkeys(("params", "flops", *self.costs)))))
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "proxy": self.proxy, "dataset": self.data.name, "batch_size": self.batch_size,
                "seed": self.seed, "costs": list(self.costs)}


class ProxyPrior:
    """``Architecture -> float``: a proxy score with a per-key cache (see :func:`make_prior`)."""

    def __init__(self, evaluator: ProxyEvaluator) -> None:
        self.evaluator = evaluator

    @property
    def proxy(self) -> str:
        return self.evaluator.proxy

    def __call__(self, arch: Architecture) -> float:
        return self.evaluator.score(arch)

    def __len__(self) -> int:
        """How many architectures have been scored so far."""
        return len(self.evaluator._scores)


def make_prior(space: SearchSpace, dataset: Any, proxy: str, *, batch_size: int = 64, seed: int = 0) -> ProxyPrior:
    """A prior for ``Strategy.use_prior``: ``proxy`` of the untrained network (cached per ``arch.key``)."""
    return ProxyPrior(ProxyEvaluator(space, dataset, proxy, batch_size=batch_size, seed=seed))
