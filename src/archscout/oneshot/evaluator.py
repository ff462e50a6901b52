"""``--evaluator supernet``: score architectures with weights inherited from a trained supernet.

The supernet (a :class:`~archscout.oneshot.supernet.ChoiceSupernet` of the user's space) is
trained once with SPOS uniform path sampling, on first use or by :meth:`fit`; afterwards
every evaluation is a BatchNorm recalibration plus one pass over the validation split
(milliseconds to a second), so any archscout strategy can search on it. The costs of the
stand-alone network (``params``, ``flops``) are cheap metrics, so hard budgets on them are
enforced before an architecture is scored.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ArchscoutError
from ..evaluators.base import Evaluator
from ..space import Architecture, SearchSpace
from ..training.data import TaskData, load_dataset

SUPERNET_METRICS = ("supernet_acc", "params", "flops")
SUPERNET_COSTS = ("params", "flops")


class SupernetEvaluator(Evaluator):
    """Inherited-weight validation accuracy (``supernet_acc``, a fraction) of architectures.

    ``epochs``, ``batch_size``, ``lr`` configure the SPOS supernet training; ``calib_batches``
    (of 128 training samples) the BatchNorm recalibration per architecture. ``history``
    holds the supernet's per-epoch training log and ``train_s`` its wall seconds.
    """

    name = "supernet"
    metric_names = SUPERNET_METRICS
    default_objectives = ("supernet_acc:max",)

    def __init__(self, space: SearchSpace, dataset: str | TaskData = "mnist1d", *, epochs: int = 30,
                 batch_size: int = 64, lr: float = 3e-3, calib_batches: int = 8, sampling: str = "uniform",
                 seed: int = 0, threads: int = 1, progress: bool = False) -> None:
        from ..build import model_family

        model_family(space)
        self._space = space
        self.data = dataset if isinstance(dataset, TaskData) else load_dataset(dataset, seed=seed)
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.calib_batches, self.seed, self.threads = int(calib_batches), int(seed), int(threads)
        self.progress, self.sampling = progress, sampling
        self.supernet: Any = None
        self.history: list[dict[str, float]] = []
        self.train_s = 0.0
        self._costs: dict[str, dict[str, float]] = {}

    @property
    def space(self) -> SearchSpace:
        return self._space

    def fit(self) -> SupernetEvaluator:
        """Build and train the supernet now (idempotent)."""
        if self.supernet is None:
            from .spos import train_spos
            from .supernet import build_supernet

            start = time.perf_counter()
            net = build_supernet(self._space, self.data.input_shape, self.data.num_classes, seed=self.seed)
            self.history = train_spos(net, self.data, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                      sampling=self.sampling, seed=self.seed, threads=self.threads, progress=self.progress)
            self.supernet = net
            self.train_s = time.perf_counter() - start
        return self

    def cheap_metrics(self, arch: Architecture) -> Mapping[str, float]:
        cached = self._costs.get(arch.key)
        if cached is None:
            from ..build import build_model
            from ..hardware import count_flops, count_params

            model = build_model(self._space, arch, self.data.input_shape, self.data.num_classes,
                                vocab_size=self.data.vocab_size, seed=0)
            cached = {"params": float(count_params(model)), "flops": float(count_flops(model, self.data.input_shape))}
            self._costs[arch.key] = cached
        return dict(cached)

    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        from ..training.trainer import torch_threads
        from .spos import inherited_accuracy

        self.fit()
        with torch_threads(self.threads):
            acc = inherited_accuracy(self.supernet, arch, self.data, calib_batches=self.calib_batches, seed=self.seed)
        return {"supernet_acc": acc, **self.cheap_metrics(arch)}

    def search(self, budget: int, *, strategy: str = "evolution", constraints: Sequence[str] = (), seed: int = 0,
               progress: bool = False, strategy_options: Mapping[str, Any] | None = None
               ) -> list[tuple[Architecture, dict[str, float]]]:
        """Run an in-memory archscout study of ``budget`` architectures on inherited accuracy;
        the feasible results, best first."""
        from ..problem import Problem, parse_constraints, parse_objectives
        from ..strategies import make_strategy
        from ..study import Study
        from ..trial import TrialState

        cons = parse_constraints(list(constraints))
        problem = Problem(self._space, parse_objectives(["supernet_acc:max"]), cons, cheap_metrics=self.cheap_metrics)
        options = dict(strategy_options or {})
        if strategy == "evolution" and "population" in options:
            options["population_size"] = options.pop("population")
        study = Study(problem, make_strategy(strategy, problem, seed, **options), self)
        study.check_constraints_possible()
        self.fit()
        study.optimize(budget, progress=progress)
        done = [t for t in study.trials.values() if t.state is TrialState.COMPLETE and problem.feasible_metrics(t.metrics)]
        if not done:
            raise ArchscoutError("the supernet search found no architecture within the budgets")
        done.sort(key=lambda t: -t.metrics["supernet_acc"])
        return [(t.arch, dict(t.metrics)) for t in done]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "method": "spos", "dataset": self.data.name, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "sampling": self.sampling, "calib_batches": self.calib_batches, "seed": self.seed}


__all__ = ["SUPERNET_METRICS", "SupernetEvaluator"]
