"""Fake quantization for quantization-aware training and cost estimates.

Modes (:data:`QUANT_MODES`):

* ``fp32``   – the module unchanged.
* ``int8`` / ``int4`` – every ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` is wrapped so its weight is
  fake-quantized symmetrically per output channel (scale = max|w| / qmax, qmax = 127 or 7, zero
  point 0) and its input per tensor with an observed scale: in training the batch's max|x| is used
  and folded into a running estimate (EMA, momentum 0.1); in eval the running estimate is used.
  int8 rounds with torch's ``fake_quantize_per_channel_affine`` / ``fake_quantize_per_tensor_affine``
  (levels -128..127, the range ONNX QuantizeLinear accepts; the symmetric scale leaves -128 unused
  except by clipping); int4 writes the same rounding as plain ops (:func:`round_ste`), because ONNX
  export of torch's ops rejects a 4-bit range. Both backward passes are the straight-through
  estimator: identity inside the clamp range, zero outside.
* ``binary`` – XNOR-Net weights: sign(w) * mean(|w|) per output channel (sign(0) taken as +1, so
  every channel holds exactly two values); STE with the gradient clipped to |w| <= 1;
  activations stay in float.

Modules that keep their weights as stacked tensors instead of ``nn.Linear`` (the MoE experts and
FFF leaves) expose a ``weight_quant`` attribute; :func:`quantize` sets it and they fake-quantize
those weights themselves with :func:`fake_quant_weight` (weights only; their inputs stay float).

Everything here is plain tensor math (no autograd.Function, no data-dependent shapes), so a
quantized model still goes through ``torch.export`` and ``torch.onnx.export(dynamo=True)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

QUANT_MODES = ("fp32", "int8", "int4", "binary")


def quant_max(mode: str) -> int:
    """Largest symmetric integer level: 127 (int8), 7 (int4)."""
    if mode == "int8":
        return 127
    if mode == "int4":
        return 7
    raise ValueError(f"mode {mode!r} has no integer levels")


def round_ste(x: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    """Symmetric fake quantization clamp(round(x / scale), -qmax, qmax) * scale with a clipped STE.

    The int4 path: ONNX's QuantizeLinear mapping of torch's fake-quantize ops only takes the
    (-128, 127), (0, 127) and (0, 255) ranges, so 4-bit levels are written out as plain ops.
    """
    bound = qmax * scale
    clipped = torch.maximum(torch.minimum(x, bound), -bound)
    return clipped + (torch.round(clipped / scale) * scale - clipped).detach()


def fake_quant_rows(w: torch.Tensor, mode: str, plain_ops: bool = False) -> torch.Tensor:
    """Fake-quantize a 2-d weight (rows = output channels) per row; ``fp32`` returns it unchanged.

    ``plain_ops`` writes int8 with round/clamp instead of torch's fake-quantize op (same values:
    the scale maps the largest weight to 127); export then keeps a batch-dependent row count
    dynamic, which the fake-quantize op's export does not.
    """
    if mode == "fp32":
        return w
    if mode == "binary":
        alpha = w.detach().abs().mean(dim=1, keepdim=True)
        target = torch.where(w.detach() >= 0, alpha, -alpha)
        clipped = torch.clamp(w, -1.0, 1.0)  # STE: d target / d w = 1 where |w| <= 1, else 0
        return clipped + (target - clipped).detach()
    qmax = quant_max(mode)
    scale = (w.detach().abs().amax(dim=1) / qmax).clamp_min(1e-8)
    if mode == "int4" or plain_ops:
        return round_ste(w, scale.unsqueeze(1), qmax)
    zero = torch.zeros_like(scale, dtype=torch.int32)  # no size read from the shape: export keeps batch dynamic
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127)


def fake_quant_weight(w: torch.Tensor, mode: str, in_dim: int) -> torch.Tensor:
    """Fake-quantize ``w`` per output channel, where ``in_dim`` is the (single) reduction axis.

    Every other axis indexes a channel: a stacked expert weight (E, D_in, D_out) with ``in_dim=1``
    gets one scale per (expert, output unit). Used by MoE and FFF on gathered or stacked weights.
    """
    if mode == "fp32":
        return w
    last = w.dim() - 1  # explicit non-negative axes: ONNX export mishandles movedim(-1) as a Transpose perm
    moved = w.movedim(in_dim, last)
    q = fake_quant_rows(moved.reshape(-1, moved.shape[last]), mode, plain_ops=True)
    return q.reshape(moved.shape).movedim(last, in_dim)


class ActObserver(nn.Module):
    """Per-tensor symmetric fake quantization of activations with a running max|x| scale."""

    def __init__(self, mode: str, momentum: float = 0.1) -> None:
        super().__init__()
        self.qmax = quant_max(mode)
        self.momentum = momentum
        self.register_buffer("running_absmax", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = x.detach().abs().max()
        if self.training:
            with torch.no_grad():
                fresh = self.running_absmax <= 0
                blended = (1 - self.momentum) * self.running_absmax + self.momentum * current
                self.running_absmax.copy_(torch.where(fresh, current, blended))
            absmax = current
        else:  # an observer that never saw training data falls back to the batch's own range
            absmax = torch.where(self.running_absmax > 0, self.running_absmax, current)
        scale = (absmax / self.qmax).clamp_min(1e-8).reshape(1).float()
        # Plain round/clamp ops rather than torch.fake_quantize_per_tensor_affine with a tensor
        # scale: torch.export (and so ONNX export) cannot keep the batch size dynamic through that op.
        return round_ste(x, scale, self.qmax)


class QuantConv(nn.Module):
    """A wrapped ``nn.Conv1d``/``nn.Conv2d`` with fake-quantized weight (and input, for int modes).

    Keeps the original conv as ``inner`` (same parameters, same count) and calls its own
    padding logic with the quantized weight.
    """

    def __init__(self, inner: nn.Module, mode: str) -> None:
        super().__init__()
        if mode not in QUANT_MODES or mode == "fp32":
            raise ValueError(f"QuantConv needs one of int8, int4, binary; got {mode!r}")
        self.inner = inner
        self.mode = mode
        self.observer = ActObserver(mode) if mode != "binary" else nn.Identity()

    def quantized_weight(self) -> torch.Tensor:
        w = self.inner.weight
        return fake_quant_rows(w.reshape(w.shape[0], -1), self.mode).reshape(w.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner._conv_forward(self.observer(x), self.quantized_weight(), self.inner.bias)


class QuantLinear(nn.Module):
    """A wrapped ``nn.Linear`` with fake-quantized weight (and input, for int modes)."""

    def __init__(self, inner: nn.Linear, mode: str) -> None:
        super().__init__()
        if mode not in QUANT_MODES or mode == "fp32":
            raise ValueError(f"QuantLinear needs one of int8, int4, binary; got {mode!r}")
        self.inner = inner
        self.mode = mode
        self.observer = ActObserver(mode) if mode != "binary" else nn.Identity()

    def quantized_weight(self) -> torch.Tensor:
        return fake_quant_rows(self.inner.weight, self.mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.observer(x), self.quantized_weight(), self.inner.bias)


def quantize(module: nn.Module, mode: str) -> nn.Module:
    """Return ``module`` with every Conv1d/Conv2d/Linear fake-quantized to ``mode`` (in place).

    ``fp32`` returns the module untouched. Already-wrapped layers are left alone, so quantizing
    twice is harmless (the first mode wins). Modules with a ``weight_quant`` attribute (stacked
    expert/leaf weights) get it set to ``mode``.
    """
    if mode not in QUANT_MODES:
        raise ValueError(f"unknown quant mode {mode!r}; known: {', '.join(QUANT_MODES)}")
    if mode == "fp32":
        return module
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return QuantConv(module, mode)
    if isinstance(module, nn.Linear):
        return QuantLinear(module, mode)
    if isinstance(module, (QuantConv, QuantLinear)):
        return module
    if hasattr(module, "weight_quant"):
        module.weight_quant = mode
    for name, child in list(module.named_children()):
        new = quantize(child, mode)
        if new is not child:
            setattr(module, name, new)
    return module
