"""Training-free ("zero-cost") proxies: score an untrained network from one minibatch.

Every proxy returns one finite float where **higher = predicted better**. They follow
Abdelfattah et al. 2021 ("Zero-Cost Proxies for Lightweight NAS") for the pruning-at-init
family, Mellor et al. 2021 for the two NASWOT scores, Gracheva 2023 for epsinas and Li et al.
2023 (ICLR, "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients") for zico:

* ``synflow`` (data-free): on a float64 copy whose parameters and buffers are replaced by
  their absolute values, with BatchNorm (and dropout) in eval mode, R = sum of the logits for
  one all-ones input; score = **log** of sum |θ ⊙ ∂R/∂θ| over the weights of the conv and
  linear layers. The log keeps the score finite (the raw sum grows multiplicatively with
  depth) without changing its ranking. A zero sum (no path from input to output) gives
  ``SYNFLOW_FLOOR`` (log of the smallest positive double); an overflowing one
  ``SYNFLOW_CEIL`` (log of the largest double).
* ``snip``: sum |θ ⊙ ∂L/∂θ| over conv/linear weights, L the mean cross-entropy of the batch.
* ``grasp``: sum of −θ ⊙ (H g) over conv/linear weights, g = ∂L/∂θ and H the Hessian of L
  (a Hessian-gradient product by double backward).
* ``fisher``: for every conv/linear output a (hooked), per channel k
  0.5 · mean_n (Σ_positions a ⊙ ∂L/∂a)², summed over channels and layers.
* ``grad_norm``: sum over conv/linear weight tensors of ||∂L/∂θ||₂.
* ``jacob_cov`` (NASWOT v1): J = ∂(Σ logits)/∂x per sample; C = correlation matrix of the
  rows of J (B × B); score = −Σ_i [log(λ_i + k) + 1/(λ_i + k)], λ the eigenvalues of C,
  k = 1e-5. A sample whose Jacobian is constant (a dead network) counts as fully correlated
  with every other one (its correlations are set to 1; negative eigenvalues this creates
  are clipped to 0), so a network without any input gradient gets the lowest possible
  score, that of a rank-1 C.
* ``naswot`` (NASWOT v2): c = (input of a ReLU > 0) per sample, for every module whose class
  name contains "ReLU"; K = Σ_ReLUs [c cᵀ + (1 − c)(1 − c)ᵀ] (B × B, = N_A − Hamming
  distance); score = log|det K|. K holds integers, so a non-singular K has log|det| ≥ 0; a
  singular one (identical activation patterns, no ReLU) gives ``NASWOT_SINGULAR`` = −1.
* ``epsinas``: every module ``weight`` set to one constant (then the other, ``EPSINAS_WEIGHTS``
  = 1e-7 and 1, the paper's NAS-Bench-201 pair), biases to 0, embeddings uniform in [0, 1);
  the float64 logits of the batch (BatchNorm in training mode) are flattened and min-max scaled to
  [0, 1] per initialisation; exact zeros are dropped; score = mean |p₁ − p₂| / mean p. A
  constant output (no dispersion) gives 0, the lowest score.
* ``zico``: the minibatch is split, in the order :func:`minibatch` returns it, into two equal
  halves (an odd last sample is dropped; a ``batch_size`` below ``ZICO_MIN_BATCH`` = 4 is an
  EvaluationError). Each half has its own forward pass (BatchNorm on that half's statistics)
  and gradient g = ∂L/∂θ, L that half's mean cross-entropy, for the conv/linear weights. Per
  layer and weight element: σ = the population standard deviation of the two halves' g
  (``torch.std`` with ``correction=0``, as the paper's ``np.std``) and μ = the mean of |g| over
  the halves; s = Σ μ/σ over the layer's elements with σ ≠ 0, and the layer adds log s when
  s > 0, nothing otherwise (no gradient, or the same one in both halves). Score = the sum over
  layers. As μ/σ = (|g₁| + |g₂|)/|g₁ − g₂| ≥ 1, a contributing layer adds ≥ 0 (up to
  rounding); a network without one (no gradient reaches a weight) gets ``ZICO_FLOOR`` = −1,
  below any real score. Non-finite gradients give ``FALLBACK``. Unlike the others, zico
  depends on which samples fall in which half, so it is **not** invariant to the order of
  the batch.
* ``params`` and ``flops``: :func:`archscout.hardware.count_params` / ``count_flops`` (per
  sample): bigger is "better", the baseline every proxy should beat.

Data-based proxies run in training mode (BatchNorm on batch statistics, as the papers do)
with dropout switched off, on a deep copy of the model: the caller's weights,
``requires_grad`` flags, modes and BatchNorm statistics are never touched. The minibatch is
``batch_size`` samples of the training split picked by ``seed`` (:func:`minibatch`);
randomness inside a proxy is seeded by ``seed`` and the global torch RNG is left as it was.
Scores are deterministic for a seed, and (up to float error) invariant to the order of the
samples in the batch, except zico (see above). A non-finite result of any proxy is replaced by
its documented fallback, or else by ``FALLBACK`` (−1e30), so a score is always finite.
"""
from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import EvaluationError
from ..training.data import TaskData
from .names import PROXIES, check_proxy, min_batch_size

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
EPSINAS_WEIGHTS = (1e-7, 1.0)
JACOB_K = 1e-5
SYNFLOW_FLOOR = math.log(sys.float_info.min * sys.float_info.epsilon)  # log of the smallest double, about -744.4
SYNFLOW_CEIL = math.log(sys.float_info.max)                            # about 709.8
NASWOT_SINGULAR = -1.0
ZICO_FLOOR = -1.0
ZICO_MIN_BATCH = min_batch_size("zico")  # two halves of >= 2 samples (BatchNorm in training mode needs 2)
FALLBACK = -1e30

ModelSource = nn.Module | Callable[[], nn.Module]


# -- inputs and working copies ------------------------------------------------------------------
def minibatch(data: TaskData, batch_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` (x, y) samples of the training split, chosen by ``seed`` (all of it when smaller)."""
    if int(batch_size) < 2:
        raise EvaluationError(f"proxies need a batch of at least 2 samples, not {batch_size}")
    n = len(data.x_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: min(int(batch_size), n)]
    return data.x_train[order], data.y_train[order]


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _working_copy(model: nn.Module) -> nn.Module:
    """A deep copy in training mode with dropout off, every parameter trainable and no gradients."""
    m = copy.deepcopy(model)
    m.train()
    for mod in m.modules():
        if isinstance(mod, nn.modules.dropout._DropoutNd):
            mod.eval()
    for p in m.parameters():
        p.requires_grad_(True)
        p.grad = None
    return m


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS) and isinstance(m.weight, torch.Tensor)]


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise EvaluationError("proxies need a classifier returning logits of shape (batch, classes)")
    return out


def _total(values: Iterable[torch.Tensor]) -> float:
    return float(sum((v.detach().double().sum() for v in values), torch.zeros((), dtype=torch.float64)))


# -- gradient-based proxies (pruning at initialisation) ---------------------------------------------
def _snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m = _working_copy(model)
    F.cross_entropy(_logits(m, x), y).backward()
    return _total((l.weight * l.weight.grad).abs() for l in _weight_layers(m) if l.weight.grad is not None)


def _grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m = _working_copy(model)
    F.cross_entropy(_logits(m, x), y).backward()
    return _total(l.weight.grad.norm() for l in _weight_layers(m) if l.weight.grad is not None)


def _grasp(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m = _working_copy(model)
    weights = [l.weight for l in _weight_layers(m)]
    if not weights:
        return 0.0
    # the fused attention kernels have no second derivative: use the plain (math) one
    with sdpa_kernel([SDPBackend.MATH]):
        loss = F.cross_entropy(_logits(m, x), y)
        grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
        # z = g . g with the first g held constant: its gradient is H g (one forward, as BatchNorm
        # in training mode gives the same loss on a second pass over the same batch)
        terms = [(g.detach() * g).sum() for g in grads if g is not None and g.requires_grad]
        if not terms:
            return 0.0
        try:
            hg = torch.autograd.grad(sum(terms), weights, allow_unused=True)
        except RuntimeError as exc:
            raise EvaluationError(f"grasp needs second derivatives: {str(exc).splitlines()[0]}") from None
    return _total(-w.detach() * h for w, h in zip(weights, hg) if h is not None)


def _fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m = _working_copy(model)
    parts: list[torch.Tensor] = []

    def forward_hook(module: nn.Module, _inputs: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return
        act = out.detach().clone()
        linear = isinstance(module, nn.Linear)

        def grad_hook(grad: torch.Tensor) -> None:
            prod = act.double() * grad.detach().double()
            if linear:  # channels last: sum over the positions between batch and channels
                per_channel = prod.sum(dim=tuple(range(1, prod.ndim - 1))) if prod.ndim > 2 else prod
            else:       # (B, C, *positions)
                per_channel = prod.sum(dim=tuple(range(2, prod.ndim))) if prod.ndim > 2 else prod
            parts.append(per_channel.pow(2).mean(0).mul(0.5).sum())

        out.register_hook(grad_hook)

    handles = [l.register_forward_hook(forward_hook) for l in _weight_layers(m)]
    try:
        F.cross_entropy(_logits(m, x), y).backward()
    finally:
        for h in handles:
            h.remove()
    return _total(parts)


def _synflow(model: nn.Module, data: TaskData) -> float:
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    for p in m.parameters():
        p.requires_grad_(True)
        p.grad = None
    dtype = torch.float64 if data.x_train.is_floating_point() else data.x_train.dtype
    x = torch.ones((1, *data.input_shape), dtype=dtype, device=_device(m))
    out = m(x)
    out.sum().backward()
    total = _total((l.weight * l.weight.grad).abs() for l in _weight_layers(m) if l.weight.grad is not None)
    if math.isnan(total):
        return FALLBACK
    if total == math.inf:
        return SYNFLOW_CEIL
    return math.log(total) if total > 0 else SYNFLOW_FLOOR


# -- NASWOT (Mellor et al.) ---------------------------------------------------------------------------
def _forward_inputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The tensor to differentiate by and the function from it to the logits: the input itself,
    or for token ids (not differentiable) the output of a UnitNetwork's first unit (the embedding)."""
    if x.is_floating_point():
        return x.clone(), lambda t: _logits(model, t)
    units = getattr(model, "units", None)
    if units is None or len(units) < 2:
        raise EvaluationError("jacob_cov needs floating-point inputs or a UnitNetwork with an embedding unit")
    with torch.no_grad():
        h = units[0](x)

    def rest(t: torch.Tensor) -> torch.Tensor:
        for unit in list(units)[1:]:
            t = unit(t)
        return t

    return h.detach().clone(), rest


def jacob_cov_score(jacobian: np.ndarray, k: float = JACOB_K) -> float:
    """Mellor et al.'s v1 score of a (B, D) Jacobian (see the module docstring; higher = better)."""
    j = np.asarray(jacobian, dtype=np.float64).reshape(len(jacobian), -1)
    j = j - j.mean(axis=1, keepdims=True)
    norms = np.sqrt((j * j).sum(axis=1))
    dead = ~(norms > 0) | ~np.isfinite(norms)
    safe = np.where(dead, 1.0, norms)
    corr = (j / safe[:, None]) @ (j / safe[:, None]).T
    corr[dead, :] = 1.0
    corr[:, dead] = 1.0
    np.fill_diagonal(corr, 1.0)
    corr = np.nan_to_num(corr, nan=1.0, posinf=1.0, neginf=-1.0)
    eig = np.maximum(np.linalg.eigvalsh((corr + corr.T) / 2.0), 0.0)
    return float(-np.sum(np.log(eig + k) + 1.0 / (eig + k)))


def _jacob_cov(model: nn.Module, x: torch.Tensor) -> float:
    m = _working_copy(model)
    inp, forward = _forward_inputs(m, x)
    inp.requires_grad_(True)
    forward(inp).sum().backward()
    grad = inp.grad if inp.grad is not None else torch.zeros_like(inp)
    return jacob_cov_score(grad.detach().reshape(len(grad), -1).double().cpu().numpy())


def _naswot(model: nn.Module, x: torch.Tensor) -> float:
    m = _working_copy(model)
    n = len(x)
    kernel = torch.zeros((n, n), dtype=torch.float64)

    def hook(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
        nonlocal kernel
        codes = (inputs[0].detach().reshape(n, -1) > 0).double().cpu()
        kernel = kernel + codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T

    handles = [mod.register_forward_pre_hook(hook) for mod in m.modules() if "ReLU" in type(mod).__name__]
    try:
        with torch.no_grad():
            _logits(m, x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = np.linalg.slogdet(kernel.numpy())
    # an integer matrix that is not singular has |det| >= 1: anything below is float noise on a singular one
    if sign == 0 or not np.isfinite(logdet) or logdet < -0.5:
        return NASWOT_SINGULAR
    return float(logdet)


# -- epsinas (Gracheva) ----------------------------------------------------------------------------------
def _epsinas(model: nn.Module, x: torch.Tensor, weights: tuple[float, float] = EPSINAS_WEIGHTS) -> float:
    m = _working_copy(model).double()  # float64: the small constant underflows float32 in a few layers
    if x.is_floating_point():
        x = x.double()
    preds = []
    with torch.no_grad():
        for value in weights:
            for mod in m.modules():
                bias = getattr(mod, "bias", None)
                if isinstance(bias, torch.Tensor) and bias.is_floating_point():
                    bias.fill_(0.0)
                weight = getattr(mod, "weight", None)
                if isinstance(weight, torch.Tensor) and weight.is_floating_point():
                    if isinstance(mod, nn.Embedding):
                        weight.uniform_(0.0, 1.0)
                    else:
                        weight.fill_(value)
            out = _logits(m, x).double().flatten()
            lo, hi = out.min(), out.max()
            if not (torch.isfinite(lo) and torch.isfinite(hi)) or hi <= lo:
                return 0.0  # a constant output has no dispersion
            preds.append((out - lo) / (hi - lo))
    p = torch.stack(preds)
    p[p == 0] = torch.nan
    mean = torch.nanmean(p)
    mae = torch.nanmean((p[0] - p[1]).abs())
    score = float(mae / mean)
    return score if math.isfinite(score) else 0.0


# -- ZiCo (Li et al.) ------------------------------------------------------------------------------------
def _zico(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    half = len(x) // 2
    if half < ZICO_MIN_BATCH // 2:
        raise EvaluationError(f"zico needs a batch of at least {ZICO_MIN_BATCH} samples (two halves), not {len(x)}")
    m = _working_copy(model)
    weights = [l.weight for l in _weight_layers(m)]
    if not weights:
        return ZICO_FLOOR
    per_half: list[list[torch.Tensor]] = []
    for part in (slice(0, half), slice(half, 2 * half)):
        loss = F.cross_entropy(_logits(m, x[part]), y[part])
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        per_half.append([torch.zeros_like(w) if g is None else g.detach() for w, g in zip(weights, grads)])
    score, contributing = 0.0, 0
    for g1, g2 in zip(*per_half):
        g = torch.stack([g1.reshape(-1), g2.reshape(-1)]).double()   # 2 x numel
        std = torch.std(g, dim=0, correction=0)
        keep = std != 0
        s = float((g.abs().mean(dim=0)[keep] / std[keep]).sum())
        if not math.isfinite(s):
            return math.nan  # non-finite gradients: compute_proxy gives FALLBACK
        if s > 0:
            score += math.log(s)
            contributing += 1
    return score if contributing else ZICO_FLOOR


# -- the public API ------------------------------------------------------------------------------------------
def compute_proxy(name: str, model: nn.Module, data: TaskData, *, batch_size: int = 64, seed: int = 0) -> float:
    """The proxy ``name`` (one of :data:`PROXIES`) of ``model`` on a minibatch of ``data``'s training
    split (``batch_size`` samples chosen by ``seed``); a finite float, higher = predicted better.

    ``model`` is a classifier returning logits (an archscout ``UnitNetwork``); it is left unchanged.
    """
    check_proxy(name)
    if name == "zico" and int(batch_size) < ZICO_MIN_BATCH:
        raise EvaluationError(f"zico needs a batch of at least {ZICO_MIN_BATCH} samples (two halves), "
                              f"not {batch_size}")
    if name == "params":
        from ..hardware import count_params

        return float(count_params(model))
    if name == "flops":
        from ..hardware import count_flops

        return float(count_flops(model, tuple(data.input_shape)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if name == "synflow":
            score = _synflow(model, data)
        else:
            x, y = minibatch(data, batch_size, seed)
            device = _device(model)
            x, y = x.to(device), y.to(device)
            if name == "snip":
                score = _snip(model, x, y)
            elif name == "grasp":
                score = _grasp(model, x, y)
            elif name == "fisher":
                score = _fisher(model, x, y)
            elif name == "grad_norm":
                score = _grad_norm(model, x, y)
            elif name == "jacob_cov":
                score = _jacob_cov(model, x)
            elif name == "naswot":
                score = _naswot(model, x)
            elif name == "zico":
                score = _zico(model, x, y)
            else:
                score = _epsinas(model, x)
    return float(score) if math.isfinite(score) else FALLBACK


def compute_proxies(names: Iterable[str], model_factory: ModelSource, data: TaskData, *, batch_size: int = 64,
                    seed: int = 0) -> dict[str, float]:
    """Several proxies of one network: ``{name: score}`` in the order given.

    ``model_factory`` builds the (untrained) network, called once; a module is used as is.
    """
    names = [check_proxy(n) for n in names]
    model = model_factory if isinstance(model_factory, nn.Module) else model_factory()
    return {n: compute_proxy(n, model, data, batch_size=batch_size, seed=seed) for n in names}


__all__ = ["EPSINAS_WEIGHTS", "FALLBACK", "NASWOT_SINGULAR", "PROXIES", "SYNFLOW_CEIL", "SYNFLOW_FLOOR",
           "ZICO_FLOOR", "ZICO_MIN_BATCH", "compute_proxies", "compute_proxy", "jacob_cov_score", "minibatch"]
