"""Cell operations of NAS-Bench-201 and DARTS (same channels in and out, spatial / stride).

NAS-Bench-201 convs use ReLU -> Conv -> BN order (its ``ReLUConvBN``); DARTS separable convs
apply ReLU -> depthwise -> pointwise -> BN twice (stride on the first depthwise only); dilated
convs apply it once with dilation 2. A strided skip connection is DARTS's FactorizedReduce.
BatchNorms are affine (NAS-Bench-201's setting; DARTS's search phase turns affine off).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .basic import check_dim, conv_layer, norm_layer, pad_right


class ReLUConvBN(nn.Module):
    """ReLU -> conv (odd kernel, stride, dilation) -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1, dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.act = nn.ReLU()
        self.conv = conv_layer(dim, c_in, c_out, kernel, stride, dilation=dilation)
        self.bn = norm_layer(dim, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.act(x)))


class DilConv(nn.Module):
    """DARTS dilated separable conv: ReLU -> depthwise k (dilation, stride) -> pointwise 1x1 -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 2, dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.act = nn.ReLU()
        self.depthwise = conv_layer(dim, c_in, c_in, kernel, stride, groups=c_in, dilation=dilation)
        self.pointwise = conv_layer(dim, c_in, c_out, 1)
        self.bn = norm_layer(dim, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(self.act(x))))


class SepConv(nn.Module):
    """DARTS separable conv: two :class:`DilConv` units with dilation 1; only the first strides."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dim: int = 2) -> None:
        super().__init__()
        self.first = DilConv(c_in, c_in, kernel, stride, dilation=1, dim=dim)
        self.second = DilConv(c_in, c_out, kernel, 1, dilation=1, dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class FactorizedReduce(nn.Module):
    """DARTS strided skip: ReLU, two 1x1 convs of stride ``s`` on x and on x shifted by one, concat, BN.

    The shifted copy is zero-padded at the end so odd lengths still give ceil(n / s) outputs.
    With a single channel there is nothing to split and one conv is used.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 2, dim: int = 2) -> None:
        super().__init__()
        check_dim(dim)
        self.dim = dim
        self.act = nn.ReLU()
        half = c_out // 2
        self.split = half > 0
        self.conv_a = conv_layer(dim, c_in, half if self.split else c_out, 1, stride)
        self.conv_b = conv_layer(dim, c_in, c_out - half, 1, stride) if self.split else nn.Identity()
        self.bn = norm_layer(dim, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        a = self.conv_a(x)
        if not self.split:
            return self.bn(a)
        shifted = x[:, :, 1:] if self.dim == 1 else x[:, :, 1:, 1:]
        b = self.conv_b(pad_right(shifted, self.dim))
        return self.bn(torch.cat([a, b], dim=1))
