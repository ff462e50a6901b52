"""Shape-level building blocks: identity, zero, pooling, the cheapest projection, activations.

Spatial tensors are (B, C, L) for ``dim=1`` and (B, C, H, W) for ``dim=2``. Every block keeps
"same" padding, so a stride ``s`` maps a spatial length ``n`` to ``ceil(n / s)``; that only
works for odd kernels, which is why kernels are required to be odd throughout ``ops``.

This file (like every ops module except ``registry.py``) imports only torch and the standard
modules allowed by the exporter, which concatenates the ops sources into one standalone file.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "hswish", "sigmoid", "none")


def activation_layer(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    if name == "hswish":
        return nn.Hardswish()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")


def conv_layer(dim: int, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
               dilation: int = 1, bias: bool = False) -> nn.Module:
    """Conv1d/Conv2d with "same" padding for an odd ``kernel`` (output length ceil(n / stride))."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and >= 1, got {kernel}")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both channel counts ({c_in} -> {c_out})")
    cls = nn.Conv1d if dim == 1 else nn.Conv2d
    return cls(c_in, c_out, kernel, stride=stride, padding=dilation * (kernel - 1) // 2,
               dilation=dilation, groups=groups, bias=bias)


def norm_layer(dim: int, c: int, affine: bool = True) -> nn.Module:
    """BatchNorm1d/BatchNorm2d over ``c`` channels."""
    return nn.BatchNorm1d(c, affine=affine) if dim == 1 else nn.BatchNorm2d(c, affine=affine)


def pool_layer(dim: int, kind: str, kernel: int = 3, stride: int = 1) -> nn.Module:
    """Max or average pooling with "same" padding; average pools ignore the padding."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"pool kernel must be odd and >= 1, got {kernel}")
    pad = kernel // 2
    if kind == "max":
        return (nn.MaxPool1d if dim == 1 else nn.MaxPool2d)(kernel, stride=stride, padding=pad)
    if kind == "avg":
        cls = nn.AvgPool1d if dim == 1 else nn.AvgPool2d
        return cls(kernel, stride=stride, padding=pad, count_include_pad=False)
    raise ValueError(f"unknown pool kind {kind!r}; known: max, avg")


def check_dim(dim: int) -> None:
    """Blocks support 1-d signals and 2-d images only."""
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim}")


class IdentityOp(nn.Module):
    """Returns its input unchanged (skip connection, identity mixer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ZeroOp(nn.Module):
    """All zeros shaped like the strided output: the NAS "none" op (an absent edge).

    Strided slicing gives ceil(n / stride) positions, matching every other block.
    """

    def __init__(self, stride: int = 1, dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.stride = stride
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if s == 1:
            return torch.zeros_like(x)
        if self.dim == 1:
            return torch.zeros_like(x[:, :, ::s])
        return torch.zeros_like(x[:, :, ::s, ::s])


class ConvProjection(nn.Module):
    """1x1 conv (stride ``s``) + BN: the cheapest way to change channels or resolution.

    Used where an identity/shortcut must change shape. Parameters: c_in * c_out + 2 * c_out.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.conv = conv_layer(dim, c_in, c_out, 1, stride=stride)
        self.bn = norm_layer(dim, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class PoolBlock(nn.Module):
    """Max/avg pooling (odd kernel, stride ``s``), then a :class:`ConvProjection` if channels change."""

    def __init__(self, c_in: int, c_out: int, kind: str, kernel: int = 3, stride: int = 1, dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.pool = pool_layer(dim, kind, kernel, stride)
        self.proj = ConvProjection(c_in, c_out, 1, dim) if c_in != c_out else IdentityOp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


def shortcut(c_in: int, c_out: int, stride: int, dim: int) -> nn.Module:
    """Identity when the shape is kept, else the 1x1-conv+BN projection."""
    if c_in == c_out and stride == 1:
        return IdentityOp()
    return ConvProjection(c_in, c_out, stride, dim)


def pad_right(x: torch.Tensor, dim: int, amount: int = 1) -> torch.Tensor:
    """Zero-pad the end of each spatial axis by ``amount`` (used by FactorizedReduce)."""
    pads = (0, amount) if dim == 1 else (0, amount, 0, amount)
    return F.pad(x, pads)
