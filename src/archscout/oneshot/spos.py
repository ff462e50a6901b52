"""Single-path one-shot NAS (SPOS, Guo et al. 2020): uniform path sampling, then search on
inherited weights.

Training: every step samples one architecture uniformly from the space (``space.sample``,
so constraints and conditional choices are respected), runs only that path of the
:class:`~archscout.oneshot.supernet.ChoiceSupernet` and updates the weights it used.
Evaluation: a candidate inherits the supernet's weights, gets its own BatchNorm statistics
(:func:`~archscout.oneshot.bn.recalibrate_bn`) and is scored on the validation split.
Search: any archscout strategy over those inherited scores (regularised evolution by
default, as in the paper), with hard budgets on the stand-alone model's costs.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ArchscoutError
from ..space import Architecture, SearchSpace
from ..training.data import TaskData
from ..training.trainer import torch_threads
from .bn import recalibrate_bn
from .supernet import ChoiceSupernet, Path

EVAL_BATCH = 1024


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(x.shape[0], generator=generator)
    return [(x[order[i:i + batch_size]], y[order[i:i + batch_size]]) for i in range(0, x.shape[0], batch_size)]


def fair_paths(supernet: ChoiceSupernet, rng: np.random.Generator) -> list[Path]:
    """FairNAS's strictly fair sampling (Chu et al. 2021): as many paths as the widest group has
    candidates, each row visiting every one of its candidates once across them (rows with fewer
    candidates repeat some). Cells whose nodes keep ``k`` inputs fall back to uniform paths."""
    if any(g.pick for g in supernet.groups):
        return [supernet.sample_path(rng) for _ in range(max(len(g.candidates) for g in supernet.groups))]
    m = max(len(g.candidates) for g in supernet.groups)
    perms = {g.name: [np.resize(rng.permutation(len(g.candidates)), m) for _ in range(g.rows)] for g in supernet.groups}
    return [{name: [int(p[k]) for p in rows] for name, rows in perms.items()} for k in range(m)]


def train_spos(supernet: ChoiceSupernet, data: TaskData, *, epochs: int = 30, batch_size: int = 64,
               lr: float = 3e-3, weight_decay: float = 1e-4, grad_clip: float = 5.0, sampling: str = "uniform",
               seed: int = 0, threads: int = 1, progress: bool = False,
               sampler: Callable[[np.random.Generator], Path] | None = None) -> list[dict[str, float]]:
    """Train ``supernet`` with single-path sampling on ``data``'s training split.

    ``sampling="uniform"`` (SPOS): one architecture drawn uniformly from the space per step.
    ``"fair"`` (FairNAS): per step a set of paths that runs every candidate of every row once,
    gradients summed, one update (costs that many forward/backward passes per step).
    ``sampler`` replaces uniform sampling by any ``rng -> path`` draw (e.g. a few-shot
    sub-supernet that fixes one row; Zhao et al. 2021). AdamW with a cosine schedule over all
    steps. Deterministic for ``seed`` on CPU (the
    global torch RNG is restored afterwards). Returns one record per epoch: ``epoch``,
    ``train_loss`` (mean over the epoch's sampled paths), ``seconds``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ArchscoutError("SPOS needs epochs >= 1, batch_size >= 1 and lr > 0")
    if sampling not in ("uniform", "fair"):
        raise ArchscoutError(f"SPOS sampling must be 'uniform' or 'fair', not {sampling!r}")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    steps_per_epoch = math.ceil(data.x_train.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(supernet.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    history: list[dict[str, float]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="spos supernet", unit="epoch", leave=False)
    with torch.random.fork_rng(devices=[]), torch_threads(threads):
        torch.manual_seed(int(seed))
        supernet.train()
        for epoch in range(epochs):
            start, losses = time.perf_counter(), []
            for xb, yb in _batches(data.x_train, data.y_train, batch_size, gen):
                if sampling == "fair":
                    paths = fair_paths(supernet, rng)
                else:
                    paths = [sampler(rng) if sampler is not None else supernet.sample_path(rng)]
                opt.zero_grad(set_to_none=True)
                for path in paths:
                    supernet.set_path(path)
                    loss = F.cross_entropy(supernet(xb), yb)
                    loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(supernet.parameters(), grad_clip)
                opt.step()
                sched.step()
                losses.append(loss.item())
            history.append({"epoch": float(epoch + 1), "train_loss": float(np.mean(losses)),
                            "seconds": time.perf_counter() - start})
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss={history[-1]['train_loss']:.3f}")
    if bar is not None:
        bar.close()
    supernet.eval()
    return history


@torch.no_grad()
def path_accuracy(supernet: ChoiceSupernet, path: Mapping[str, Sequence[int]], data: TaskData, *,
                  split: str = "valid", recalibrate: bool = True, calib_batches: int = 8, calib_batch_size: int = 128,
                  seed: int = 0) -> float:
    """Accuracy (fraction in [0, 1]) of one path with inherited weights on ``split``.

    With ``recalibrate`` the BatchNorm statistics are first re-estimated for this path on
    ``calib_batches`` training batches (the same batches for every path, from ``seed``).
    """
    supernet.set_path(path)
    if recalibrate:
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(data.x_train.shape[0], generator=gen)[: calib_batches * calib_batch_size]
        recalibrate_bn(supernet, (data.x_train[idx[i:i + calib_batch_size]] for i in range(0, len(idx), calib_batch_size)))
    supernet.eval()
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    correct = 0
    for i in range(0, x.shape[0], EVAL_BATCH):
        correct += int((supernet(x[i:i + EVAL_BATCH]).argmax(1) == y[i:i + EVAL_BATCH]).sum())
    return correct / max(1, x.shape[0])


def inherited_accuracy(supernet: ChoiceSupernet, arch: Architecture, data: TaskData, **kwargs: Any) -> float:
    """:func:`path_accuracy` of ``arch`` (an architecture of the supernet's space)."""
    return path_accuracy(supernet, supernet.path_of(arch), data, **kwargs)


def run_spos(space: SearchSpace, data: TaskData, *, epochs: int = 30, batch_size: int = 64, lr: float = 3e-3,
             search_budget: int = 100, population: int = 20, sample_size: int = 5,
             constraints: Sequence[str] = (), top: int = 1, seed: int = 0, threads: int = 1,
             progress: bool = False) -> Any:
    """SPOS end to end: train the supernet, then regularised evolution over inherited validation
    accuracy (``search_budget`` subnets scored), under ``constraints`` such as ``"flops<=2e6"``
    on the stand-alone network's ``params``/``flops``. Returns a
    :class:`~archscout.oneshot.base.OneShotResult` with the ``top`` best architectures."""
    from .evaluator import SupernetEvaluator

    start = time.perf_counter()
    ev = SupernetEvaluator(space, data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                           progress=progress)
    ev.fit()
    ranked = ev.search(search_budget, strategy="evolution", constraints=constraints, seed=seed, progress=progress,
                       strategy_options={"population": population, "sample_size": sample_size})
    from .base import OneShotResult

    best = ranked[:top]
    return OneShotResult("spos", [a for a, _ in best], [dict(m) for _, m in best], time.perf_counter() - start,
                         history=ev.history, info={"scored": len(ranked), "search_budget": search_budget})


__all__ = ["fair_paths", "inherited_accuracy", "path_accuracy", "run_spos", "train_spos"]
