"""Differentiable architecture search on a :class:`~archscout.oneshot.supernet.ChoiceSupernet`.

Five methods share one bilevel loop (:func:`run_differentiable`): the supernet's weights train
on one half of ``data.x_train``, the architecture parameters ``alpha`` (one logit per
candidate per row) on the other half, alternating one step each (DARTS's split);
``data.x_valid`` is only used to report and to select, never the test split.

* ``"darts"`` (Liu et al. 2019): every candidate weighted by ``softmax(alpha)``; ``order=1``
  is the first-order approximation, ``order=2`` the unrolled second-order one (one virtual
  SGD step of the weights, finite-difference Hessian-vector product).
* ``"pc-darts"`` (Xu et al. 2020): DARTS on ``1/K`` of each cell edge's channels
  (``partial_channels=K``) with edge normalisation: a ``beta`` per incoming edge, softmax
  over each node's incoming edges, scaling the edge and used in derivation. Macro spaces
  have no cell edges: there it runs with ``K=1`` and no ``beta`` (asking for ``K>1`` on a
  macro space raises :class:`~archscout.errors.SpaceError`).
* ``"gdas"`` (Dong & Yang 2019): a hard Gumbel-softmax sample per row (straight-through
  gradient), only the sampled candidate computed; temperature annealed ``tau_max -> tau_min``.
* ``"fbnet"`` (Wu et al. 2019): a soft Gumbel-softmax mixture (annealed) and a latency-aware
  architecture loss in the *additive* form ``CE + latency_weight * LAT / LAT_uniform`` where
  ``LAT = sum_rows sum_i softmax(alpha)_i * lat_i`` is the expected latency (ms) from a
  per-candidate lookup table (see :mod:`.latency_loss`) and ``LAT_uniform`` the expected
  latency under uniform weights (so ``latency_weight`` is unitless).
* ``"proxyless"`` (Cai et al. 2019): binarized paths -- weight steps run one candidate per row
  sampled from ``softmax(alpha)``; architecture steps sample two candidates per row, run only
  those, and update ``alpha`` with the binary-gate gradient over the pair (a straight-through
  gate on the pair's renormalised softmax), plus the same expected-latency term as FBNet.

After the search a collapse guard (:mod:`.selection`, ``guard=``) derives the architecture.
The default, ``"pool"``, is selection by supernet accuracy over a candidate pool, the core
idea of Wang et al. 2021 ("Rethinking Architecture Selection in Differentiable NAS": the
architecture weights do not show how strong an op is, the supernet's accuracy does) in the
form of DARTS's own candidate selection (Liu et al. 2019 pick among searched cells by a short
training and their validation accuracy): the ``pool_size`` most probable architectures under
softmax(alpha) plus every one-row change of the argmax, a single-path supernet trained on
just those (uniform sampling, weight half of ``data.x_train``; by default freshly
initialised, because the search supernet's inherited weights ranked the pool no better than
chance for PC-DARTS and GDAS on the MNIST-1D reference), each scored on ``data.x_valid``
with BatchNorm recalibrated, and the most accurate non-collapsed member derived. The pool and
its scores are in ``info["pool"]``. The alternatives: ``"perturbation"`` (Wang et al.'s
row-by-row perturbation selection), ``"darts+"`` (DARTS+ early stopping) and ``"none"`` (the
plain argmax).

Settings left at 0 take the method's default (:data:`METHOD_DEFAULTS`, tuned on the MNIST-1D
reference benchmark; see the report in ``info["settings"]``). A search is deterministic for
a seed on CPU, given the same latency table for FBNet / ProxylessNAS (their lookup table is
measured, so pass ``latency_table`` for bit-identical reruns).
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchscoutError, UnknownNameError
from ..hardware import LatencyTable
from ..space import Architecture, SearchSpace
from ..training.data import TaskData
from ..training.trainer import _preserved_global_rng, _stream_seed, torch_threads
from .base import OneShotResult, pool_ranking
from .bn import batchnorms, recalibrate_bn
from .latency_loss import CandidateLatency, candidate_latencies
from .selection import (GUARDS, DartsPlusMonitor, avoid_collapse, candidate_pool, first_valid, is_collapsed,
                        param_free_fraction, perturbation_select, skip_count)
from .supernet import ChoiceSupernet, Path

METHODS = ("darts", "pc-darts", "gdas", "fbnet", "proxyless")
W_OPTIMIZERS = ("sgd", "adamw")

# Per-method defaults for the options left at 0 (measured on the MNIST-1D reference table).
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    "darts":     {"epochs": 10, "w_lr": 0.05, "a_lr": 3e-3, "warmup_epochs": 2, "partial_channels": 1,
                  "latency_weight": 0.0, "tau_max": 1.0, "tau_min": 1.0},
    "pc-darts":  {"epochs": 10, "w_lr": 0.05, "a_lr": 3e-3, "warmup_epochs": 2, "partial_channels": 2,
                  "latency_weight": 0.0, "tau_max": 1.0, "tau_min": 1.0},
    "gdas":      {"epochs": 20, "w_lr": 0.05, "a_lr": 3e-3, "warmup_epochs": 2, "partial_channels": 1,
                  "latency_weight": 0.0, "tau_max": 10.0, "tau_min": 0.1},
    "fbnet":     {"epochs": 10, "w_lr": 0.05, "a_lr": 3e-3, "warmup_epochs": 2, "partial_channels": 1,
                  "latency_weight": 0.05, "tau_max": 5.0, "tau_min": 0.5},
    "proxyless": {"epochs": 20, "w_lr": 0.05, "a_lr": 3e-3, "warmup_epochs": 2, "partial_channels": 1,
                  "latency_weight": 0.05, "tau_max": 1.0, "tau_min": 1.0},
}
LATENCY_METHODS = ("fbnet", "proxyless")
SINGLE_PATH_METHODS = ("gdas", "proxyless")     # supernets trained on sampled single paths
CALIB_SAMPLES = 512         # training samples used to recalibrate BatchNorm for a discrete path
SELECT_SAMPLES = 1000       # validation samples scored per perturbation probe
EVAL_CHUNK = 500            # samples per forward when evaluating
FINETUNE_LR_FACTOR = 0.2    # perturbation fine-tuning lr, relative to w_lr
POOL_LR_FACTOR = 0.2        # pool fine-tuning peak lr (cosine to 0), relative to w_lr
POOL_FRESH_LR = 3e-3        # AdamW peak lr (cosine to 0) of the pool's fresh single-path supernet (SPOS's)
POOL_FRESH_WEIGHT_DECAY = 1e-4
POOL_INITS = ("fresh", "inherit")
W_WEIGHT_DECAY = 3e-4
A_WEIGHT_DECAY = 1e-3
GRAD_CLIP = 5.0


class _Bad(ArchscoutError):
    """A differentiable-search option with a value it cannot take."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise _Bad(message)


# -- BatchNorm handling ------------------------------------------------------------------------
@contextmanager
def _frozen_bn(net: nn.Module) -> Iterator[None]:
    """Training-mode forwards that use batch statistics without updating running ones."""
    bns = [m for m in batchnorms(net) if m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


@contextmanager
def _recalibrated(net: ChoiceSupernet, x_cal: torch.Tensor, fwd: Mapping[str, Any]) -> Iterator[None]:
    """Inside: eval mode with BatchNorm statistics re-estimated on ``x_cal`` for the network
    run as ``fwd`` describes (a path, or weights); everything is restored on exit."""
    bns = batchnorms(net)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
             for m in bns]
    was_training = net.training
    try:
        recalibrate_bn(net, (x_cal[start:start + EVAL_CHUNK] for start in range(0, len(x_cal), EVAL_CHUNK)),
                       forward=lambda x: net(x, **fwd))
        yield
    finally:
        for m, (mean, var, n, mom) in zip(bns, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)
            m.momentum = mom
        net.train(was_training)


def _metrics(net: nn.Module, x: torch.Tensor, y: torch.Tensor, fwd: Mapping[str, Any]) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``net`` in its current mode."""
    correct, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(y), EVAL_CHUNK):
            out = net(x[start:start + EVAL_CHUNK], **fwd)
            yb = y[start:start + EVAL_CHUNK]
            correct += int((out.argmax(1) == yb).sum())
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
    return correct / len(y), loss / len(y)


# -- the search ------------------------------------------------------------------------------------
class _Search:
    """State of one search: supernet, architecture parameters, optimizers, data halves."""

    def __init__(self, method: str, space: SearchSpace, data: TaskData, s: dict[str, Any],
                 latency_table: LatencyTable | None, alpha_init: Mapping[str, Any] | None) -> None:
        self.method, self.s = method, s
        self.seed = int(s["seed"])
        self.gen = torch.Generator().manual_seed(_stream_seed(self.seed, 0, 10))
        self.net = ChoiceSupernet(space, tuple(data.input_shape), data.num_classes,
                                  partial_channels=s["partial_channels"], seed=self.seed)
        self.groups = self.net.groups
        self.input_shape = tuple(data.input_shape)
        # DARTS's split of the training data: weights on one half, alphas on the other
        perm = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(_stream_seed(self.seed, 0, 11)))
        half = len(perm) // 2
        _check(half >= 1, f"differentiable search needs at least 2 training samples, got {len(perm)}")
        self.xw, self.yw = data.x_train[perm[:half]], data.y_train[perm[:half]]
        self.xa, self.ya = data.x_train[perm[half:]], data.y_train[perm[half:]]
        self.x_cal = self.xw[:CALIB_SAMPLES]
        self.xv, self.yv = data.x_valid, data.y_valid
        _check(len(self.yv) > 0, "differentiable search needs a validation split (data.x_valid is empty)")
        self.xs, self.ys = self.xv[:SELECT_SAMPLES], self.yv[:SELECT_SAMPLES]
        # architecture parameters
        self.alpha = nn.ParameterDict()
        for g in self.groups:
            init = 1e-3 * torch.randn(g.rows, len(g.candidates), generator=self.gen)
            if alpha_init is not None and g.name in alpha_init:
                given = torch.as_tensor(np.asarray(alpha_init[g.name], dtype=np.float32))
                _check(tuple(given.shape) == tuple(init.shape),
                       f"alpha_init[{g.name!r}] has shape {tuple(given.shape)}, expected {tuple(init.shape)}")
                init = given.clone()
            self.alpha[self._key(g.name)] = nn.Parameter(init)
        self.beta = nn.ParameterDict()
        if method == "pc-darts":
            for g in self.groups:
                if g.kind == "cell":
                    self.beta[self._key(g.name)] = nn.Parameter(torch.zeros(g.rows))
        self.node_rows = {g.name: self._node_rows(g) for g in self.groups if g.kind == "cell"}
        # optimizers
        self.wparams = [p for p in self.net.parameters() if p.requires_grad]
        decay = [p for p in self.wparams if p.ndim >= 2]
        plain = [p for p in self.wparams if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": W_WEIGHT_DECAY}, {"params": plain, "weight_decay": 0.0}]
        if s["w_optimizer"] == "sgd":
            self.w_opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=s["w_lr"], momentum=0.9, nesterov=True)
        else:
            self.w_opt = torch.optim.AdamW(groups, lr=s["w_lr"])
        self.aparams = list(self.alpha.values()) + list(self.beta.values())
        self.a_opt = torch.optim.Adam(self.aparams, lr=s["a_lr"], betas=(0.5, 0.999), weight_decay=A_WEIGHT_DECAY)
        self.steps_per_epoch = math.ceil(len(self.yw) / s["batch_size"])
        self.total_steps = max(1, s["epochs"] * self.steps_per_epoch)
        self.step = 0
        self.tau = float(s["tau_max"])
        # latency lookup
        self.lut: CandidateLatency | None = None
        self.lat_ref = 1.0
        if method in LATENCY_METHODS or latency_table is not None:
            self.lut = candidate_latencies(self.net, latency_table, threads=1)
            uniform = {g.name: torch.full((g.rows, len(g.candidates)), 1.0 / len(g.candidates)) for g in self.groups}
            self.lat_ref = max(float(self.lut.expected(uniform)), 1e-9)

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "/")   # ParameterDict keys may not hold dots

    def _node_rows(self, g: Any) -> list[list[int]]:
        nodes: dict[str, list[int]] = {}
        for row, label in enumerate(g.row_labels):
            nodes.setdefault(label.split("<-")[0], []).append(row)
        return list(nodes.values())

    # -- architecture weights in every form the methods use ----------------------------------
    def probs(self) -> dict[str, torch.Tensor]:
        """softmax(alpha) per row (differentiable)."""
        return {g.name: F.softmax(self.alpha[self._key(g.name)], dim=-1) for g in self.groups}

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        if not len(self.beta):
            return None
        out = {}
        for g in self.groups:
            key = self._key(g.name)
            if key not in self.beta:
                continue
            b = self.beta[key]
            parts = torch.zeros_like(b)
            for rows in self.node_rows[g.name]:
                idx = torch.tensor(rows)
                parts = parts.index_copy(0, idx, F.softmax(b[idx], dim=0))
            out[g.name] = parts
        return out

    def _gumbel(self, shape: torch.Size) -> torch.Tensor:
        u = torch.rand(shape, generator=self.gen).clamp_(1e-10, 1.0 - 1e-7)
        return -torch.log(-torch.log(u))

    def forward_args(self, mode: str, fixed: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Keyword arguments of a supernet forward: ``weights`` (and ``active``, ``edge_weights``).

        ``mode``: "mixture" (softmax), "gumbel-soft", "gumbel-hard" (straight-through one-hot,
        only the sample computed), "sample-one" (one candidate drawn from the softmax, no
        gradient), "sample-pair" (ProxylessNAS binary gate over two drawn candidates).
        ``fixed`` (group -> (rows, n) weights whose one-hot rows override the sample) pins rows
        that perturbation selection has decided.
        """
        weights: dict[str, torch.Tensor] = {}
        active: dict[str, list[list[int]]] = {}
        for g in self.groups:
            a = self.alpha[self._key(g.name)]
            n = a.shape[1]
            act: list[list[int]] | None = None
            if mode == "mixture":
                w = F.softmax(a, dim=-1)
            elif mode in ("gumbel-soft", "gumbel-hard"):
                soft = F.softmax((a + self._gumbel(a.shape)) / self.tau, dim=-1)
                if mode == "gumbel-soft":
                    w = soft
                else:
                    idx = soft.detach().argmax(dim=-1)
                    hard = F.one_hot(idx, n).to(soft.dtype)
                    w = hard - soft.detach() + soft
                    act = [[int(i)] for i in idx]
            elif mode == "sample-one":
                p = F.softmax(a.detach(), dim=-1)
                idx = torch.multinomial(p, 1, generator=self.gen)[:, 0]
                w = F.one_hot(idx, n).to(p.dtype)
                act = [[int(i)] for i in idx]
            elif mode == "sample-pair":
                if n == 1:
                    w = torch.ones_like(a) + a - a.detach()
                    act = [[0] for _ in range(a.shape[0])]
                else:
                    p = F.softmax(a.detach(), dim=-1)
                    pair = torch.multinomial(p, 2, replacement=False, generator=self.gen)      # (rows, 2)
                    q = F.softmax(a.gather(1, pair), dim=-1)                                   # renormalised
                    pick = torch.multinomial(q.detach(), 1, generator=self.gen)[:, 0]
                    gate = F.one_hot(pick, 2).to(q.dtype)
                    w = torch.zeros_like(a).scatter(1, pair, gate - q.detach() + q)
                    act = [[int(i) for i in r] for r in pair]
            else:  # pragma: no cover - internal
                raise ValueError(mode)
            if fixed is not None and g.name in fixed:
                f = fixed[g.name]
                decided = (f.sum(dim=1) > 0) & (f.max(dim=1).values >= 1.0)
                if bool(decided.any()):
                    w = torch.where(decided[:, None], f.to(w.dtype), w)
                    if act is not None:
                        act = [[int(f[r].argmax())] if bool(decided[r]) else act[r] for r in range(len(act))]
            weights[g.name] = w
            if act is not None:
                active[g.name] = act
        args: dict[str, Any] = {"weights": weights}
        if active:
            args["active"] = active
        ew = self.edge_weights()
        if ew is not None:
            args["edge_weights"] = ew
        return args

    @property
    def a_mode(self) -> str:
        return {"darts": "mixture", "pc-darts": "mixture", "gdas": "gumbel-hard", "fbnet": "gumbel-soft",
                "proxyless": "sample-pair"}[self.method]

    @property
    def w_mode(self) -> str:
        return {"darts": "mixture", "pc-darts": "mixture", "gdas": "gumbel-hard", "fbnet": "gumbel-soft",
                "proxyless": "sample-one"}[self.method]

    # -- steps ------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return self.s["w_lr"] * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / self.total_steps)))

    def latency_term(self) -> torch.Tensor | None:
        if self.lut is None or self.method not in LATENCY_METHODS or self.s["latency_weight"] <= 0:
            return None
        return self.s["latency_weight"] * self.lut.expected(self.probs()) / self.lat_ref

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, fixed: Mapping[str, torch.Tensor] | None = None
                    ) -> float:
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            args = self.forward_args(self.w_mode, fixed)
        loss = F.cross_entropy(self.net(x, **args), y)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.wparams, GRAD_CLIP)
        self.w_opt.step()
        return float(loss.detach())

    def arch_step(self, xa: torch.Tensor, ya: torch.Tensor, xw: torch.Tensor, yw: torch.Tensor, lr: float) -> float:
        self.a_opt.zero_grad(set_to_none=True)
        if self.s["order"] == 2:
            value = self._second_order_grads(xa, ya, xw, yw, lr)
        else:
            loss = F.cross_entropy(self.net(xa, **self.forward_args(self.a_mode)), ya)
            value = float(loss.detach())
            lat = self.latency_term()
            if lat is not None:
                loss = loss + lat
            grads = torch.autograd.grad(loss, self.aparams, allow_unused=True)
            for p, gr in zip(self.aparams, grads):
                p.grad = torch.zeros_like(p) if gr is None else gr
        self.a_opt.step()
        return value

    def _grads(self, loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def _second_order_grads(self, xa: torch.Tensor, ya: torch.Tensor, xw: torch.Tensor, yw: torch.Tensor,
                            xi: float) -> float:
        """DARTS's unrolled gradient: grad_alpha L_val(w', alpha) - xi * (finite-difference Hessian-vector
        product), with w' = w - xi * grad_w L_train(w, alpha)."""
        params = self.wparams
        backup = [p.detach().clone() for p in params]
        with _frozen_bn(self.net):
            g_train = self._grads(F.cross_entropy(self.net(xw, **self.forward_args("mixture")), yw), params)
            with torch.no_grad():
                for p, g in zip(params, g_train):
                    p.sub_(xi * (g + W_WEIGHT_DECAY * p))
            val = F.cross_entropy(self.net(xa, **self.forward_args("mixture")), ya)
            grads = self._grads(val, self.aparams + params)
            d_alpha, d_w = grads[:len(self.aparams)], grads[len(self.aparams):]
            norm = torch.sqrt(sum((g * g).sum() for g in d_w))
            eps = 0.01 / max(float(norm), 1e-12)
            with torch.no_grad():
                for p, b, g in zip(params, backup, d_w):
                    p.copy_(b + eps * g)
            g_pos = self._grads(F.cross_entropy(self.net(xw, **self.forward_args("mixture")), yw), self.aparams)
            with torch.no_grad():
                for p, b, g in zip(params, backup, d_w):
                    p.copy_(b - eps * g)
            g_neg = self._grads(F.cross_entropy(self.net(xw, **self.forward_args("mixture")), yw), self.aparams)
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
        for p, da, gp, gn in zip(self.aparams, d_alpha, g_pos, g_neg):
            p.grad = da - xi * (gp - gn) / (2 * eps)
        return float(val.detach())

    def run_epoch(self, epoch: int) -> dict[str, float]:
        s = self.s
        order_w = torch.randperm(len(self.yw), generator=self.gen)
        order_a = torch.randperm(len(self.ya), generator=self.gen)
        bw = torch.tensor_split(order_w, self.steps_per_epoch)
        ba = torch.tensor_split(order_a, self.steps_per_epoch)
        search_alpha = epoch >= s["warmup_epochs"]
        self.net.train()
        w_sum = a_sum = 0.0
        n_a = 0
        for iw, ia in zip(bw, ba):
            lr = self.lr_at(self.step)
            if search_alpha and len(ia):
                a_sum += self.arch_step(self.xa[ia], self.ya[ia], self.xw[iw], self.yw[iw], lr)
                n_a += 1
            w_sum += self.weight_step(self.xw[iw], self.yw[iw], lr) * len(iw)
            self.step += 1
        entry = {"epoch": float(epoch + 1), "train_loss": w_sum / len(self.yw)}
        if n_a:
            entry["arch_loss"] = a_sum / n_a
        return entry

    # -- evaluation -------------------------------------------------------------------------------
    def argmax_path(self, alpha: Mapping[str, torch.Tensor] | None = None) -> Path:
        with torch.no_grad():
            probs = self.probs() if alpha is None else {k: F.softmax(v, -1) for k, v in alpha.items()}
            return self.net.path_from_weights(probs, self.edge_weights())

    def path_metrics(self, path: Path, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                     net: ChoiceSupernet | None = None) -> tuple[float, float]:
        """(accuracy, loss) of a discrete path with inherited weights (of ``net``, default the
        search's supernet), BatchNorm recalibrated."""
        x = self.xv if x is None else x
        y = self.yv if y is None else y
        net = self.net if net is None else net
        net.set_path(path)
        try:
            with _recalibrated(net, self.x_cal, {}):
                return _metrics(net, x, y, {})
        finally:
            net.set_path(None)

    def entropy(self) -> float:
        """Mean over rows of the softmax entropy, normalised by log(candidates)."""
        values = []
        with torch.no_grad():
            for g in self.groups:
                if len(g.candidates) < 2:
                    continue
                p = F.softmax(self.alpha[self._key(g.name)], -1)
                h = -(p * torch.log(p.clamp_min(1e-12))).sum(-1) / math.log(len(g.candidates))
                values += [float(v) for v in h]
        return float(np.mean(values)) if values else 0.0

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {g.name: self.alpha[self._key(g.name)].detach().clone() for g in self.groups}

    # -- perturbation selection -------------------------------------------------------------------
    def select_by_perturbation(self, mode: str | None = None, bn: str = "batch"
                               ) -> tuple[Path, dict[str, torch.Tensor], list[dict[str, Any]]]:
        """Perturbation-based selection; ``mode`` "mixture" or "path" (default: how the method
        trained the supernet); ``bn`` "batch" (batch statistics) or "running" for mixture probes."""
        single = (self.method in SINGLE_PATH_METHODS) if mode is None else mode == "path"
        ew = self.edge_weights()
        ew = None if ew is None else {k: v.detach() for k, v in ew.items()}

        def as_path(w: Mapping[str, torch.Tensor]) -> Path:
            return {k: [int(r.argmax()) if float(r.max()) > 0 else -1 for r in v] for k, v in w.items()}

        def evaluate(w: dict[str, torch.Tensor]) -> tuple[float, float]:
            if single:
                return self.path_metrics(as_path(w), self.xs, self.ys)
            fwd: dict[str, Any] = {"weights": w}
            if ew is not None:
                fwd["edge_weights"] = ew
            if bn == "running":
                self.net.eval()
                return _metrics(self.net, self.xs, self.ys, fwd)
            self.net.train()
            with _frozen_bn(self.net):
                return _metrics(self.net, self.xs, self.ys, fwd)

        finetune = None
        steps = int(self.s["finetune_steps"])
        if steps > 0:
            lr = FINETUNE_LR_FACTOR * self.s["w_lr"]
            ft_gen = torch.Generator().manual_seed(_stream_seed(self.seed, 1, 12))

            def finetune(fixed: dict[str, torch.Tensor]) -> None:
                self.net.train()
                bs = self.s["batch_size"]
                for _ in range(steps):
                    idx = torch.randint(len(self.yw), (min(bs, len(self.yw)),), generator=ft_gen)
                    self.weight_step(self.xw[idx], self.yw[idx], lr, fixed)

        with torch.no_grad():
            probs = {k: v.detach() for k, v in self.probs().items()}
            if single:     # the argmax path as one-hot rows (cells keeping k inputs: every edge on, no zero op)
                start = {}
                for g in self.groups:
                    p = probs[g.name].clone()
                    if g.pick and not all(g.zero):
                        p[:, [i for i, z in enumerate(g.zero) if z]] = -1.0
                    start[g.name] = F.one_hot(p.argmax(dim=1), len(g.candidates)).float()
            else:
                start = probs
        order = [(g.name, r) for g in self.groups for r in range(g.rows)]
        perm = torch.randperm(len(order), generator=torch.Generator().manual_seed(_stream_seed(self.seed, 1, 13)))
        order = [order[int(i)] for i in perm]
        return perturbation_select(self.net, start, evaluate, mode="path" if single else "mixture",
                                   order=order, finetune=finetune)


    # -- selection by supernet accuracy over a candidate pool -------------------------------------
    def select_from_pool(self) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
        """Selection by supernet accuracy over a candidate pool (the ``"pool"`` guard).

        The pool: the ``pool_size`` most probable valid architectures under softmax(alpha),
        plus (``pool_neighbours``) every one-row change of the argmax. A single-path supernet
        then trains ``pool_steps`` steps on the weight half of ``data.x_train``, one pool member
        drawn uniformly per step (SPOS-style): with ``pool_init="fresh"`` a newly initialised
        supernet (full channels; AdamW, cosine) that only ever saw the pool, with ``"inherit"``
        the search's own supernet (its SGD optimizer at ``POOL_LR_FACTOR * w_lr``, cosine).
        Each member is scored on ``data.x_valid`` with those weights and BatchNorm recalibrated
        for the path (with ``pool_repeats`` > 1, averaged over that many fresh supernets, each
        with its own initialisation and draws; per-run accuracies in ``valid_acc_runs``); the
        most accurate non-collapsed one wins (ties: lower loss, then higher probability).
        Returns (path, one record per pool member, summary)."""
        s = self.s
        with torch.no_grad():
            probs = {k: v.detach() for k, v in self.probs().items()}
        start = self.argmax_path()
        _, start, _ = first_valid(self.net, start, probs)
        pool = candidate_pool(self.net, start, probs, int(s["pool_size"]), neighbours=bool(s["pool_neighbours"]))
        steps, repeats = int(s["pool_steps"]), int(s["pool_repeats"])
        scores = np.zeros((repeats, len(pool), 2))       # (run, member, [accuracy, loss])
        for run in range(repeats):
            net = self._train_pool_net(pool, steps, run)
            for i, (path, _) in enumerate(pool):
                scores[run, i] = self.path_metrics(path, net=net)
        mean = scores.mean(axis=0)
        records = []
        for rank, (path, arch) in enumerate(pool):
            records.append({"rank": rank, "arch": arch.to_dict(), "valid_acc": float(mean[rank, 0]),
                            "valid_loss": float(mean[rank, 1]),
                            "log_prob": float(sum(math.log(max(float(probs[g][r, i]), 1e-12))
                                                  for g, row in path.items() for r, i in enumerate(row) if i >= 0)),
                            "collapsed": is_collapsed(self.net, path), "path": path})
            if repeats > 1:
                records[-1]["valid_acc_runs"] = [float(v) for v in scores[:, rank, 0]]
        best = pool_ranking(records)[0]
        summary = {"pool_size": len(records), "picked_rank": best["rank"], "pool_steps": steps,
                   "pool_init": s["pool_init"], "pool_repeats": repeats}
        chosen = best["path"]
        for r in records:
            del r["path"]
        return chosen, records, summary

    def _train_pool_net(self, pool: list[tuple[Path, Architecture]], steps: int, run: int) -> ChoiceSupernet:
        """The supernet that scores the pool: run ``run`` of ``pool_repeats`` (own init and draws),
        trained ``steps`` single-path steps on uniformly drawn pool members."""
        s = self.s
        net: ChoiceSupernet
        if s["pool_init"] == "fresh":
            net = ChoiceSupernet(self.net.space, self.input_shape, self.net.num_classes,
                                 seed=_stream_seed(self.seed, 1 + run, 15))
            params = [p for p in net.parameters() if p.requires_grad]
            opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=POOL_FRESH_LR,
                                                           weight_decay=POOL_FRESH_WEIGHT_DECAY)
            lr0 = POOL_FRESH_LR
        else:
            net, params, opt, lr0 = self.net, self.wparams, self.w_opt, POOL_LR_FACTOR * s["w_lr"]
        if steps <= 0 or not pool:
            return net
        gen = torch.Generator().manual_seed(_stream_seed(self.seed, 1 + run, 14))
        bs = min(s["batch_size"], len(self.yw))
        net.train()
        for step in range(steps):
            lr = lr0 * 0.5 * (1.0 + math.cos(math.pi * step / steps))
            for group in opt.param_groups:
                group["lr"] = lr
            path = pool[int(torch.randint(len(pool), (1,), generator=gen))][0]
            idx = torch.randint(len(self.yw), (bs,), generator=gen)
            net.set_path(path)
            try:
                loss = F.cross_entropy(net(self.xw[idx]), self.yw[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, GRAD_CLIP)
                opt.step()
            finally:
                net.set_path(None)
        return net


# -- entry point -----------------------------------------------------------------------------------
def _resolve(method: str, space: SearchSpace, options: dict[str, Any]) -> dict[str, Any]:
    if method not in METHODS:
        raise UnknownNameError(f"unknown differentiable method {method!r}; choose from {', '.join(METHODS)}")
    d = METHOD_DEFAULTS[method]
    s = dict(options)
    _check(isinstance(s["epochs"], int) and not isinstance(s["epochs"], bool) and s["epochs"] >= 0,
           f"{method}: epochs={s['epochs']!r} must be an integer >= 0 (0: the method's default)")
    for key in ("epochs", "w_lr", "a_lr", "tau_max", "tau_min"):
        value = s[key]
        _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0,
               f"{method}: {key}={value!r} must be a number >= 0 (0: the method's default)")
        if value == 0:
            s[key] = d[key]
    s["epochs"] = int(s["epochs"])
    _check(isinstance(s["warmup_epochs"], int) and not isinstance(s["warmup_epochs"], bool),
           f"{method}: warmup_epochs must be an integer (< 0: the method's default)")
    if s["warmup_epochs"] < 0:
        s["warmup_epochs"] = int(d["warmup_epochs"])
    _check(isinstance(s["batch_size"], int) and s["batch_size"] >= 1, f"{method}: batch_size must be an integer >= 1")
    _check(s["order"] in (1, 2), f"{method}: order must be 1 or 2, not {s['order']!r}")
    _check(s["order"] == 1 or method in ("darts", "pc-darts"),
           f"{method}: order=2 (the unrolled DARTS gradient) applies to darts and pc-darts only")
    _check(s["tau_min"] <= s["tau_max"], f"{method}: tau_min ({s['tau_min']}) exceeds tau_max ({s['tau_max']})")
    _check(s["guard"] in GUARDS, f"{method}: unknown guard {s['guard']!r}; choose from {', '.join(GUARDS)}")
    _check(s["w_optimizer"] in W_OPTIMIZERS,
           f"{method}: w_optimizer must be one of {', '.join(W_OPTIMIZERS)}, not {s['w_optimizer']!r}")
    _check(isinstance(s["threads"], int) and s["threads"] >= 1, f"{method}: threads must be an integer >= 1")
    _check(isinstance(s["stable_epochs"], int) and s["stable_epochs"] >= 1, f"{method}: stable_epochs must be >= 1")
    _check(isinstance(s["finetune_steps"], int) and s["finetune_steps"] >= 0, f"{method}: finetune_steps must be >= 0")
    for key, low in (("pool_size", 1), ("pool_steps", 0), ("pool_repeats", 1)):
        value = s[key]
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= low,
               f"{method}: {key} must be an integer >= {low}")
    _check(s["pool_init"] in POOL_INITS,
           f"{method}: pool_init must be one of {', '.join(POOL_INITS)}, not {s['pool_init']!r}")
    _check(s["pool_repeats"] == 1 or s["pool_init"] == "fresh",
           f"{method}: pool_repeats > 1 needs pool_init='fresh' (the search supernet can be fine-tuned once)")
    lw = s["latency_weight"]
    _check(isinstance(lw, (int, float)) and not isinstance(lw, bool) and math.isfinite(lw),
           f"{method}: latency_weight={lw!r} must be a number (< 0: the method's default)")
    if lw < 0:
        s["latency_weight"] = d["latency_weight"]
    k = s["partial_channels"]
    _check(isinstance(k, int) and not isinstance(k, bool) and k >= 0,
           f"{method}: partial_channels={k!r} must be an integer >= 0 (0: the method's default)")
    if method != "pc-darts":
        _check(k in (0, 1), f"{method}: partial_channels applies to pc-darts only")
        s["partial_channels"] = 1
    elif k == 0:
        from ..build import model_family
        s["partial_channels"] = int(d["partial_channels"]) if model_family(space) == "cells" else 1
    return s


def run_differentiable(method: str, space: SearchSpace, data: TaskData, *, epochs: int = 0, batch_size: int = 64,
                       w_lr: float = 0.0, a_lr: float = 0.0, order: int = 1, partial_channels: int = 0,
                       latency_weight: float = -1.0, latency_table: LatencyTable | None = None,
                       guard: str = "pool", seed: int = 0, threads: int = 1, progress: bool = False,
                       warmup_epochs: int = -1, tau_max: float = 0.0, tau_min: float = 0.0,
                       w_optimizer: str = "sgd", finetune_steps: int = 5, stable_epochs: int = 3,
                       pool_size: int = 50, pool_steps: int = 1500, pool_neighbours: bool = True,
                       pool_init: str = "fresh", pool_repeats: int = 1,
                       alpha_init: Mapping[str, Any] | None = None) -> OneShotResult:
    """Differentiable NAS of ``method`` (one of :data:`METHODS`) over ``space`` on ``data``.

    Options at 0 (``latency_weight``/``warmup_epochs`` below 0) take the method's default from
    :data:`METHOD_DEFAULTS`. ``epochs``: passes over the weight half of ``data.x_train``
    (``warmup_epochs`` of them train weights only); ``w_lr``: peak learning rate of the
    supernet weights (``w_optimizer`` "sgd": momentum 0.9 Nesterov, or "adamw"; cosine to 0);
    ``a_lr``: Adam learning rate of the architecture parameters (betas (0.5, 0.999), weight
    decay 1e-3); ``order``: 1 or 2 (darts, pc-darts); ``partial_channels``: PC-DARTS's ``K``
    (cells only); ``latency_weight``: weight of the normalised expected latency in the
    architecture loss (fbnet, proxyless); ``latency_table``: a
    :class:`~archscout.hardware.LatencyTable` to read candidate latencies from (missing ones
    are timed and added); ``guard``: "pool" (default: selection by supernet accuracy over a
    candidate pool, see :meth:`_Search.select_from_pool`) | "perturbation" | "darts+" | "none"
    (see :mod:`.selection`); ``pool_size``: how many of the most probable architectures the
    pool holds, besides (``pool_neighbours``) the argmax's one-row changes; ``pool_steps``:
    single-path training steps on the pool; ``pool_init``: "fresh" (a newly initialised
    supernet trains on the pool) or "inherit" (the search's supernet is fine-tuned on it);
    ``pool_repeats``: independently initialised fresh pool supernets whose scores are averaged
    (each costs ``pool_steps`` more steps);
    ``finetune_steps``: weight steps after each perturbation decision;
    ``stable_epochs``: DARTS+'s ranking-stability window; ``tau_max``/``tau_min``: Gumbel
    temperature, annealed geometrically over the search epochs (gdas, fbnet);
    ``alpha_init``: initial architecture logits per group (``(rows, candidates)`` arrays);
    ``threads``: torch intra-op threads; ``progress``: a tqdm bar over epochs.

    Returns a :class:`~archscout.oneshot.base.OneShotResult`: ``archs[0]`` the derived
    architecture (``archs[1]`` the plain argmax one when the guard changed it), ``scores``
    with ``supernet_acc`` (validation accuracy of the path with the search supernet's
    weights, BatchNorm recalibrated; the pool guard's own scores are in ``info["pool"]``),
    ``param_free_fraction`` and, with a lookup table, ``lut_latency_ms``;
    ``history`` one record per epoch; ``info`` the resolved settings and what the guard did.
    Raises a one-line :class:`~archscout.errors.ArchscoutError` for a bad method or option.
    """
    options = {"epochs": epochs, "batch_size": batch_size, "w_lr": w_lr, "a_lr": a_lr, "order": order,
               "partial_channels": partial_channels, "latency_weight": latency_weight, "guard": guard, "seed": seed,
               "threads": threads, "warmup_epochs": warmup_epochs, "tau_max": tau_max, "tau_min": tau_min,
               "w_optimizer": w_optimizer, "finetune_steps": finetune_steps, "stable_epochs": stable_epochs,
               "pool_size": pool_size, "pool_steps": pool_steps, "pool_neighbours": bool(pool_neighbours),
               "pool_init": pool_init, "pool_repeats": pool_repeats}
    s = _resolve(method, space, options)
    start = time.perf_counter()
    with torch_threads(s["threads"]), _preserved_global_rng():
        torch.manual_seed(_stream_seed(int(seed), 0, 2))       # dropout and other implicit draws
        search = _Search(method, space, data, s, latency_table, alpha_init)
        history, info = _search_loop(search, progress)
        result = _derive(search, history, info)
    result.search_s = time.perf_counter() - start
    return result


def _search_loop(search: _Search, progress: bool) -> tuple[list[dict[str, float]], dict[str, Any]]:
    s = search.s
    epochs = s["epochs"]
    monitor = DartsPlusMonitor(search.net, s["stable_epochs"]) if s["guard"] == "darts+" else None
    skip_monitor = DartsPlusMonitor(search.net, s["stable_epochs"])     # its signals are logged for every guard
    history: list[dict[str, float]] = []
    info: dict[str, Any] = {"stopped_at": None, "stop_reason": None}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, desc=search.method, unit="epoch")
    for epoch in range(epochs):
        if s["tau_max"] > 0 and epochs > 1:
            search.tau = s["tau_max"] * (s["tau_min"] / s["tau_max"]) ** (epoch / (epochs - 1))
        before = search.snapshot()
        entry = search.run_epoch(epoch)
        path = search.argmax_path()
        entry["valid_acc"], entry["valid_loss"] = search.path_metrics(path)
        entry["entropy"] = search.entropy()
        entry["param_free_fraction"] = param_free_fraction(search.net, path)
        with torch.no_grad():
            probs = search.probs()
        if search.method in ("gdas", "fbnet"):
            entry["tau"] = search.tau
        if search.lut is not None:
            with torch.no_grad():
                entry["expected_latency_ms"] = float(search.lut.expected(probs))
        searching = epoch >= s["warmup_epochs"]
        reason = None
        if searching:
            reason = (monitor or skip_monitor).update(path, probs)
        entry["skips"] = float(skip_count(search.net, path))
        entry["stable_epochs"] = float((monitor or skip_monitor).stable)
        history.append(entry)
        if bar is not None:
            bar.set_postfix(loss=f"{entry['train_loss']:.3f}", acc=f"{entry['valid_acc']:.3f}")
            bar.update(1)
        if monitor is not None and reason is not None and epoch + 1 < epochs:
            info["stopped_at"] = epoch + 1
            info["stop_reason"] = reason
            if reason == "skip":     # derive from the weights before the skips took over
                with torch.no_grad():
                    for g in search.groups:
                        search.alpha[search._key(g.name)].copy_(before[g.name])
            break
    if bar is not None:
        bar.close()
    info["epochs_run"] = len(history)
    return history, info


def _derive(search: _Search, history: list[dict[str, float]], info: dict[str, Any]) -> OneShotResult:
    net, s = search.net, search.s
    with torch.no_grad():
        probs = {k: v.detach() for k, v in search.probs().items()}
    argmax = search.argmax_path()
    argmax_arch, argmax, _ = first_valid(net, argmax, probs)
    chosen, scores_for = argmax, probs
    guard_info: dict[str, Any] = {"guard": s["guard"]}
    if s["guard"] == "perturbation":
        t0 = time.perf_counter()
        picked, importance, records = search.select_by_perturbation()
        _, chosen, _ = first_valid(net, picked, importance)
        scores_for = importance
        guard_info["decisions"] = records
        guard_info["changed"] = [r for r in records if "selected" in r and r["selected"] != r["argmax"]]
        guard_info["selection_s"] = time.perf_counter() - t0
    elif s["guard"] == "pool":
        t0 = time.perf_counter()
        chosen, records, summary = search.select_from_pool()
        guard_info.update(summary)
        guard_info["pool"] = records
        guard_info["selection_s"] = time.perf_counter() - t0
    elif s["guard"] == "darts+":
        guard_info["stopped_at"] = info["stopped_at"]
        guard_info["stop_reason"] = info["stop_reason"]
    if s["guard"] != "none":
        chosen, change = avoid_collapse(net, chosen, scores_for)
        guard_info["anti_collapse"] = change
    arch = net.arch_of(chosen)

    def scores_of(path: Path) -> dict[str, float]:
        acc, loss = search.path_metrics(path)
        out = {"supernet_acc": acc, "supernet_loss": loss, "param_free_fraction": param_free_fraction(net, path)}
        if search.lut is not None:
            out["lut_latency_ms"] = search.lut.of_path(path)
        return out

    archs, scores = [arch], [scores_of(chosen)]
    if argmax_arch.key != arch.key:
        archs.append(argmax_arch)
        scores.append(scores_of(argmax))
    info.update(guard_info)
    info["collapsed"] = is_collapsed(net, chosen)
    info["argmax_arch"] = argmax_arch.to_dict()
    info["settings"] = {k: v for k, v in s.items()}
    info["arch_weights"] = {g.name: {"rows": list(g.row_labels), "candidates": list(g.candidates),
                                     "probs": [[round(float(p), 4) for p in row] for row in probs[g.name]]}
                            for g in search.groups}
    if search.beta is not None and len(search.beta):
        ew = search.edge_weights() or {}
        info["edge_weights"] = {k: [round(float(v), 4) for v in t.detach()] for k, t in ew.items()}
    if search.lut is not None:
        info["lut_latency_ms"] = scores[0]["lut_latency_ms"]
        info["lut"] = {"entries": search.lut.entries(), "read": search.lut.read, "measured": search.lut.measured,
                       "uniform_expected_ms": search.lat_ref}
    return OneShotResult(method=search.method, archs=archs, scores=scores, search_s=0.0, history=history, info=info)


__all__ = ["LATENCY_METHODS", "METHODS", "METHOD_DEFAULTS", "run_differentiable"]
