"""Train an ``nn.Module`` on a :class:`~archscout.training.data.TaskData` with a :class:`Recipe`.

Built for a NAS loop on a small CPU: full-batch tensors indexed directly (no DataLoader,
no worker processes), evaluation under ``torch.inference_mode`` in large batches, and a
fixed number of torch threads while training.

Training is a pure function of (initial weights, data, recipe, seed), and it is
*prefix-consistent*: training to 3 epochs and then on to 6 gives bit-identical weights and
curve to training straight to 6, also across ``state_dict()`` / ``load_state_dict()`` into
a new Trainer. Multi-fidelity strategies rely on this to continue a candidate instead of
retraining it. What makes it so:

* the data order (and the augmentation's randomness) of epoch ``e`` comes from a
  ``torch.Generator`` seeded from ``(seed, e)``, and torch's global RNG (dropout and other
  implicit draws inside the model) is reseeded from ``(seed, e)`` at the start of each
  epoch; the caller's global RNG state is restored when ``train_to`` returns;
* the learning rate is a function of the global optimizer step, defined over
  ``recipe.epochs`` (the full fidelity), never over the epochs requested so far;
* everything that changes during training (weights, optimizer moments, step, epoch,
  curve) is in ``state_dict()``.

Timings (``epoch_s``) are wall-clock and naturally differ between runs; every other curve
value is reproducible.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EvaluationError
from .data import AUGMENTATIONS, TaskData

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "step", "constant")
STEP_MILESTONES = (0.5, 0.75)   # "step" schedule: lr x0.1 after these fractions of the (post-warmup) steps
EVAL_BATCH_SIZE = 1024          # samples per forward pass when evaluating (memory, not results)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, schedule, regularisation. ``epochs`` is the full fidelity; the
    learning-rate schedule always spans that many epochs, however far a trainer gets."""

    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adamw"          # "adamw" | "adam" | "sgd" (momentum 0.9, nesterov)
    lr: float = 3e-3                  # peak learning rate (after warmup)
    weight_decay: float = 1e-4        # applied to weight matrices/kernels only, not to biases or norm scales
    schedule: str = "cosine"          # "cosine" (to ~0 at the last step) | "step" (x0.1 at 50%, 75%) | "constant"
    warmup_epochs: float = 0.0        # linear warmup from ~0 to lr over this many epochs
    label_smoothing: float = 0.0
    grad_clip: float | None = 5.0     # max global gradient L2 norm, None for no clipping
    aux_weight: float = 0.01          # weight of the modules' auxiliary losses (``aux_loss`` attributes)
    augment: str | None = None        # built-in augmentation name(s), "+"-joined ("shift+flip"), or None
    threads: int = 1                  # torch intra-op threads while training/evaluating

    def __post_init__(self) -> None:
        def bad(field: str, need: str) -> EvaluationError:
            return EvaluationError(f"recipe {field}={getattr(self, field)!r} is invalid: {need}")

        for name in ("epochs", "batch_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "needs an integer >= 1")
        for name in ("lr", "weight_decay", "warmup_epochs", "label_smoothing", "aux_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise bad(name, "needs a finite number >= 0")
        if self.lr <= 0:
            raise bad("lr", "needs a number > 0")
        if self.label_smoothing >= 1:
            raise bad("label_smoothing", "needs a number in [0, 1)")
        if self.warmup_epochs > self.epochs:
            raise bad("warmup_epochs", f"cannot exceed epochs ({self.epochs})")
        clip = self.grad_clip
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                                 or not math.isfinite(clip) or clip <= 0):
            raise bad("grad_clip", "needs a number > 0 or None")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"use one of {', '.join(SCHEDULES)}")
        if self.augment is not None:
            if not isinstance(self.augment, str):
                raise bad("augment", "needs a name or None")
            unknown = [a for a in self.augment.split("+") if a not in AUGMENTATIONS]
            if unknown:
                raise bad("augment", f"unknown augmentation {unknown[0]!r} (built-ins: {', '.join(AUGMENTATIONS)})")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        """A recipe from a config mapping (YAML/JSON/CLI): unknown keys are errors; numeric strings such
        as "3e-3" (which YAML leaves as strings) become numbers; "none"/null disable ``grad_clip``/``augment``."""
        if not isinstance(d, Mapping):
            raise EvaluationError(f"a recipe must be a mapping of settings, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise EvaluationError(f"unknown recipe setting(s) {', '.join(map(str, unknown))} "
                                  f"(known: {', '.join(fields)})")
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            kwargs[key] = _coerce(key, value)
        return cls(**kwargs)

    def replace(self, **kw: Any) -> Recipe:
        """A copy with some settings changed (validated like the constructor)."""
        unknown = sorted(set(kw) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise EvaluationError(f"unknown recipe setting(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain settings, the inverse of ``from_dict`` (for study configurations)."""
        return dataclasses.asdict(self)


_INT_FIELDS = frozenset({"epochs", "batch_size", "threads"})
_FLOAT_FIELDS = frozenset({"lr", "weight_decay", "warmup_epochs", "label_smoothing", "aux_weight", "grad_clip"})
_NONE_WORDS = frozenset({"none", "null", "off", ""})


def _coerce(key: str, value: Any) -> Any:
    """Config values to the field's type; leaves anything unconvertible for ``__post_init__`` to reject."""
    if key in ("grad_clip", "augment") and (value is None or (isinstance(value, str) and value.lower() in _NONE_WORDS)):
        return None
    if key in _FLOAT_FIELDS and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise EvaluationError(f"recipe {key}={value!r} is invalid: needs a number") from None
    if key in _INT_FIELDS and isinstance(value, float) and value.is_integer():
        return int(value)
    if key in _INT_FIELDS and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    if key in ("optimizer", "schedule") and isinstance(value, str):
        return value.lower()
    return value


def _stream_seed(seed: int, epoch: int, stream: int) -> int:
    """A well-mixed 64-bit seed for one (seed, epoch, stream): data order, augmentation, global RNG."""
    return int(np.random.SeedSequence([seed % 2**64, epoch, stream]).generate_state(1, np.uint64)[0])


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if previous != n:
            torch.set_num_threads(previous)


@contextmanager
def _preserved_global_rng() -> Iterator[None]:
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


def _chain(augments: list[Augment]) -> Augment:
    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for augment in augments:
            x = augment(x, generator)
        return x

    return apply


class Trainer:
    """Trains ``model`` on ``data`` following ``recipe``; resumable and prefix-consistent (module docstring).

    ``augment`` (a batch transform ``(x, generator) -> x``) overrides ``recipe.augment``.
    ``epoch`` counts the epochs trained; ``curve`` holds one dict per finished epoch with
    epoch, train_loss (mean task loss over the epoch's batches, without auxiliary losses),
    valid_loss, valid_acc, lr (at the epoch's last step) and epoch_s (seconds for training
    plus validation).
    """

    eval_batch_size: int = EVAL_BATCH_SIZE

    def __init__(self, model: nn.Module, data: TaskData, recipe: Recipe, seed: int = 0,
                 augment: Augment | None = None) -> None:
        self.model = model
        self.data = data
        self.recipe = recipe
        self.seed = int(seed)
        if augment is None and recipe.augment is not None:
            augment = _chain([AUGMENTATIONS[name] for name in recipe.augment.split("+")])
            if not data.x_train.is_floating_point():
                raise EvaluationError(f"augmentation {recipe.augment!r} needs float inputs; dataset {data.name!r} "
                                      "holds token ids")
        self.augment = augment
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise EvaluationError("the model has no trainable parameters")
        self._params = params
        self.device = params[0].device
        self.n_train = len(data.y_train)
        self.steps_per_epoch = math.ceil(self.n_train / recipe.batch_size)
        self.total_steps = recipe.epochs * self.steps_per_epoch
        self.warmup_steps = round(recipe.warmup_epochs * self.steps_per_epoch)
        self.optimizer = self._make_optimizer()
        self.step = 0                    # optimizer steps taken (the schedule's clock)
        self.epoch = 0
        self.curve: list[dict[str, float]] = []

    # -- schedule and optimizer ---------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        """Weight decay on weight matrices and kernels (ndim >= 2) only: decaying biases and
        normalisation scales only hurts small networks."""
        r = self.recipe
        decay = [p for p in self._params if p.ndim >= 2]
        no_decay = [p for p in self._params if p.ndim < 2]
        groups = [g for g in ({"params": decay, "weight_decay": r.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        if r.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=r.lr)
        if r.optimizer == "adam":
            return torch.optim.Adam(groups, lr=r.lr)
        return torch.optim.SGD(groups, lr=r.lr, momentum=0.9, nesterov=True)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based), defined over ``recipe.epochs``."""
        r = self.recipe
        if step < self.warmup_steps:
            return r.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if r.schedule == "cosine":
            return r.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if r.schedule == "step":
            return r.lr * 0.1 ** sum(progress >= m for m in STEP_MILESTONES)
        return r.lr

    # -- training -------------------------------------------------------------------------
    def train_to(self, epochs: int,
                 on_epoch: Callable[[int, dict[str, float]], bool] | None = None) -> list[dict[str, float]]:
        """Train from ``self.epoch`` up to ``epochs`` (<= recipe.epochs), validating after every
        epoch; ``on_epoch(epoch, metrics)`` returning True stops early. Returns the new curve entries
        (none when ``epochs <= self.epoch``)."""
        top = self.recipe.epochs
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or not 0 <= epochs <= top:
            raise EvaluationError(f"cannot train to epoch {epochs!r}: the recipe defines 0..{top} epochs")
        new: list[dict[str, float]] = []
        with torch_threads(self.recipe.threads), _preserved_global_rng():
            while self.epoch < epochs:
                entry = self._train_epoch()
                new.append(entry)
                if on_epoch is not None and on_epoch(self.epoch, dict(entry)):
                    break
        return new

    def _train_epoch(self) -> dict[str, float]:
        start = time.perf_counter()
        r, epoch = self.recipe, self.epoch
        order = torch.Generator().manual_seed(_stream_seed(self.seed, epoch, 0))
        aug_rng = torch.Generator().manual_seed(_stream_seed(self.seed, epoch, 1))
        torch.manual_seed(_stream_seed(self.seed, epoch, 2))       # dropout and other implicit draws
        batches = torch.tensor_split(torch.randperm(self.n_train, generator=order), self.steps_per_epoch)
        x_all, y_all = self.data.x_train, self.data.y_train
        modules = list(self.model.modules())
        self.model.train()
        loss_sum, lr = 0.0, r.lr
        for idx in batches:
            lr = self.lr_at(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            xb, yb = x_all[idx], y_all[idx]
            if self.augment is not None:
                xb = self.augment(xb, aug_rng)
            xb, yb = xb.to(self.device), yb.to(self.device)
            out = self.model(xb)
            self._check_output(out, len(idx))
            loss = F.cross_entropy(out, yb, label_smoothing=r.label_smoothing)
            total = loss
            aux = _aux_loss(modules)
            if aux is not None:
                total = loss + r.aux_weight * aux
            value = float(total.detach())
            if not math.isfinite(value):
                raise EvaluationError(f"training diverged at epoch {epoch + 1} (loss {value})")
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if r.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self._params, r.grad_clip)
            self.optimizer.step()
            self.step += 1
            loss_sum += float(loss.detach()) * len(idx)
        self.epoch += 1
        valid = self.evaluate("valid")
        entry = {"epoch": self.epoch, "train_loss": loss_sum / self.n_train, "valid_loss": valid["loss"],
                 "valid_acc": valid["accuracy"], "lr": lr, "epoch_s": time.perf_counter() - start}
        self.curve.append(entry)
        return entry

    def _check_output(self, out: Any, batch: int) -> None:
        if not isinstance(out, torch.Tensor) or out.shape != (batch, self.data.num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise EvaluationError(f"the model outputs {shape} for a batch of {batch}, expected "
                                  f"({batch}, {self.data.num_classes}) logits")

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, split: str = "valid") -> dict[str, float]:
        """Mean cross-entropy (no label smoothing) and accuracy of the model on ``split``
        ("train", "valid" or "test"), in eval mode; the model's train/eval mode is restored."""
        if split not in ("train", "valid", "test"):
            raise EvaluationError(f"unknown split {split!r} (use train, valid or test)")
        x, y = self.data.split(split)
        was_training = self.model.training
        self.model.eval()
        loss_sum, correct = 0.0, 0
        try:
            with torch_threads(self.recipe.threads), torch.inference_mode():
                for start in range(0, len(y), self.eval_batch_size):
                    xb = x[start:start + self.eval_batch_size].to(self.device)
                    yb = y[start:start + self.eval_batch_size].to(self.device)
                    out = self.model(xb)
                    self._check_output(out, len(yb))
                    loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
                    correct += int((out.argmax(dim=1) == yb).sum())
        finally:
            self.model.train(was_training)
        return {"loss": loss_sum / len(y), "accuracy": correct / len(y)}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A detached copy of everything training changes (model, optimizer, schedule step, epoch,
        curve) plus the seed and recipe that must match on load."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "schedule": {"step": self.step, "steps_per_epoch": self.steps_per_epoch},
            "epoch": self.epoch,
            "curve": copy.deepcopy(self.curve),
            "seed": self.seed,
            "recipe": self.recipe.to_dict(),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Continue from a ``state_dict()``: same architecture, data size, seed and recipe (threads aside)
        required, since otherwise the continued run would not be the one the checkpoint started."""
        missing = {"model", "optimizer", "schedule", "epoch", "curve", "seed", "recipe"} - set(d)
        if missing:
            raise EvaluationError(f"not a trainer checkpoint (missing {', '.join(sorted(missing))})")
        if int(d["seed"]) != self.seed:
            raise EvaluationError(f"checkpoint was trained with seed {d['seed']}, this trainer has seed {self.seed}")
        mine = self.recipe.to_dict()
        for key, value in d["recipe"].items():
            if key != "threads" and mine.get(key) != value:
                raise EvaluationError(f"checkpoint was trained with recipe {key}={value!r}, "
                                      f"this trainer has {mine.get(key)!r}")
        if int(d["schedule"]["steps_per_epoch"]) != self.steps_per_epoch:
            raise EvaluationError(f"checkpoint has {d['schedule']['steps_per_epoch']} steps per epoch, this "
                                  f"trainer {self.steps_per_epoch} (different training-set size or batch size)")
        try:
            self.model.load_state_dict(d["model"])
            self.optimizer.load_state_dict(copy.deepcopy(d["optimizer"]))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise EvaluationError(f"checkpoint does not fit this model: {exc}".splitlines()[0]) from None
        self.step = int(d["schedule"]["step"])
        self.epoch = int(d["epoch"])
        self.curve = copy.deepcopy(list(d["curve"]))


def _aux_loss(modules: list[nn.Module]) -> torch.Tensor | None:
    """Sum of the ``aux_loss`` tensors that modules (MoE, fast feed-forward load balancing) set in
    this forward pass; tensors left over from an ``inference_mode`` evaluation are skipped."""
    total = None
    for m in modules:
        aux = getattr(m, "aux_loss", None)
        if isinstance(aux, torch.Tensor) and not aux.is_inference():
            total = aux.sum() if total is None else total + aux.sum()
    return total
