"""The training evaluator: build an architecture, train it, score it, measure what it costs.

Fidelity is epochs. Training is prefix-consistent (see :mod:`archscout.training.trainer`),
so a trial promoted by successive halving continues from its in-memory checkpoint, and
after a restart the same metrics come from training again from scratch.

Metrics (the signal is validation accuracy; test accuracy is for reporting only):

- ``valid_acc``, ``valid_loss``, ``train_loss`` (fraction, nats); ``test_acc`` /
  ``test_loss`` on the held-out split; ``epochs`` trained; ``train_s`` (seconds);
- cost metrics from :mod:`archscout.hardware` when objectives or budgets name them:
  ``params`` (count), ``flops`` / ``macs`` (per sample), ``latency_ms`` and
  ``latency_std_ms`` (measured, median and spread), ``peak_memory_mb``,
  ``lut_latency_ms`` (lookup table), ``pred_latency_ms`` (learned predictor).
  Costs need no training, so they are also "cheap metrics": hard budgets on them are
  checked before an architecture is trained.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import ArchscoutError, EvaluationError
from ..evaluators.base import Evaluator
from ..space import Architecture, SearchSpace
from .data import TaskData, load_dataset
from .trainer import Recipe, Trainer

TRAIN_METRICS = ("valid_acc", "valid_loss", "train_loss", "test_acc", "test_loss", "epochs", "train_s")
COST_METRICS = ("params", "flops", "macs", "latency_ms", "latency_std_ms", "peak_memory_mb",
                "lut_latency_ms", "pred_latency_ms")
# Top-level architecture values that override the training recipe (searchable hyperparameters).
RECIPE_KEYS = ("lr", "weight_decay", "batch_size", "optimizer", "label_smoothing", "schedule", "warmup_epochs")


class TrainingEvaluator(Evaluator):
    """Trains architectures of ``space`` on ``dataset`` with ``recipe``.

    ``costs`` names the cost metrics to compute (only those: measuring latency takes
    time). ``seeds`` > 1 trains that many times (seeds ``seed .. seed+seeds-1``) and
    averages the training metrics. ``checkpoints`` is how many trained states are kept
    in memory for promotions. ``artifacts`` is a folder where the final weights of each
    fully trained architecture are saved (``<arch key>.pt``) for export. ``progress``
    shows a per-trial bar over epochs.
    """

    name = "train"
    metric_names = TRAIN_METRICS + COST_METRICS
    default_objectives = ("valid_acc:max",)
    supports_fidelity = True

    def __init__(self, space: SearchSpace, dataset: str | TaskData = "digits", recipe: Recipe | Mapping[str, Any] | None = None,
                 seed: int = 0, seeds: int = 1, costs: Iterable[str] = (), cost_batch_size: int = 1,
                 cost_threads: int = 1, latency_table: Any = None, latency_predictor: Any = None,
                 checkpoints: int = 64, artifacts: str | None = None, progress: bool = False) -> None:
        from ..build import model_family

        model_family(space)  # a space without a model section fails here, before any training
        self._space = space
        self.data = dataset if isinstance(dataset, TaskData) else load_dataset(dataset, seed=seed)
        if recipe is None:
            recipe = Recipe()
        self.recipe = recipe if isinstance(recipe, Recipe) else Recipe.from_dict(recipe)
        self.seed, self.seeds = int(seed), int(seeds)
        if self.seeds < 1:
            raise ArchscoutError(f"seeds must be >= 1, not {seeds}")
        self.costs = tuple(dict.fromkeys(costs))
        unknown = [c for c in self.costs if c not in COST_METRICS]
        if unknown:
            raise ArchscoutError(f"unknown cost metric {unknown[0]!r} (use {', '.join(COST_METRICS)})")
        if "lut_latency_ms" in self.costs and latency_table is None:
            raise ArchscoutError("lut_latency_ms needs a latency table (archscout profile ... --out TABLE.json)")
        if "pred_latency_ms" in self.costs and latency_predictor is None:
            raise ArchscoutError("pred_latency_ms needs a latency predictor file")
        self.cost_batch_size, self.cost_threads = int(cost_batch_size), int(cost_threads)
        self.latency_table, self.latency_predictor = latency_table, latency_predictor
        self.max_checkpoints = int(checkpoints)
        self._checkpoints: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()
        self._cost_cache: dict[str, dict[str, float]] = {}
        self.artifacts = artifacts
        self.progress = progress

    @property
    def space(self) -> SearchSpace:
        return self._space

    @property
    def max_fidelity(self) -> int:
        return self.recipe.epochs

    # -- building -------------------------------------------------------------------
    def build(self, arch: Architecture, seed: int | None = None) -> Any:
        """The untrained network for ``arch`` (weights initialised from ``seed``)."""
        from ..build import build_model

        return build_model(self._space, arch, self.data.input_shape, self.data.num_classes,
                           vocab_size=self.data.vocab_size, seed=self.seed if seed is None else seed)

    def recipe_for(self, arch: Architecture) -> Recipe:
        """The recipe with the architecture's own hyperparameters (``lr``, ``batch_size`` ...) applied."""
        overrides = {k: arch.values[k] for k in RECIPE_KEYS if k in arch.values}
        return self.recipe.replace(**overrides) if overrides else self.recipe

    # -- costs ---------------------------------------------------------------------------
    def cheap_metrics(self, arch: Architecture) -> Mapping[str, float]:
        if not self.costs:
            return {}
        cached = self._cost_cache.get(arch.key)
        if cached is None:
            from ..hardware import cost_metrics

            model = self.build(arch)
            cached = cost_metrics(model, self.data.input_shape, self.costs, table=self.latency_table,
                                  predictor=self.latency_predictor, batch_size=self.cost_batch_size,
                                  threads=self.cost_threads)
            self._cost_cache[arch.key] = {k: float(v) for k, v in cached.items()}
        return dict(cached)

    # -- training --------------------------------------------------------------------------
    def evaluate(self, arch: Architecture, fidelity: float | None = None) -> dict[str, float]:
        return self.evaluate_curve(arch, fidelity, lambda _step, _metrics: False)

    def evaluate_curve(self, arch: Architecture, fidelity: float | None,
                       on_step: Callable[[float, Mapping[str, float]], bool]) -> dict[str, float]:
        epochs = self.recipe.epochs if fidelity is None else int(round(fidelity))
        if not 1 <= epochs <= self.recipe.epochs:
            raise EvaluationError(f"fidelity {fidelity} is outside 1..{self.recipe.epochs} epochs")
        recipe = self.recipe_for(arch)
        runs = [self._trainer(arch, recipe, self.seed + i) for i in range(self.seeds)]
        start = time.perf_counter()
        bar = self._bar(arch, epochs, runs[0].epoch)
        stop = False
        try:
            while not stop and runs[0].epoch < epochs:
                target = runs[0].epoch + 1
                for trainer in runs:
                    trainer.train_to(target)
                metrics = self._mean([t.curve[-1] for t in runs], ("valid_acc", "valid_loss", "train_loss"))
                metrics["epochs"] = float(target)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"valid_acc={metrics['valid_acc']:.4f}")
                for trainer in runs:
                    self._remember(arch, trainer)
                stop = bool(on_step(float(target), metrics))
        finally:
            if bar is not None:
                bar.close()
        out = self._mean([t.curve[-1] for t in runs], ("valid_acc", "valid_loss", "train_loss"))
        tests = [t.evaluate("test") for t in runs]
        out.update(test_acc=sum(m["accuracy"] for m in tests) / len(tests),
                   test_loss=sum(m["loss"] for m in tests) / len(tests),
                   epochs=float(runs[0].epoch), train_s=time.perf_counter() - start)
        out.update(self.cheap_metrics(arch))
        if self.artifacts and runs[0].epoch >= self.recipe.epochs:
            self._save_weights(arch, runs[0])
        return out

    def _trainer(self, arch: Architecture, recipe: Recipe, seed: int) -> Trainer:
        model = self.build(arch, seed)
        trainer = Trainer(model, self.data, recipe, seed=seed)
        state = self._checkpoints.get((arch.to_json(), seed))
        if state is not None:
            trainer.load_state_dict(state)
            self._checkpoints.move_to_end((arch.to_json(), seed))
        return trainer

    def _remember(self, arch: Architecture, trainer: Trainer) -> None:
        if self.max_checkpoints <= 0:
            return
        # keyed by the exact values: equivalent architectures (same key) may differ in dead,
        # parameterised ops, so one's weights need not fit the other's network
        self._checkpoints[(arch.to_json(), trainer.seed)] = trainer.state_dict()
        self._checkpoints.move_to_end((arch.to_json(), trainer.seed))
        while len(self._checkpoints) > self.max_checkpoints:
            self._checkpoints.popitem(last=False)

    def trained_model(self, arch: Architecture) -> Any:
        """The fully trained network for ``arch`` (from saved weights when present, else trained now)."""
        import torch

        model = self.build(arch)
        if self.artifacts:
            from pathlib import Path

            path = Path(self.artifacts) / f"{arch.key}.pt"
            if path.exists():
                model.load_state_dict(torch.load(path, weights_only=True))
                return model.eval()
        trainer = self._trainer(arch, self.recipe_for(arch), self.seed)
        trainer.train_to(self.recipe.epochs)
        return trainer.model.eval()

    def _save_weights(self, arch: Architecture, trainer: Trainer) -> None:
        import torch
        from pathlib import Path

        folder = Path(self.artifacts)  # type: ignore[arg-type]
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{arch.key}.pt.tmp"
        torch.save(trainer.model.state_dict(), tmp)
        tmp.replace(folder / f"{arch.key}.pt")

    @staticmethod
    def _mean(rows: list[Mapping[str, float]], keys: tuple[str, ...]) -> dict[str, float]:
        out = {}
        for k in keys:
            vals = [float(r[k]) for r in rows if k in r]
            out[k] = sum(vals) / len(vals) if vals else math.nan
        return out

    def _bar(self, arch: Architecture, total: int, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=f"  trial {arch.key[:8]}", unit="epoch", leave=False,
                    position=1, dynamic_ncols=True, disable=None)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.data.describe(), "recipe": self.recipe.to_dict(),
                "seed": self.seed, "seeds": self.seeds, "costs": list(self.costs),
                "cost_batch_size": self.cost_batch_size, "cost_threads": self.cost_threads}
