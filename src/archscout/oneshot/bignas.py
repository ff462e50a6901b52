"""BigNAS / OFA on an elastic macro supernet: sandwich training, BN recalibration, constrained evolution.

The pipeline (:func:`run_bignas`):

1. :func:`train_bignas` trains an :class:`~archscout.oneshot.elastic.ElasticMacroSupernet` with the
   *sandwich rule* (Yu et al., BigNAS / slimmable networks): every step trains the largest subnet
   on the labels, then the smallest and ``n_random`` random subnets on the largest's soft
   predictions (in-place distillation, KL divergence), accumulating the gradients of all of them
   before one optimizer step.
2. :func:`recalibrate_bn` re-estimates the BatchNorm statistics of one subnet on training batches
   (the shared running statistics are a mixture over all subnets trained), as OFA does before
   every evaluation; :func:`subnet_accuracy` scores a subnet with inherited weights.
3. :func:`evolve` searches the trained supernet with OFA's constrained evolution: hard budgets
   (``{"flops": 2e6}``, ``{"params": 5e4}``, ``{"lut_latency_ms": 0.3}`` ...) are checked on the
   stand-alone model's costs first, and only feasible candidates are ever scored (inherited
   valid accuracy after BN recalibration).

Everything is deterministic for a seed (data order and subnet draws come from seeded
generators; the caller's global torch RNG is not used). Times are wall-clock seconds.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..build import build_model
from ..errors import ArchscoutError, EvaluationError, SpaceError
from ..space import Architecture, SearchSpace
from ..space.constraints import Constraint
from ..training.data import TaskData
from ..training.trainer import torch_threads
from .base import OneShotResult
from .elastic import ElasticMacroSupernet

CostFn = Callable[[Architecture], Mapping[str, float]]
EVAL_BATCH_SIZE = 1024


def _seed_of(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, epoch, stream ...)."""
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _device(supernet: ElasticMacroSupernet) -> torch.device:
    return next(supernet.parameters()).device


# -- training ------------------------------------------------------------------------------------

def train_bignas(supernet: ElasticMacroSupernet, data: TaskData, *, epochs: int = 3, batch_size: int = 64,
                 lr: float = 3e-3, weight_decay: float = 1e-4, n_random: int = 2, distill: bool = True,
                 grad_clip: float | None = 5.0, seed: int = 0, threads: int = 1, eval_recalibrate: bool = True,
                 progress: bool = False) -> dict[str, Any]:
    """Sandwich-rule training of ``supernet`` on ``data`` (module docstring); the weights change in place.

    AdamW (decay on kernels/matrices only) with a cosine learning rate from ``lr`` to ~0 over
    all steps; gradients of the 2 + ``n_random`` subnets of a step are summed and clipped to
    global norm ``grad_clip``. The largest subnet's loss is cross-entropy; the others' is
    KL(largest's softmax || subnet's softmax) with ``distill`` or cross-entropy without it.

    Returns ``{"history": [...], "seconds": s, "steps": n}``; one history record per epoch with
    ``epoch``, ``loss_largest`` (mean CE of the largest), ``loss_others`` (mean distillation/CE
    loss of the other subnets), ``valid_acc_largest``, ``valid_acc_smallest`` (inherited weights,
    BN recalibrated when ``eval_recalibrate``), ``lr`` (last step) and ``epoch_s``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise EvaluationError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EvaluationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise EvaluationError(f"n_random must be an integer >= 0, got {n_random!r}")
    if not lr > 0:
        raise EvaluationError(f"lr must be > 0, got {lr!r}")
    _check_data(supernet, data)
    device = _device(supernet)
    params = [p for p in supernet.parameters() if p.requires_grad]
    groups = [g for g in ({"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                          {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    n_train = len(data.y_train)
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = epochs * steps_per_epoch
    largest, smallest = supernet.largest(), supernet.smallest()
    history: list[dict[str, float]] = []
    step = 0
    start = time.perf_counter()
    with torch_threads(threads):
        for epoch in range(epochs):
            t0 = time.perf_counter()
            order = torch.Generator().manual_seed(_seed_of(seed, epoch, 0))
            arch_rng = np.random.default_rng(_seed_of(seed, epoch, 1))
            batches = torch.tensor_split(torch.randperm(n_train, generator=order), steps_per_epoch)
            supernet.train()
            sum_largest, sum_others, n_others = 0.0, 0.0, 0
            cur_lr = lr
            for idx in batches:
                cur_lr = lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
                for group in optimizer.param_groups:
                    group["lr"] = cur_lr
                xb, yb = data.x_train[idx].to(device), data.y_train[idx].to(device)
                optimizer.zero_grad(set_to_none=True)
                supernet.set_active(largest)
                logits = supernet(xb)
                loss = F.cross_entropy(logits, yb)
                _check_finite(loss, epoch)
                loss.backward()
                sum_largest += float(loss.detach()) * len(idx)
                soft = F.softmax(logits.detach(), dim=1)
                for arch in [smallest] + [supernet.sample(arch_rng) for _ in range(n_random)]:
                    supernet.set_active(arch)
                    out = supernet(xb)
                    if distill:
                        sub_loss = F.kl_div(F.log_softmax(out, dim=1), soft, reduction="batchmean")
                    else:
                        sub_loss = F.cross_entropy(out, yb)
                    _check_finite(sub_loss, epoch)
                    sub_loss.backward()
                    sum_others += float(sub_loss.detach()) * len(idx)
                    n_others += len(idx)
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                optimizer.step()
                step += 1
            entry = {"epoch": epoch + 1, "loss_largest": sum_largest / n_train,
                     "loss_others": sum_others / n_others if n_others else float("nan"),
                     "valid_acc_largest": subnet_accuracy(supernet, largest, data, recalibrate=eval_recalibrate,
                                                          seed=seed),
                     "valid_acc_smallest": subnet_accuracy(supernet, smallest, data, recalibrate=eval_recalibrate,
                                                           seed=seed),
                     "lr": cur_lr, "epoch_s": time.perf_counter() - t0}
            history.append(entry)
            if progress:
                print(f"bignas epoch {epoch + 1}/{epochs}: loss {entry['loss_largest']:.4f} "
                      f"(others {entry['loss_others']:.4f}), valid acc largest {entry['valid_acc_largest']:.4f} "
                      f"smallest {entry['valid_acc_smallest']:.4f}, {entry['epoch_s']:.1f} s", flush=True)
    supernet.set_active(largest)
    return {"history": history, "seconds": time.perf_counter() - start, "steps": step}


def _check_finite(loss: torch.Tensor, epoch: int) -> None:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise EvaluationError(f"supernet training diverged at epoch {epoch + 1} (loss {value})")


def _check_data(supernet: ElasticMacroSupernet, data: TaskData) -> None:
    if tuple(data.input_shape) != tuple(supernet.input_shape) or data.num_classes != supernet.num_classes:
        raise EvaluationError(f"dataset {data.name!r} has inputs {tuple(data.input_shape)} and {data.num_classes} "
                              f"classes; the supernet was built for {tuple(supernet.input_shape)} and "
                              f"{supernet.num_classes}")


# -- BN recalibration and scoring ------------------------------------------------------------------

def recalibrate_bn(supernet: ElasticMacroSupernet, arch: Architecture | Mapping[str, Any], data: TaskData, *,
                   batches: int = 8, batch_size: int = 256, seed: int = 0) -> int:
    """Reset and re-estimate the BN running statistics of subnet ``arch`` (made active) from training data.

    Runs ``batches`` forwards of ``batch_size`` training samples (a seeded random subset; fewer
    when the split is smaller) normalising with batch statistics, and writes each BN layer's
    sample-weighted mean batch mean and (unbiased) variance into the active prefix of its
    running statistics. Layers outside the subnet and channels beyond the active widths keep
    theirs. Returns the number of BN layers recalibrated.
    """
    if batches < 1 or batch_size < 1:
        raise EvaluationError(f"recalibrate_bn needs batches >= 1 and batch_size >= 1, got {batches}, {batch_size}")
    supernet.set_active(arch)
    device = _device(supernet)
    n = len(data.y_train)
    gen = torch.Generator().manual_seed(_seed_of(seed, 7919))
    take = torch.randperm(n, generator=gen)[:min(n, batches * batch_size)]
    norms = supernet.elastic_norms()
    was_training = supernet.training
    supernet.eval()
    for bn in norms:
        bn.start_calibration()
    done = 0
    try:
        with torch.no_grad():
            for idx in torch.split(take, batch_size):
                supernet(data.x_train[idx].to(device))
    finally:
        for bn in norms:
            done += int(bn.finish_calibration())
        supernet.train(was_training)
    return done


def subnet_accuracy(supernet: ElasticMacroSupernet, arch: Architecture | Mapping[str, Any], data: TaskData,
                    split: str = "valid", recalibrate: bool = True, *, batches: int = 8, batch_size: int = 256,
                    seed: int = 0) -> float:
    """Accuracy (fraction in [0, 1]) of subnet ``arch`` with inherited weights on ``split``, in eval
    mode, after :func:`recalibrate_bn` unless ``recalibrate`` is False. ``arch`` stays active."""
    if recalibrate:
        recalibrate_bn(supernet, arch, data, batches=batches, batch_size=batch_size, seed=seed)
    else:
        supernet.set_active(arch)
    x, y = data.split(split)
    device = _device(supernet)
    was_training = supernet.training
    supernet.eval()
    correct = 0
    try:
        with torch.inference_mode():
            for start in range(0, len(y), EVAL_BATCH_SIZE):
                out = supernet(x[start:start + EVAL_BATCH_SIZE].to(device))
                correct += int((out.argmax(dim=1).cpu() == y[start:start + EVAL_BATCH_SIZE]).sum())
    finally:
        supernet.train(was_training)
    return correct / len(y)


# -- costs -------------------------------------------------------------------------------------------

def make_cost_fn(space: SearchSpace, input_shape: tuple[int, ...], num_classes: int,
                 metrics: tuple[str, ...] = ("params", "flops"), *, table: Any = None) -> CostFn:
    """``arch -> {metric: value}`` on the stand-alone model ``build_model(space, arch)``, cached per arch.

    ``metrics`` are names of :data:`archscout.hardware.COST_METRICS` (``params`` count, ``flops``
    per sample, ``lut_latency_ms`` with a :class:`~archscout.hardware.LatencyTable` ``table``,
    measured ``latency_ms`` ...), computed by :func:`archscout.hardware.cost_metrics`.
    """
    from ..hardware import cost_metrics

    cache: dict[str, dict[str, float]] = {}
    wanted = tuple(dict.fromkeys(metrics))

    def costs(arch: Architecture) -> dict[str, float]:
        if arch.key not in cache:
            model = build_model(space, arch, input_shape, num_classes, seed=0)
            cache[arch.key] = cost_metrics(model, input_shape, wanted, table=table)
        return dict(cache[arch.key])

    return costs


# -- constrained evolution ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """An architecture found by :func:`evolve`: inherited valid accuracy (after BN recalibration) and costs."""

    arch: Architecture
    accuracy: float
    costs: dict[str, float] = field(default_factory=dict)

    def scores(self) -> dict[str, float]:
        """``{"supernet_acc": accuracy, **costs}``."""
        return {"supernet_acc": self.accuracy, **self.costs}


def evolve(supernet: ElasticMacroSupernet, space: SearchSpace, data: TaskData, *,
           budgets: Mapping[str, float] | None = None, constraints: Sequence[str | Constraint] = (),
           cost_fn: CostFn | None = None, population: int = 16,
           generations: int = 5, mutate_prob: float = 0.1, parent_ratio: float = 0.25, mutation_ratio: float = 0.5,
           init_tries: int | None = None, recalib_batches: int = 8, recalib_batch_size: int = 256, seed: int = 0,
           progress: bool = False) -> list[Candidate]:
    """OFA's constrained evolutionary search on a trained supernet; the feasible candidates scored, best first.

    ``budgets`` are hard upper bounds on the keys of ``cost_fn(arch)`` (default: ``params`` and
    ``flops`` of the stand-alone model, plus any other budget key that names a cost metric);
    ``constraints`` are constraint expressions over the same costs (``"flops<=2e6"``,
    ``"params < 5e4 and flops < 1e6"``), the form studies and ``run_method`` use. Both are hard:
    infeasible candidates are never scored. The first population is ``population`` distinct
    feasible samples (the smallest architecture is tried first; at most ``init_tries`` draws,
    default ``50 * population``). Each generation keeps the best ``parent_ratio`` share, then
    fills ``mutation_ratio`` of the population with mutations of random parents
    (``space.mutate``: one edit plus each other decision with probability ``mutate_prob``) and
    the rest with crossovers of two parents (``space.crossover``). Fitness is
    :func:`subnet_accuracy` on the valid split. Ties rank by the first budget's cost, then key.
    Candidates are distinct *subnets*: architectures that differ only in values the network does
    not read (``dropout``, recipe fields) score alike, so each subnet is scored and returned once,
    with the values of its first occurrence.
    Raises ArchscoutError when no sampled architecture meets the budgets.
    """
    return _evolve(supernet, space, data, budgets=budgets, constraints=constraints, cost_fn=cost_fn,
                   population=population,
                   generations=generations, mutate_prob=mutate_prob, parent_ratio=parent_ratio,
                   mutation_ratio=mutation_ratio, init_tries=init_tries, recalib_batches=recalib_batches,
                   recalib_batch_size=recalib_batch_size, seed=seed, progress=progress)[0]


def _evolve(supernet: ElasticMacroSupernet, space: SearchSpace, data: TaskData, *,
            budgets: Mapping[str, float] | None, constraints: Sequence[str | Constraint], cost_fn: CostFn | None,
            population: int, generations: int,
            mutate_prob: float, parent_ratio: float, mutation_ratio: float, init_tries: int | None,
            recalib_batches: int, recalib_batch_size: int, seed: int,
            progress: bool) -> tuple[list[Candidate], list[dict[str, float]]]:
    if population < 2 or generations < 0:
        raise EvaluationError(f"evolve needs population >= 2 and generations >= 0, got {population}, {generations}")
    if not 0.0 <= mutate_prob <= 1.0 or not 0.0 < parent_ratio <= 1.0 or not 0.0 <= mutation_ratio <= 1.0:
        raise EvaluationError("evolve needs mutate_prob and mutation_ratio in [0, 1] and parent_ratio in (0, 1]")
    budgets = {str(k): float(v) for k, v in (budgets or {}).items()}
    for key, value in budgets.items():
        if not math.isfinite(value):
            raise EvaluationError(f"budget {key}={value} is not a finite number")
    cons = [c if isinstance(c, Constraint) else Constraint(c) for c in constraints]
    needed = list(dict.fromkeys(list(budgets) + sorted(set().union(*(c.names for c in cons)))))
    if cost_fn is None:
        from ..hardware import COST_METRICS

        metrics = ("params", "flops") + tuple(k for k in needed if k in COST_METRICS and k not in ("params", "flops"))
        unknown = [k for k in needed if k not in metrics]
        if unknown:
            raise ArchscoutError(f"budget {unknown[0]!r} is not a cost metric ({', '.join(COST_METRICS)}); "
                                 "pass a cost_fn that computes it")
        cost_fn = make_cost_fn(space, supernet.input_shape, supernet.num_classes, metrics)
    rng = np.random.default_rng(_seed_of(seed, 31337))
    costs_of: dict[str, dict[str, float]] = {}

    def feasible(arch: Architecture) -> bool:
        if arch.key not in costs_of:
            costs = {k: float(v) for k, v in cost_fn(arch).items()}
            missing = [k for k in needed if k not in costs]
            if missing:
                raise ArchscoutError(f"budget {missing[0]!r} is not among the costs the cost function returns "
                                     f"({', '.join(sorted(costs)) or 'none'})")
            costs_of[arch.key] = costs
        costs = costs_of[arch.key]
        return all(costs[k] <= v for k, v in budgets.items()) and all(c(costs) for c in cons)

    scored: dict[str, Candidate] = {}     # by subnet key: one score per distinct subnet
    subnet = supernet.subnet_key

    def score(arch: Architecture) -> Candidate:
        key = subnet(arch)
        if key not in scored:
            acc = subnet_accuracy(supernet, arch, data, "valid", recalibrate=True, batches=recalib_batches,
                                  batch_size=recalib_batch_size, seed=seed)
            scored[key] = Candidate(arch, acc, dict(costs_of[arch.key]))
        return scored[key]

    first_budget = needed[0] if needed else None

    def rank(c: Candidate) -> tuple:
        return (-c.accuracy, c.costs.get(first_budget, 0.0) if first_budget else 0.0, c.arch.key)

    # initial population: distinct feasible architectures
    tries = init_tries if init_tries is not None else 50 * population
    pop: dict[str, Architecture] = {}
    draws = 0
    candidates = [supernet.smallest()]
    while len(pop) < population and draws < tries:
        arch = candidates.pop() if candidates else space.sample(rng)
        draws += 1
        if subnet(arch) not in pop and feasible(arch):
            pop[subnet(arch)] = arch
    if not pop:
        spec = ", ".join([f"{k}<={v:g}" for k, v in budgets.items()] + [c.text for c in cons])
        raise ArchscoutError(f"no architecture of space {space.name!r} meets the budget {spec} "
                             f"in {draws} samples (the smallest included)")
    log: list[dict[str, float]] = []
    n_parents = max(1, math.ceil(parent_ratio * population))
    n_mutate = round(mutation_ratio * population)
    for gen in range(generations + 1):
        ranked = sorted((score(a) for a in pop.values()), key=rank)
        best = ranked[0]
        log.append({"generation": gen, "best_acc": best.accuracy,
                    "mean_acc": float(np.mean([c.accuracy for c in ranked])), "evaluated": len(scored)})
        if progress:
            print(f"bignas evolution generation {gen}/{generations}: best acc {best.accuracy:.4f}, "
                  f"{len(scored)} subnets scored", flush=True)
        if gen == generations:
            break
        parents = [c.arch for c in ranked[:n_parents]]
        nxt: dict[str, Architecture] = {subnet(a): a for a in parents}
        budget_tries = 20 * population
        while len(nxt) < n_parents + n_mutate and budget_tries > 0:
            budget_tries -= 1
            child = space.mutate(parents[int(rng.integers(len(parents)))], rng, rate=mutate_prob)
            if subnet(child) not in nxt and feasible(child):
                nxt[subnet(child)] = child
        budget_tries = 20 * population
        while len(nxt) < population and budget_tries > 0:
            budget_tries -= 1
            a, b = (parents[int(i)] for i in rng.integers(len(parents), size=2))
            child = space.crossover(a, b, rng)
            if subnet(child) not in nxt and feasible(child):
                nxt[subnet(child)] = child
        pop = nxt
    return sorted(scored.values(), key=rank), log


# -- the whole method ----------------------------------------------------------------------------------

def run_bignas(space: SearchSpace, data: TaskData, *, epochs: int = 3, budgets: Mapping[str, float] | None = None,
               constraints: Sequence[str | Constraint] = (), seed: int = 0, progress: bool = False,
               batch_size: int = 64, lr: float = 3e-3, n_random: int = 2,
               distill: bool = True, population: int = 16, generations: int = 5, mutate_prob: float = 0.1,
               cost_fn: CostFn | None = None, top_k: int = 5, threads: int = 1,
               keep_supernet: bool = False) -> OneShotResult:
    """Build the elastic supernet of ``space``, train it (:func:`train_bignas`), search it under
    ``budgets`` (``{"flops": 2e6}``) and/or ``constraints`` (``["flops<=2e6"]``) with :func:`evolve`,
    and return a :class:`~archscout.oneshot.base.OneShotResult`.

    ``archs``/``scores``: the ``top_k`` best feasible architectures with ``supernet_acc`` (inherited
    valid accuracy after BN recalibration) and their costs; ``history``: the training epochs;
    ``info``: ``train_s``, ``evolve_s``, ``evaluated`` (subnets scored), ``generations`` (per
    generation best/mean accuracy), ``largest``/``smallest`` (their final inherited accuracies),
    ``budgets``, and the trained supernet under ``"supernet"`` when ``keep_supernet``.
    """
    start = time.perf_counter()
    if data.vocab_size is not None:
        raise SpaceError(f"elastic supernets take (C, L) or (C, H, W) float inputs; dataset {data.name!r} holds tokens")
    with torch_threads(threads):
        supernet = ElasticMacroSupernet(space, data.input_shape, data.num_classes, seed=seed)
        log = train_bignas(supernet, data, epochs=epochs, batch_size=batch_size, lr=lr, n_random=n_random,
                           distill=distill, seed=seed, threads=threads, progress=progress)
        t_evolve = time.perf_counter()
        found, gens = _evolve(supernet, space, data, budgets=budgets, constraints=constraints, cost_fn=cost_fn,
                              population=population,
                              generations=generations, mutate_prob=mutate_prob, parent_ratio=0.25,
                              mutation_ratio=0.5, init_tries=None, recalib_batches=8, recalib_batch_size=256,
                              seed=seed, progress=progress)
        evolve_s = time.perf_counter() - t_evolve
        last = log["history"][-1]
    top = found[:max(1, int(top_k))]
    info: dict[str, Any] = {
        "train_s": log["seconds"], "evolve_s": evolve_s, "evaluated": len(found), "generations": gens,
        "largest": {"arch": supernet.largest().to_dict(), "valid_acc": last["valid_acc_largest"]},
        "smallest": {"arch": supernet.smallest().to_dict(), "valid_acc": last["valid_acc_smallest"]},
        "budgets": dict(budgets or {}),
        "constraints": [c.text if isinstance(c, Constraint) else str(c) for c in constraints],
    }
    if keep_supernet:
        info["supernet"] = supernet
    return OneShotResult(method="bignas", archs=[c.arch for c in top], scores=[c.scores() for c in top],
                         search_s=time.perf_counter() - start, history=log["history"], info=info)


__all__ = ["Candidate", "evolve", "make_cost_fn", "recalibrate_bn", "run_bignas", "subnet_accuracy", "train_bignas"]
